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
