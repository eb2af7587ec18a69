"""The Openverse client against recorded Openverse responses served over real loopback HTTP."""

from __future__ import annotations

import logging
import time

import pytest
import search_support
from search_support import FakeClock, Req, Resp, fixture_json, free_port

from ie_env.search import OpenverseEngine, ReplayEngine
from ie_env.search.base import SearchError
from ie_env.search.http import HttpConfig
from ie_env.search.ratelimit import Rate

# Fixtures shared through search_support (assigned, so ruff sees no shadowed import).
fake_api = search_support.fake_api
loopback_only = search_support.loopback_only
pytestmark = pytest.mark.usefixtures("loopback_only")

PAGES = {1: fixture_json("openverse_owl_page1.json"), 2: fixture_json("openverse_owl_page2.json")}
FAST = HttpConfig(connect_timeout_s=1.0, read_timeout_s=0.5, total_timeout_s=2.0, retry_backoff_s=0.01)
CLIENT_ID = "ovc-client-id-7f3a9c"
CLIENT_SECRET = "ovc-secret-Zx81Qp0mW"
TOKEN = fixture_json("openverse_token.json")["access_token"]


def live_like(url: str, **kwargs) -> OpenverseEngine:
    """An engine that treats the loopback fake as the live API (anonymous page size 20 unless authenticated)."""
    kwargs.setdefault("http", FAST)
    if not kwargs.get("env"):
        kwargs.setdefault("max_page_size", 20)
    kwargs.setdefault("env", {})
    return OpenverseEngine(url, **kwargs)


def openverse_handler(req: Req) -> Resp:
    if req.path != "/v1/images/":
        return Resp(404, {"detail": "Not found."})
    page = int(req.params.get("page", "1"))
    size = int(req.params.get("page_size", "20"))
    if size > 20 and req.headers.get("authorization") != f"Bearer {TOKEN}":
        return Resp(401, fixture_json("openverse_bad_page_size.json"))
    if size == 20:
        return Resp(200, PAGES.get(page, {**PAGES[2], "results": [], "page": page}))
    everything = PAGES[1]["results"] + PAGES[2]["results"]  # re-slice the recording for other page sizes
    body = {**PAGES[1], "page_size": size, "page": page, "page_count": -(-len(everything) // size)}
    return Resp(200, {**body, "results": everything[(page - 1) * size : page * size]})


def test_parses_results_and_paginates(fake_api):
    api = fake_api(openverse_handler)
    engine = live_like(api.url)
    result = engine.search("owl", 25)
    assert result.ok, result.error
    assert [r.params["page"] for r in api.requests] == ["1", "2"]
    assert {r.params["page_size"] for r in api.requests} == {"20"}
    assert all(r.params["q"] == "owl" for r in api.requests)
    expected = PAGES[1]["results"] + PAGES[2]["results"]
    unique_urls = list(dict.fromkeys(item["url"] for item in expected))
    assert len(result.hits) == min(25, len(unique_urls)) == 25
    assert [h.url for h in result.hits] == unique_urls[:25]  # the repeated image is dropped
    assert [h.rank for h in result.hits] == list(range(25))
    first, raw = result.hits[0], expected[0]
    assert (first.id, first.title, first.license, first.source) == (
        raw["id"],
        raw["title"],
        raw["license"],
        raw["source"],
    )
    assert (first.width, first.height, first.thumbnail) == (raw["width"], raw["height"], raw["thumbnail"])
    assert first.tags == tuple(t["name"] for t in raw["tags"]) and first.engine == "openverse"


def test_small_n_asks_for_one_small_page(fake_api):
    api = fake_api(openverse_handler)
    result = live_like(api.url).search("  owl  ", 5)
    assert len(result.hits) == 5 and result.query == "owl"
    assert len(api.requests) == 1 and api.requests[0].params["page_size"] == "5"


def test_stops_at_the_last_page(fake_api):
    api = fake_api(openverse_handler)
    result = live_like(api.url).search("owl", 200)
    assert result.ok and len(result.hits) == 26  # 27 results, one repeated
    assert len(api.requests) == 2


def test_user_agent_and_extra_params_are_sent(fake_api):
    api = fake_api(openverse_handler)
    live_like(api.url, extra_params={"license": "cc0,pdm", "mature": "false"}).search("owl", 3)
    req = api.requests[0]
    assert req.headers["user-agent"].startswith("ie_env/") and "python-httpx" not in req.headers["user-agent"]
    assert req.params["license"] == "cc0,pdm" and req.params["mature"] == "false"


@pytest.mark.parametrize("query", ["", "x" * 10_000, "owl\x07"])
def test_bad_queries_raise_before_sending(fake_api, query):
    api = fake_api(openverse_handler)
    with pytest.raises(SearchError):
        live_like(api.url).search(query, 5)
    assert api.requests == []


def test_token_flow_with_client_credentials(fake_api):
    def handler(req: Req) -> Resp:
        if req.path == "/v1/auth_tokens/token/":
            return Resp(200, fixture_json("openverse_token.json"))
        return openverse_handler(req)

    api = fake_api(handler)
    env = {"OPENVERSE_CLIENT_ID": CLIENT_ID, "OPENVERSE_CLIENT_SECRET": CLIENT_SECRET}
    engine = live_like(api.url, env=env)
    assert engine.authenticated and engine.max_page_size == 500
    first = engine.search("owl", 25)
    second = engine.search("barn owl", 5)
    assert first.ok and second.ok and len(first.hits) == 25
    token_requests = [r for r in api.requests if r.path == "/v1/auth_tokens/token/"]
    assert len(token_requests) == 1  # cached until it expires
    assert token_requests[0].method == "POST"
    assert token_requests[0].form == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    searches = [r for r in api.requests if r.path == "/v1/images/"]
    assert searches[0].params["page_size"] == "25"
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in searches)
    for text in (repr(engine), str(engine), repr(engine.__dict__)):
        assert CLIENT_SECRET not in text and CLIENT_ID not in text and TOKEN not in text


def test_expired_token_is_renewed_after_401(fake_api):
    tokens = iter(["tok-first-aaaa", "tok-second-bbbb"])
    valid = {"current": None}

    def handler(req: Req) -> Resp:
        if req.path == "/v1/auth_tokens/token/":
            valid["current"] = next(tokens)
            return Resp(200, {**fixture_json("openverse_token.json"), "access_token": valid["current"]})
        if req.headers.get("authorization") != f"Bearer {valid['current']}":
            return Resp(401, fixture_json("openverse_unauthorized.json"))
        return Resp(200, PAGES[1])

    api = fake_api(handler)
    engine = live_like(
        api.url, env={"OPENVERSE_CLIENT_ID": CLIENT_ID, "OPENVERSE_CLIENT_SECRET": CLIENT_SECRET}
    )
    assert engine.search("owl", 3).ok
    valid["current"] = "revoked-on-server"
    result = engine.search("owl", 3)
    assert result.ok, result.error
    assert sum(r.path == "/v1/auth_tokens/token/" for r in api.requests) == 2


def test_refused_credentials_give_an_error_without_the_secret(fake_api, caplog, tmp_path):
    def handler(req: Req) -> Resp:
        if req.path == "/v1/auth_tokens/token/":
            return Resp(
                401,
                {"error": "invalid_client", "error_description": f"bad client {req.form.get('client_id')}"},
            )
        return openverse_handler(req)

    api = fake_api(handler)
    env = {"OPENVERSE_CLIENT_ID": CLIENT_ID, "OPENVERSE_CLIENT_SECRET": CLIENT_SECRET}
    engine = ReplayEngine(live_like(api.url, env=env), tmp_path / "replay.sqlite", mode="record")
    with caplog.at_level(logging.DEBUG):
        result = engine.search("owl", 5)
    assert not result.ok and result.error.startswith("openverse: token request refused (HTTP 401")
    everything = result.error + repr(engine) + repr(result) + caplog.text
    assert CLIENT_SECRET not in everything and CLIENT_ID not in everything
    engine.close()
    files = list(tmp_path.iterdir())
    assert files  # the replay store was written, so the check below reads something
    for path in files:
        data = path.read_bytes()
        assert CLIENT_SECRET.encode() not in data and CLIENT_ID.encode() not in data


def test_http_429_with_short_retry_after_is_waited_out(fake_api):
    calls = {"n": 0}

    def handler(req: Req) -> Resp:
        calls["n"] += 1
        if calls["n"] == 1:
            return Resp(429, fixture_json("openverse_throttled.json"), headers={"Retry-After": "2"})
        return openverse_handler(req)

    api = fake_api(handler)
    clock = FakeClock(time.monotonic())
    roomy = HttpConfig(read_timeout_s=0.5, total_timeout_s=10.0)
    engine = live_like(api.url, http=roomy, rates=[Rate(100, 60.0)], clock=clock, sleep=clock.sleep)
    result = engine.search("owl", 5)
    assert result.ok, result.error
    assert len(api.requests) == 2 and pytest.approx(2.0) in clock.slept


def test_http_429_with_long_retry_after_is_an_error_value(fake_api):
    api = fake_api(
        lambda req: Resp(429, fixture_json("openverse_throttled.json"), headers={"Retry-After": "3600"})
    )
    clock = FakeClock(time.monotonic())
    engine = live_like(api.url, rates=[Rate(100, 60.0)], clock=clock, sleep=clock.sleep)
    result = engine.search("owl", 5)
    assert result.error.startswith("openverse: HTTP 429") and "Retry-After 3600 s" in result.error
    assert len(api.requests) == 1 and clock.slept == []
    # The limiter now holds the next request back instead of hammering the server.
    again = engine.search("owl", 5)
    assert "Retry-After" in again.error and len(api.requests) == 1


def test_anonymous_live_limits_refuse_instead_of_hanging(fake_api):
    api = fake_api(openverse_handler)
    clock = FakeClock(time.monotonic())
    engine = OpenverseEngine(
        api.url,
        http=FAST,
        rates=[Rate(5, 3600.0, "5/hour"), Rate(100, 86400.0, "100/day")],
        clock=clock,
        sleep=clock.sleep,
    )
    results = [engine.search(f"owl {i}", 3) for i in range(6)]
    assert all(r.ok for r in results[:5])
    assert results[5].error.startswith("openverse: rate limit 5/hour")
    assert len(api.requests) == 5


def test_dead_engine_is_an_error_value_quickly():
    engine = OpenverseEngine(f"http://127.0.0.1:{free_port()}", http=FAST)
    started = time.monotonic()
    result = engine.search("owl", 5)
    assert time.monotonic() - started < 2.0
    assert not result.ok and result.error.startswith("openverse: connection failed") and result.hits == []


def test_slow_engine_times_out_quickly(fake_api):
    api = fake_api(lambda req: Resp(200, PAGES[1], delay_s=10.0))
    started = time.monotonic()
    result = live_like(api.url).search("owl", 5)  # read timeout 0.5 s, total 2 s
    assert time.monotonic() - started < 4.0, result
    assert result.error.startswith("openverse: timed out"), result.error
    assert len(api.requests) == 1  # a slow engine is not retried


def test_server_errors_are_retried_then_reported(fake_api):
    api = fake_api(lambda req: Resp(503, {"detail": "Service Unavailable"}))
    result = live_like(api.url).search("owl", 5)
    assert result.error == "openverse: HTTP 503 (after 3 tries)"
    assert len(api.requests) == 3


def test_a_transient_error_then_success(fake_api):
    calls = {"n": 0}

    def handler(req: Req) -> Resp:
        calls["n"] += 1
        return Resp(502, {"detail": "Bad gateway"}) if calls["n"] == 1 else openverse_handler(req)

    api = fake_api(handler)
    assert live_like(api.url).search("owl", 5).ok
    assert len(api.requests) == 2


@pytest.mark.parametrize(
    ("resp", "fragment"),
    [
        (Resp(400, {"detail": {"q": ["This field may not be blank."]}}), "HTTP 400"),
        (Resp(200, raw=b"<html>maintenance</html>"), "unexpected response"),
        (Resp(200, {"result_count": 0}), "unexpected response"),
    ],
)
def test_bad_answers_are_error_values(fake_api, resp, fragment):
    api = fake_api(lambda req: resp)
    result = live_like(api.url).search("owl", 5)
    assert result.error.startswith("openverse: ") and fragment in result.error


def test_a_failing_second_page_keeps_the_first_with_a_note(fake_api):
    api = fake_api(lambda req: Resp(200, PAGES[1]) if req.params["page"] == "1" else Resp(500, {}))
    result = live_like(api.url).search("owl", 25)
    assert result.ok and len(result.hits) == 20 and "page 2 failed" in result.note


def test_live_defaults_without_network():
    engine = OpenverseEngine(env={})
    assert engine.base_url == "https://api.openverse.org"
    assert not engine.local and engine.max_page_size == 20
    assert {r.label for r in engine.http.limiter.rates} == {"5/hour", "100/day"}
    local = OpenverseEngine("http://127.0.0.1:8080", env={})
    assert local.local and local.http.limiter.rates == ()


def test_network_guard_blocks_the_live_api(loopback_only):
    result = OpenverseEngine(env={}, http=FAST).search("owl", 3)
    assert not result.ok and result.error.startswith("openverse: connection failed")
    assert loopback_only == ["api.openverse.org"] * len(loopback_only) and loopback_only
