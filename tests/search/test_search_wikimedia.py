"""The Wikimedia Commons client against recorded Action API responses served over loopback HTTP."""

from __future__ import annotations

import time

import pytest
import search_support
from search_support import FakeClock, Req, Resp, fixture_json

from ie_env.search import WikimediaEngine
from ie_env.search.http import HttpConfig
from ie_env.search.wikimedia import licence_code

# Fixtures shared through search_support (assigned, so ruff sees no shadowed import).
fake_api = search_support.fake_api
loopback_only = search_support.loopback_only
pytestmark = pytest.mark.usefixtures("loopback_only")

FAST = HttpConfig(connect_timeout_s=1.0, read_timeout_s=0.5, total_timeout_s=5.0, retry_backoff_s=0.01)
PAGE1 = fixture_json("wikimedia_owl_page1.json")
PAGE2 = fixture_json("wikimedia_owl_page2.json")


def handler(req: Req) -> Resp:
    if req.path != "/w/api.php":
        return Resp(404, {})
    return Resp(200, PAGE2 if req.params.get("gsroffset") == "4" else PAGE1)


def engine_for(api, **kwargs) -> WikimediaEngine:
    kwargs.setdefault("http", FAST)
    return WikimediaEngine(api.url + "/w/api.php", **kwargs)


def test_request_parameters_follow_the_api(fake_api):
    api = fake_api(handler)
    engine_for(api, thumb_width=256, max_page_size=4).search("barn owl", 3)
    params = api.requests[0].params
    assert params["action"] == "query" and params["format"] == "json"
    assert params["generator"] == "search" and params["gsrnamespace"] == "6"
    assert params["gsrsearch"] == "filetype:bitmap barn owl"
    assert params["gsrlimit"] == "3"
    assert params["prop"] == "imageinfo"
    assert params["iiprop"] == "url|size|mime|extmetadata"
    assert params["iiurlwidth"] == "256" and params["maxlag"] == "5"


def test_user_agent_is_descriptive_with_contact(fake_api):
    api = fake_api(handler)
    engine_for(api, contact="research@example.org").search("owl", 2)
    agent = api.requests[0].headers["user-agent"]
    assert agent.startswith("ie_env/") and "research@example.org" in agent and "httpx/" in agent
    api.requests.clear()
    engine_for(api, env={"IE_ENV_CONTACT": "https://example.org/me"}).search("owl", 2)
    assert "https://example.org/me" in api.requests[0].headers["user-agent"]


def test_hits_are_ordered_by_search_index_and_parsed(fake_api):
    api = fake_api(handler)
    result = engine_for(api, max_page_size=4).search("owl", 4)
    assert result.ok, result.error
    pages = sorted(PAGE1["query"]["pages"], key=lambda p: p["index"])
    assert [h.url for h in result.hits] == [p["imageinfo"][0]["url"] for p in pages]
    first, raw = result.hits[0], pages[0]
    info = raw["imageinfo"][0]
    assert first.title == raw["title"].removeprefix("File:").rsplit(".", 1)[0]
    assert (first.width, first.height, first.thumbnail) == (info["width"], info["height"], info["thumburl"])
    assert first.id == str(raw["pageid"]) and first.source == "wikimedia_commons"
    assert first.license == licence_code(info["extmetadata"]["LicenseShortName"]["value"]) == "by-sa"
    assert "Strigiformes" in first.tags


def test_continue_paginates(fake_api):
    api = fake_api(handler)
    result = engine_for(api, max_page_size=4).search("owl", 10)
    assert len(api.requests) == 2
    assert api.requests[1].params["gsroffset"] == "4" and api.requests[1].params["continue"] == "gsroffset||"
    assert api.requests[1].params["gsrlimit"] == "4"
    assert len(result.hits) == 7 and [h.rank for h in result.hits] == list(range(7))
    assert result.hits[-1].url.endswith(".tif")


@pytest.mark.parametrize(
    ("short", "code"),
    [
        ("CC BY-SA 4.0", "by-sa"),
        ("CC BY 2.0", "by"),
        ("CC0", "cc0"),
        ("Public domain", "pdm"),
        ("CC BY-NC-ND 3.0", "by-nc-nd"),
        ("GFDL", "gfdl"),
    ],
)
def test_licence_codes(short, code):
    assert licence_code(short) == code


def test_api_errors_are_error_values(fake_api):
    api = fake_api(lambda req: Resp(200, fixture_json("wikimedia_badvalue.json")))
    result = engine_for(api).search("owl", 5)
    assert result.error.startswith("wikimedia: API error badvalue")


def test_maxlag_is_waited_out(fake_api):
    calls = {"n": 0}

    def lagging(req: Req) -> Resp:
        calls["n"] += 1
        if calls["n"] == 1:
            return Resp(200, fixture_json("wikimedia_maxlag.json"), headers={"Retry-After": "5"})
        return handler(req)

    api = fake_api(lagging)
    clock = FakeClock(time.monotonic())
    result = engine_for(
        api, http=HttpConfig(total_timeout_s=30.0), clock=clock, sleep=clock.sleep, rates=()
    ).search("owl", 3)
    assert result.ok, result.error
    assert clock.slept == [5.0] and len(api.requests) == 2


def test_no_results_is_an_empty_success(fake_api):
    api = fake_api(lambda req: Resp(200, fixture_json("wikimedia_empty.json")))
    result = engine_for(api).search("qwxzzy", 5)
    assert result.ok and result.hits == []


def test_429_is_honoured(fake_api):
    api = fake_api(lambda req: Resp(429, {"error": {"code": "ratelimited"}}, headers={"Retry-After": "120"}))
    result = engine_for(api).search("owl", 5)
    assert result.error.startswith("wikimedia: HTTP 429") and len(api.requests) == 1


def test_live_defaults():
    engine = WikimediaEngine()
    assert engine.base_url == "https://commons.wikimedia.org/w/api.php"
    assert engine.http.limiter.rates and engine.http.config.user_agent.startswith("ie_env/")
