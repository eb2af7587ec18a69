"""The frozen world's vectorised ranking returns exactly what the caption index ranks query by query."""

from __future__ import annotations

import numpy as np
import pytest

from ie_env.web.index import CaptionRanking
from ie_env.worlds.frozen_tables import rank_table

WORDS = ["red", "apple", "bird", "owl", "green", "tree", "fruit", "blue", "car", "house"]


def _ranking(seed: int, excluded: int = 5, tied: int = 2) -> CaptionRanking:
    rng = np.random.default_rng(seed)
    n_docs, n_rows = 60, 400
    docs = [" ".join(rng.choice(WORDS, size=rng.integers(1, 4))) + f" {i % 7}" for i in range(n_docs)]
    captions = [docs[i] for i in rng.integers(0, n_docs, n_rows)]
    keys = [f"img-{i:04d}" for i in range(n_rows)]

    def embed(texts: list[str]) -> np.ndarray:
        vectors = rng.standard_normal((len(texts), 8)).astype(np.float32)
        vectors[1:tied] = vectors[0]  # captions with one embedding: exact score ties
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    excluded_rows = rng.choice(n_rows, size=excluded, replace=False)
    return CaptionRanking(captions, keys, embed, excluded_rows=excluded_rows.tolist())


@pytest.mark.parametrize(
    ("seed", "n", "tied"),
    # tied=16: more equal scores at the cut than the row-wise top-k's slack (the per-row fallback)
    [(0, 20, 2), (1, 5, 2), (2, 1, 2), (3, 500, 2), (4, 3, 16), (5, 1, 16)],
)
def test_rank_table_equals_rank_per_query(seed: int, n: int, tied: int) -> None:
    index = _ranking(seed, tied=tied)
    rng = np.random.default_rng(seed + 100)
    queries = [" ".join(rng.choice(WORDS, size=rng.integers(1, 3))) for _ in range(40)] + ["zebra", "7"]
    vectors = rng.standard_normal((len(queries), 8)).astype(np.float32)
    vectors[:5] = index.doc_vectors[:5]  # queries that hit the tied captions exactly
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = rank_table(index, queries, vectors, n)
    scores = index.doc_scores(vectors)
    assert table.shape == (len(queries), n) and table.dtype == np.int32
    for j, query in enumerate(queries):
        expected = [hit.row for hit in index.rank(query, vectors[j], n, scores=scores[j])]
        assert table[j, : len(expected)].tolist() == expected
        assert (table[j, len(expected) :] == -1).all()
    assert not np.isin(table, index.excluded_rows).any()


def test_equal_scores_rank_by_document_index_also_at_the_cut() -> None:
    from ie_env.web.index import top_documents

    scores = np.asarray([0.1, 0.5, 0.5, 0.9, 0.5, 0.5, -np.inf], dtype=np.float32)
    assert top_documents(scores, 3).tolist() == [3, 1, 2]
    assert top_documents(scores, 1).tolist() == [3]
    assert top_documents(scores, 6).tolist() == [3, 1, 2, 4, 5, 0]
    assert top_documents(scores, 9).tolist() == [3, 1, 2, 4, 5, 0, 6]


def _queries_and_vectors(index: CaptionRanking, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed + 100)
    queries = [" ".join(rng.choice(WORDS, size=rng.integers(1, 3))) for _ in range(40)]
    queries += ["zebra", "7", "", queries[0]]  # no token match, a digit, an invalid query, a repeat
    vectors = rng.standard_normal((len(queries), 8)).astype(np.float32)
    vectors[:5] = index.doc_vectors[:5]
    first = {q: queries.index(q) for q in queries}
    vectors = vectors[[first[q] for q in queries]]  # a repeated query has the same embedding
    return queries, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _with_corpus_key(index: CaptionRanking) -> CaptionRanking:
    from types import SimpleNamespace

    index.corpus = SimpleNamespace(key="test-corpus")  # what the cache keys read of a CaptionIndex
    return index


@pytest.mark.parametrize(("n", "depth"), [(1, 8), (5, 8), (8, 8), (5, 6), (20, 8), (3, 64)])
def test_concept_results_from_the_web_table_equal_rank_per_query(
    tmp_path, monkeypatch: pytest.MonkeyPatch, n: int, depth: int
) -> None:
    """A target's table (web table minus its images, re-ranked where too few remain) is the exact one."""
    from ie_env.worlds import frozen_tables

    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))
    monkeypatch.setattr(frozen_tables, "WEB_DEPTH", depth)
    index = _with_corpus_key(_ranking(7, excluded=60, tied=2))  # many excluded: some rows run short
    queries, vectors = _queries_and_vectors(index, 7)
    table = frozen_tables.concept_results(index, queries, n, "t", progress=False, vectors=lambda: vectors)
    assert table.shape == (len(queries), n) and table.dtype == np.int32
    scores = index.doc_scores(vectors)
    for j, query in enumerate(queries):
        expected = [hit.row for hit in index.rank(query, vectors[j], n, scores=scores[j])] if query else []
        assert table[j, : len(expected)].tolist() == expected, query
        assert (table[j, len(expected) :] == -1).all()
    again = frozen_tables.concept_results(index, queries, n, "t", progress=False, vectors=lambda: None)
    np.testing.assert_array_equal(again, table)  # cached: the vectors are not asked for again


def test_web_table_is_ranked_once_for_every_target(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ie_env.worlds import frozen_tables

    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))
    ranked: list[int] = []
    real = frozen_tables.rank_table

    def counting(index, queries, vectors, n, progress=False):
        ranked.append(len(queries))
        return real(index, queries, vectors, n, progress)

    monkeypatch.setattr(frozen_tables, "rank_table", counting)
    first = _with_corpus_key(_ranking(8, excluded=5))
    queries, vectors = _queries_and_vectors(first, 8)
    frozen_tables.concept_results(first, queries, 5, "t", progress=False, vectors=lambda: vectors)
    distinct = len({q for q in queries if q})
    assert ranked[0] == distinct  # the web table: every distinct query once
    second = first.without_exclusions()
    second.excluded_rows = np.asarray([0, 1, 2], dtype=np.int64)  # another target's images
    second._index_rows()
    ranked.clear()
    table = frozen_tables.concept_results(second, queries, 5, "t", progress=False, vectors=lambda: vectors)
    assert sum(ranked) < distinct  # the web table was reused; at most a few rows ranked again
    assert not np.isin(table, [0, 1, 2]).any()
    assert len(list((tmp_path / "web" / "concept-results").glob("*.npy"))) == 1


def test_drop_excluded_marks_rows_cut_at_the_depth() -> None:
    from ie_env.worlds.frozen_tables import drop_excluded

    table = np.asarray([[4, 1, 7, 2], [3, 9, -1, -1], [5, 6, 8, 0]], dtype=np.int32)
    kept, short = drop_excluded(table, np.asarray([1, 6, 8, 0]), 3)
    assert kept.tolist() == [[4, 7, 2], [3, 9, -1], [5, -1, -1]]
    assert short.tolist() == [False, False, True]  # row 1 ended before the depth; row 2 was cut
    assert not np.shares_memory(kept, table)


def test_without_exclusions_keeps_the_ranking_and_frees_the_rows() -> None:
    index = _ranking(9, excluded=5)
    free = index.without_exclusions()
    assert len(free) == len(index.keys) and len(index) == len(index.keys) - 5
    assert free.doc_vectors is index.doc_vectors and free.without_exclusions() is free
    assert np.array_equal(index.excluded_rows, np.sort(index.excluded_rows)) and len(index.excluded_rows) == 5
