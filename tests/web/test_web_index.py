"""Caption-index ranking on the generated corpus: relevance, exclusions, tie-breaking, pagination, caching."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ie_env.search.base import InvalidQuery, validate_query
from ie_env.web.corpus import open_corpus
from ie_env.web.index import BatchingEmbedder, CaptionIndex, QueryEmbedder, tokenize
from ie_env.web.targets import load_target

pytestmark = pytest.mark.model

QUERIES = [
    "red circle", "star", "blue square", "triangle", "polka dots", "stripes", "ring", "cross", "zebra",
    "pizza", "a hand-drawn yellow star", "geometric shape", "round thing", "box", "donut", "plus sign",
    "airplane", "owl", "pyramid", "green", "purple things", "lines", "x mark", "sun",
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return open_corpus("generated", root=tmp_path_factory.mktemp("web"), progress=False)


@pytest.fixture(scope="module")
def target(corpus):
    return load_target("gen-4", corpus=corpus)


@pytest.fixture(scope="module")
def index(corpus, target):
    return CaptionIndex(corpus, target.excluded_ids, progress=False)


def test_shape_queries_rank_their_category_first(index, corpus) -> None:
    for query, category in (("star", "star"), ("polka dots", "dots"), ("striped pattern", "stripes")):
        hits = index.search(query, 10)
        assert len(hits) == 10
        assert all(corpus.categories[h.row] == f"generated/{category}" for h in hits), query


def test_every_query_returns_n_results_best_first(index) -> None:
    for hits in index.search_many(QUERIES, 25):
        assert len(hits) == 25
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert len({h.id for h in hits}) == 25


def test_excluded_images_never_appear(index, target) -> None:
    seen = set()
    for query in QUERIES:
        hits = index.search(query, len(index))
        assert len(hits) == len(index) == 320 - 96
        seen.update(h.id for h in hits)
    assert seen.isdisjoint(target.excluded_ids)
    assert len(seen) == len(index)
    assert index.search("star", 10, offset=len(index)) == []


def test_pages_continue_each_other(index) -> None:
    whole = [h.id for h in index.search("blue square", 30)]
    pages = [h.id for page in range(3) for h in index.search("blue square", 10, offset=10 * page)]
    assert pages == whole


def test_ties_broken_by_query_hash(index, corpus) -> None:
    one = index.search("star", 16)
    again = index.search("star", 16)
    assert [h.id for h in one] == [h.id for h in again]
    other = index.search("Star ", 16)  # same normalised query: same order
    assert [h.id for h in other] == [h.id for h in one]
    tied = [h for h in one if h.score == one[0].score]
    assert len(tied) >= 2 and len({corpus.captions[h.row] for h in tied}) == 1
    # Different queries reach a different order of the images that share one caption.
    live = [h.row for h in index.search("star", len(index))]
    groups: dict[str, list[int]] = {}
    for row in live:
        groups.setdefault(corpus.captions[row], []).append(row)
    caption = max(groups, key=lambda c: len(groups[c]))
    assert len(groups[caption]) >= 3
    orders = set()
    for query in ("star", "stars", "a star", "star shape", "star picture", "red square", "pizza", "owl"):
        hits = index.search(query, len(index))
        orders.add(tuple(h.id for h in hits if corpus.captions[h.row] == caption))
    assert len(orders) >= 4


def test_token_boost_lifts_exact_matches(corpus) -> None:
    plain = CaptionIndex(corpus, boost=0.0, progress=False)
    boosted = CaptionIndex(corpus, boost=0.5, progress=False)
    for index in (plain, boosted):
        hit = index.search("pink", 1)[0]
        assert hit.score > 0
    top_plain = {corpus.titles[h.row].split()[0] for h in plain.search("pink", 20)}
    top_boosted = {corpus.titles[h.row].split()[0] for h in boosted.search("pink", 20)}
    assert top_boosted == {"pink"}
    assert top_plain == {"pink"}  # the cosine alone already finds them on this small corpus
    # The boost is exactly ``boost`` for a query whose tokens all occur in the caption, pro rata otherwise.
    for query, share in (("pink", 1.0), ("pink zebra", 0.5)):
        lifted = boosted.search(query, 1)[0]
        base = plain.rank(query, plain.embedder.embed([query])[0], 1)[0]
        assert lifted.id == base.id and lifted.score == pytest.approx(base.score + 0.5 * share, abs=1e-5)
    with pytest.raises(ValueError, match="boost"):
        CaptionIndex(corpus, boost=-1.0, progress=False)


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a" * 1001, "1001 characters"),
        ("owl\x00", "U\\+0000"),
        ("x\ny", "U\\+000A"),
        (3, "string"),
    ],
)
def test_invalid_queries_are_refused(index, query: object, match: str) -> None:
    with pytest.raises(InvalidQuery, match=match):
        validate_query(query)
    with pytest.raises(InvalidQuery):
        index.search(query, 5)  # type: ignore[arg-type]


def test_tokenize_folds_plurals_and_drops_stopwords() -> None:
    assert tokenize("The Birds of a Feather, boxes & ponies") == ["bird", "feather", "box", "pony"]


def _fake_embed(calls: list[int], delay: float = 0.0):
    def embed(texts):
        calls.append(len(texts))
        time.sleep(delay)
        rng = np.random.default_rng(abs(hash(tuple(texts))) % 2**32)
        vectors = rng.normal(size=(len(texts), 384)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return embed


def test_query_embedder_lru_cache() -> None:
    calls: list[int] = []
    embedder = QueryEmbedder(capacity=2, embed=_fake_embed(calls))
    first = embedder.embed(["Owl", "cat", "owl"])
    assert calls == [2]  # "Owl" and "owl" share a cache key
    np.testing.assert_array_equal(first[0], first[2])
    embedder.embed(["cat"])
    assert calls == [2] and embedder.hits >= 1
    embedder.embed(["dog"])  # evicts the least recently used ("owl")
    embedder.embed(["owl"])
    assert calls == [2, 1, 1]
    with pytest.raises(ValueError, match="capacity"):
        QueryEmbedder(capacity=0)


def test_preloaded_queries_are_used_as_given_and_never_evicted() -> None:
    calls: list[int] = []
    embedder = QueryEmbedder(capacity=1, embed=_fake_embed(calls))
    table = _fake_embed([])(["screech owl", "tabby cat"])
    embedder.preload(["Screech Owl", "tabby cat"], table)
    assert embedder.known == 2
    out = embedder.embed(["screech owl", "dog", "tabby cat"])
    assert calls == [1]  # only the unknown query reached the model
    np.testing.assert_array_equal(out[0], table[0])  # normalised key, the given vector itself
    np.testing.assert_array_equal(out[2], table[1])
    embedder.embed(["horse"])  # fills the one-entry LRU cache several times over
    embedder.embed(["zebra"])
    np.testing.assert_array_equal(embedder.cached("tabby cat"), table[1])
    assert calls == [1, 1, 1]
    with pytest.raises(ValueError, match=r"2 queries but vectors of shape \(1, 384\)"):
        embedder.preload(["a", "b"], table[:1])


def test_batching_embedder_groups_concurrent_requests() -> None:
    calls: list[int] = []
    batcher = BatchingEmbedder(QueryEmbedder(embed=_fake_embed(calls, delay=0.05)), max_batch=64)
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        results[i] = batcher.embed_one(f"query {i}")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    assert len(results) == 40 and sum(calls) == 40
    assert len(calls) < 40  # requests that arrived while the model was busy were batched
    assert all(r.shape == (384,) for r in results.values())


def test_batching_embedder_passes_errors_to_callers() -> None:
    def broken(texts):
        raise RuntimeError("model exploded")

    batcher = BatchingEmbedder(QueryEmbedder(embed=broken))
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher.embed_one("owl")
    batcher.close()
