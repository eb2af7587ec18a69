"""Integration: the Openverse client against the real offline-web server (generated corpus) over loopback."""

from __future__ import annotations

import io
import itertools
import time

import httpx
import pytest
import search_support
from PIL import Image

from ie_env.search import OpenverseEngine, ReplayEngine, make_engine
from ie_env.search.base import SearchError
from ie_env.search.http import HttpConfig
from ie_env.web.server import start_server

# Fixtures shared through search_support (assigned, so ruff sees no shadowed import).
loopback_only = search_support.loopback_only
pytestmark = [pytest.mark.usefixtures("loopback_only"), pytest.mark.model]


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """``ie_env.web.server.start_server`` on the generated corpus, in a temp IE_ENV_HOME."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IE_ENV_HOME", str(tmp_path_factory.mktemp("ie_home")))
        server = start_server("generated")
        try:
            yield server
        finally:
            server.stop()


def test_search_returns_ranked_relevant_hits_across_pages(web):
    engine = OpenverseEngine(web.url, max_page_size=10)
    assert engine.local and engine.http.limiter.rates == ()
    result = engine.search("red circle", 30)
    assert result.ok, result.error
    assert len(result.hits) == 30 and len({h.url for h in result.hits}) == 30
    assert [h.rank for h in result.hits] == list(range(30))
    assert all(h.url.startswith(web.url) and h.engine == "openverse" for h in result.hits)
    assert "circle" in result.hits[0].title and "circle" in result.hits[0].tags
    one_page = OpenverseEngine(web.url, max_page_size=30).search("red circle", 30)
    assert [h.url for h in one_page.hits] == [h.url for h in result.hits]


def test_every_returned_url_downloads_a_decodable_image(web):
    result = make_engine("local", base_url=web.url).search("blue star", 12)
    assert result.ok and len(result.hits) == 12
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        for hit in result.hits:
            response = client.get(hit.url)
            assert response.status_code == 200
            image = Image.open(io.BytesIO(response.content))
            image.load()
            assert image.size == (hit.width, hit.height)


def test_distinct_queries_reach_different_images(web):
    engine = OpenverseEngine(web.url)
    queries = ("green triangle", "pyramid", "striped pattern")
    found = {query: {h.url for h in engine.search(query, 10).hits} for query in queries}
    assert all(len(urls) == 10 for urls in found.values()), found
    for first, second in itertools.combinations(queries, 2):
        shared = found[first] & found[second]
        assert len(shared) < 5, f"{first!r} and {second!r} share {len(shared)} of their top 10 images"


def test_bad_queries_are_refused_client_side(web):
    engine = OpenverseEngine(web.url)
    for query in ("", "x" * 10_000, "owl\x00"):
        with pytest.raises(SearchError):
            engine.search(query, 5)


def test_replay_reproduces_a_run_after_the_server_is_gone(web, tmp_path):
    path = tmp_path / "replay.sqlite"
    recorder = ReplayEngine(OpenverseEngine(web.url), path, mode="record")
    queries = ["red circle", "blue square", "yellow ring"]
    recorded = [recorder.search(q, 8) for q in queries]
    recorder.close()
    assert all(r.ok and len(r.hits) == 8 for r in recorded)
    dead = OpenverseEngine("http://127.0.0.1:9", http=HttpConfig(total_timeout_s=1.0, retry_backoff_s=0.01))
    player = ReplayEngine(dead, path, mode="replay")
    for query, before in zip(queries, recorded, strict=True):
        assert player.search(query, 8).hits == before.hits
    started = time.monotonic()
    assert player.search("purple cross", 8).error.startswith("openverse: replay miss")
    assert not dead.search("purple cross", 8).ok and time.monotonic() - started < 3
