"""The Flickr client against recorded flickr.photos.search responses served over loopback HTTP."""

from __future__ import annotations

import logging

import pytest
import search_support
from search_support import Req, Resp, fixture_json

from ie_env.search import FlickrEngine, ReplayEngine
from ie_env.search.flickr import LICENSES, OPEN_LICENSES
from ie_env.search.http import HttpConfig

# Fixtures shared through search_support (assigned, so ruff sees no shadowed import).
fake_api = search_support.fake_api
loopback_only = search_support.loopback_only
pytestmark = pytest.mark.usefixtures("loopback_only")

FAST = HttpConfig(connect_timeout_s=1.0, read_timeout_s=0.5, total_timeout_s=5.0, retry_backoff_s=0.01)
KEY = "0f3c5e7a9b1d2f4a6c8e0b2d4f6a8c0e"
PAGE1 = fixture_json("flickr_owl_page1.json")
PAGE2 = fixture_json("flickr_owl_page2.json")


def handler(req: Req) -> Resp:
    if req.params.get("api_key") != KEY:
        return Resp(200, fixture_json("flickr_invalid_key.json"))
    return Resp(200, PAGE2 if req.params.get("page") == "2" else PAGE1)


def engine_for(api, key: str | None = KEY, **kwargs) -> FlickrEngine:
    kwargs.setdefault("http", FAST)
    env = {"FLICKR_API_KEY": key} if key else {}
    return FlickrEngine(api.url + "/services/rest/", env=env, **kwargs)


def test_request_parameters(fake_api):
    api = fake_api(handler)
    engine_for(api, max_page_size=3).search("barn owl", 2)
    params = api.requests[0].params
    assert params["method"] == "flickr.photos.search" and params["api_key"] == KEY
    assert params["text"] == "barn owl" and params["format"] == "json" and params["nojsoncallback"] == "1"
    assert params["license"] == ",".join(str(i) for i in OPEN_LICENSES) and "0" not in params[
        "license"
    ].split(",")
    assert set(params["extras"].split(",")) >= {"url_q", "url_m", "license", "owner_name", "tags"}
    assert params["per_page"] == "2" and params["page"] == "1" and params["sort"] == "relevance"
    assert api.requests[0].headers["user-agent"].startswith("ie_env/")


def test_custom_licence_filter(fake_api):
    api = fake_api(handler)
    engine_for(api, licenses=(9, 10)).search("owl", 2)
    assert api.requests[0].params["license"] == "9,10"
    api.requests.clear()
    engine_for(api, licenses=()).search("owl", 2)
    assert "license" not in api.requests[0].params


def test_parses_photos_and_paginates(fake_api):
    api = fake_api(handler)
    result = engine_for(api, max_page_size=3).search("owl", 10)
    assert result.ok, result.error
    assert [r.params["page"] for r in api.requests] == ["1", "2"]
    photos = PAGE1["photos"]["photo"] + PAGE2["photos"]["photo"]
    assert len(result.hits) == 5
    first, raw = result.hits[0], photos[0]
    assert first.url == raw["url_m"] and first.thumbnail == raw["url_q"]
    assert (first.width, first.height) == (raw["width_m"], raw["height_m"])
    assert first.license == LICENSES[int(raw["license"])] == "by" and first.title == raw["title"]
    assert first.tags == tuple(raw["tags"].split()) and first.source == "flickr" and first.id == raw["id"]
    no_m = photos[2]
    assert "url_m" not in no_m
    assert (
        result.hits[2].url
        == f"https://live.staticflickr.com/{no_m['server']}/{no_m['id']}_{no_m['secret']}.jpg"
    )
    assert result.hits[2].width is None


def test_missing_key_is_an_error_value_without_a_request(fake_api):
    api = fake_api(handler)
    result = engine_for(api, key=None).search("owl", 5)
    assert result.error == "flickr: no API key; set the FLICKR_API_KEY environment variable"
    assert api.requests == []


def test_rejected_key_never_leaks(fake_api, caplog, tmp_path):
    bad_key = "deadbeefcafebabe0123456789abcdef"
    api = fake_api(handler)
    engine = ReplayEngine(engine_for(api, key=bad_key), tmp_path / "flickr.sqlite", mode="record")
    with caplog.at_level(logging.DEBUG):
        result = engine.search("owl", 5)
    assert result.error == "flickr: API error 100: Invalid API Key (Key has invalid format)"
    assert api.requests[0].params["api_key"] == bad_key  # it was really sent...
    texts = [
        result.error,
        repr(result),
        repr(engine),
        repr(engine.inner),
        str(vars(engine.inner)),
        caplog.text,
    ]
    assert all(bad_key not in text for text in texts)  # ...but shows up nowhere else
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx logged the (redacted) URL
    engine.close()
    files = list(tmp_path.iterdir())
    assert files  # the replay store was written, so the check below reads something
    for path in files:
        assert bad_key.encode() not in path.read_bytes()


def test_empty_result(fake_api):
    api = fake_api(lambda req: Resp(200, fixture_json("flickr_empty.json")))
    result = engine_for(api).search("qwxzzy", 5)
    assert result.ok and result.hits == []


def test_429_is_honoured(fake_api):
    api = fake_api(lambda req: Resp(429, {"stat": "fail"}, headers={"Retry-After": "600"}))
    result = engine_for(api).search("owl", 5)
    assert result.error.startswith("flickr: HTTP 429") and len(api.requests) == 1
    assert KEY not in result.error


def test_live_defaults():
    engine = FlickrEngine(env={})
    assert engine.base_url == "https://api.flickr.com/services/rest/"
    assert {r.label for r in engine.http.limiter.rates} >= {"3600/hour"}
    assert "no api key" in repr(engine)
