"""The in-process caption index: table loading, real MiniLM ranking, URL dedup, batch search."""

from __future__ import annotations

import json

import numpy as np
import pytest
from search_support import DATA

from ie_env.search import CaptionIndexEngine, make_engine
from ie_env.search.base import SearchError
from ie_env.search.caption_index import CaptionRow, read_table

pytestmark = pytest.mark.model

LAION_CSV = DATA / "captions_laion.csv"


@pytest.fixture(scope="module")
def laion_engine(tmp_path_factory):
    """The LAION-style table indexed with the real MiniLM model (caption cache in a temp IE_ENV_HOME)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IE_ENV_HOME", str(tmp_path_factory.mktemp("ie_home")))
        yield CaptionIndexEngine.from_file(LAION_CSV)


def test_read_laion_csv_columns_and_skips():
    rows, skipped = read_table(LAION_CSV)
    assert skipped == 2 and len(rows) == 34
    first = rows[0]
    assert first.url == "https://images.example.org/owl/0000.jpg"
    assert first.caption == "a barn owl perched on a wooden fence at dusk"
    assert (first.width, first.height, first.id, first.license) == (
        640,
        480,
        "1000",
        "creativecommons.org/licenses/by/4.0/",
    )


def test_read_jsonl_and_parquet(tmp_path):
    rows, skipped = read_table(DATA / "captions_small.jsonl")
    assert (
        skipped == 0 and len(rows) == 15 and rows[0].title == "A Barn Owl Perched On A Wooden Fence At Dusk"
    )
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    records = [json.loads(line) for line in (DATA / "captions_small.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet")[0] == rows


def test_read_table_errors(tmp_path):
    with pytest.raises(ValueError, match="unsupported caption table"):
        read_table(tmp_path / "x.xlsx")
    with pytest.raises(ValueError, match="cannot read"):
        read_table(tmp_path / "missing.csv")


def test_semantic_ranking_with_minilm(laion_engine):
    result = laion_engine.search("owl", 5)
    assert result.ok and result.engine == "caption_index"
    urls = [h.url for h in result.hits]
    assert len(urls) == 5 == len(set(urls))  # the repeated owl URL appears once
    assert all("/owl/" in url for url in urls)
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    cars = laion_engine.search("automobile", 3)
    assert all("/car/" in h.url for h in cars.hits)
    pets = laion_engine.search("a sleepy kitty", 2)
    assert "/cat/" in pets.hits[0].url


def test_search_many_matches_single_searches(laion_engine):
    queries = ["owl", "boat on water", "fresh fruit", "dog"]
    batch = laion_engine.search_many(queries, 4)
    for query, result in zip(queries, batch, strict=True):
        single = laion_engine.search(query, 4)
        assert [h.url for h in result.hits] == [h.url for h in single.hits]
        assert [h.score for h in result.hits] == pytest.approx([h.score for h in single.hits], abs=1e-4)


def test_n_larger_than_table_returns_every_distinct_url(laion_engine):
    result = laion_engine.search("anything", 500)
    assert len(result.hits) == laion_engine.unique_urls == 32
    assert len({h.url for h in result.hits}) == 32


def test_bad_queries_raise(laion_engine):
    with pytest.raises(SearchError):
        laion_engine.search("", 5)
    with pytest.raises(SearchError):
        laion_engine.search_many(["ok", "bad\x00"], 5)
    with pytest.raises(SearchError):
        laion_engine.search_many("owl", 5)


def _toy_embed(texts):
    vocab = ["owl", "car", "boat", "cat"]
    out = np.array(
        [[1.0 + 0.01 * i if w in t else 0.0 for i, w in enumerate(vocab)] + [0.1] for t in texts], np.float32
    )
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_dedupe_keeps_best_row_per_url_with_injected_embedder():
    rows = [
        CaptionRow(url=f"https://x/{i % 3}.jpg", caption=c)
        for i, c in enumerate(["owl", "car", "boat", "owl owl", "cat", "boat"])
    ]
    engine = CaptionIndexEngine(rows, embed_fn=_toy_embed)
    assert engine.has_duplicates and engine.unique_urls == 3
    hits = engine.search("owl", 3).hits
    assert [h.url for h in hits][0] == "https://x/0.jpg" and len(hits) == 3


def test_embedding_failure_is_an_error_value():
    rows = [CaptionRow(url="https://x/1.jpg", caption="owl")]

    def broken(texts):
        if texts == ["owl"]:
            return _toy_embed(texts)
        raise RuntimeError("model crashed")

    engine = CaptionIndexEngine(rows, embed_fn=broken)
    result = engine.search("car", 1)
    assert result.error.startswith("caption_index: query embedding failed")


def test_registry_builds_from_path(laion_engine):
    engine = make_engine("caption_index", path=DATA / "captions_laion.csv")
    assert (
        len(engine) == 34 and engine.search("owl", 1).hits[0].url == laion_engine.search("owl", 1).hits[0].url
    )
