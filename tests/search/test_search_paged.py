"""What the three HTTP engines share through ``ie_env.search._paged``, checked on each of them."""

from __future__ import annotations

import pytest
import search_support
from search_support import FakeClock, Resp, fixture_json

from ie_env.search import FlickrEngine, OpenverseEngine, WikimediaEngine
from ie_env.search._paged import PagedJsonEngine, as_int, json_object
from ie_env.search.http import HttpConfig, HttpReply

# Fixtures shared through search_support (assigned, so ruff sees no shadowed import).
fake_api = search_support.fake_api
loopback_only = search_support.loopback_only
pytestmark = pytest.mark.usefixtures("loopback_only")

FAST = HttpConfig(connect_timeout_s=1.0, read_timeout_s=0.5, total_timeout_s=5.0, retry_backoff_s=0.01)
KEY = "0f3c5e7a9b1d2f4a6c8e0b2d4f6a8c0e"


def openverse(url: str, **kwargs) -> OpenverseEngine:
    return OpenverseEngine(url, env={}, max_page_size=20, **kwargs)


def wikimedia(url: str, **kwargs) -> WikimediaEngine:
    return WikimediaEngine(url + "/w/api.php", max_page_size=4, **kwargs)


def flickr(url: str, **kwargs) -> FlickrEngine:
    return FlickrEngine(url + "/services/rest/", env={"FLICKR_API_KEY": KEY}, max_page_size=3, **kwargs)


# engine factory, its first recorded page, how a request asks for a later page, hits on page 1
ENGINES = {
    "openverse": (openverse, "openverse_owl_page1.json", lambda req: req.params.get("page") != "1", 20),
    "wikimedia": (wikimedia, "wikimedia_owl_page1.json", lambda req: "gsroffset" in req.params, 4),
    "flickr": (flickr, "flickr_owl_page1.json", lambda req: req.params.get("page") != "1", 3),
}


@pytest.mark.parametrize("engine_name", sorted(ENGINES))
def test_a_failing_later_page_keeps_the_first_with_a_note(fake_api, engine_name):
    make, first_page, is_later, first_hits = ENGINES[engine_name]
    body = fixture_json(first_page)
    api = fake_api(lambda req: Resp(503, {"detail": "down"}) if is_later(req) else Resp(200, body))
    result = make(api.url, http=FAST).search("owl", 50)
    assert result.ok, result.error
    assert len(result.hits) == first_hits and [h.rank for h in result.hits] == list(range(first_hits))
    assert result.note == f"page 2 failed (HTTP 503 (after 3 tries)); returned {first_hits} hits"


@pytest.mark.parametrize("engine_name", sorted(ENGINES))
def test_a_failing_first_page_is_an_error_value_naming_the_engine(fake_api, engine_name):
    make = ENGINES[engine_name][0]
    api = fake_api(lambda req: Resp(200, raw=b"<html>maintenance</html>"))
    result = make(api.url, http=FAST).search("owl", 5)
    assert not result.ok and result.hits == [] and result.note is None
    assert result.error.startswith(f"{engine_name}: unexpected response"), result.error


@pytest.mark.parametrize("engine_name", sorted(ENGINES))
def test_base_url_must_be_http_and_names_the_class(engine_name):
    make = ENGINES[engine_name][0]
    with pytest.raises(ValueError, match=r"Engine: base_url must be an http\(s\) URL"):
        type(make("http://127.0.0.1:1"))("ftp://example.org/api")


@pytest.mark.parametrize("cls", [OpenverseEngine, WikimediaEngine, FlickrEngine])
def test_limiter_choice(cls):
    kwargs = {"env": {"FLICKR_API_KEY": KEY}} if cls is FlickrEngine else {"env": {}}
    loopback = cls("http://127.0.0.1:1", **kwargs)
    assert isinstance(loopback, PagedJsonEngine) and loopback.local
    assert loopback.http.limiter.rates == ()
    live_a, live_b = cls("https://api.example.org/x", **kwargs), cls("https://api.example.org/x", **kwargs)
    assert not live_a.local and live_a.http.limiter.rates
    assert live_a.http.limiter is live_b.http.limiter  # one process-wide limiter per account and host
    clock = FakeClock()
    private = cls("https://api.example.org/x", clock=clock, sleep=clock.sleep, **kwargs)
    assert private.http.limiter.rates == live_a.http.limiter.rates
    assert private.http.limiter is not live_a.http.limiter  # an injected clock gets its own buckets


def test_flickr_accounts_do_not_share_a_limiter():
    one = FlickrEngine("https://api.example.org/rest/", env={"FLICKR_API_KEY": KEY})
    other = FlickrEngine("https://api.example.org/rest/", env={"FLICKR_API_KEY": KEY[::-1]})
    assert one.http.limiter is not other.http.limiter


def test_wikimedia_stops_on_a_continue_it_cannot_read(fake_api):
    body = {**fixture_json("wikimedia_owl_page1.json"), "continue": {"gsroffset": "later", "continue": "-"}}
    api = fake_api(lambda req: Resp(200, body))
    result = wikimedia(api.url, http=FAST).search("owl", 50)
    assert result.ok and len(result.hits) == 4 and len(api.requests) == 1


def test_json_object_and_as_int():
    ok = HttpReply(status=200, data={"a": 1}, headers={})
    assert json_object(ok, None) == ({"a": 1}, None)
    assert json_object(None, "timed out") == (None, "timed out")
    assert json_object(HttpReply(status=404, data={"detail": "gone"}, headers={}), None) == (
        None,
        "HTTP 404: gone",
    )
    assert json_object(HttpReply(status=200, data=[1], headers={}), None)[1].startswith("unexpected")
    assert [as_int(v) for v in (3, "42", " 7 ", 5.0, 5.5, True, "x", None)] == [
        3,
        42,
        7,
        5,
        None,
        None,
        None,
        None,
    ]
