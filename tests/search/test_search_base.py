"""Query validation, ranking helpers, the rate limiter, credentials redaction and the engine registry."""

from __future__ import annotations

import logging
import pickle
import time
from email.utils import formatdate

import pytest
from search_support import FakeClock

from ie_env.search import ENGINES, FlickrEngine, OpenverseEngine, WikimediaEngine, make_engine
from ie_env.search.base import (
    MAX_QUERY_CHARS,
    SearchEngine,
    SearchError,
    SearchHit,
    rank_hits,
    validate_query,
)
from ie_env.search.credentials import REDACTED, Secret, redact, secret_from_env
from ie_env.search.http import HttpConfig
from ie_env.search.ratelimit import Rate, RateLimiter, parse_retry_after


@pytest.mark.parametrize(
    ("query", "n", "fragment"),
    [
        ("", 5, "empty query"),
        ("   \t ", 5, "empty query"),
        ("x" * (MAX_QUERY_CHARS + 1), 5, "characters, the limit is"),
        ("x" * 10_000, 5, "characters, the limit is"),
        ("owl\x00", 5, "control character"),
        ("owl\nbird", 5, "control character"),
        ("owl\x1b[31m", 5, "control character"),
        ("owl", 0, "n must be"),
        ("owl", -3, "n must be"),
        ("owl", 10_001, "n must be"),
        ("owl", True, "n must be"),
        ("owl", 2.0, "n must be"),
        (b"owl", 5, "must be a string"),
    ],
)
def test_validate_query_rejects_bad_input(query, n, fragment):
    with pytest.raises(SearchError, match=fragment) as info:
        validate_query(query, n, "myengine")
    assert str(info.value).startswith("myengine: ")


def test_validate_query_strips_and_accepts_unicode():
    assert validate_query("  snowy owl ", 1) == "snowy owl"
    assert validate_query("chouette effraie 🦉", 10_000) == "chouette effraie 🦉"
    assert validate_query("x" * MAX_QUERY_CHARS, 3) == "x" * MAX_QUERY_CHARS


def test_rank_hits_dedupes_renumbers_and_truncates():
    hits = [SearchHit(url=u, rank=9) for u in ["a", "b", "a", "", "c", "d"]]
    ranked = rank_hits(hits, 3)
    assert [h.url for h in ranked] == ["a", "b", "c"]
    assert [h.rank for h in ranked] == [0, 1, 2]


# -- rate limiter ---------------------------------------------------------------------------------


def test_token_bucket_allows_burst_then_waits_at_refill_rate():
    clock = FakeClock()
    limiter = RateLimiter([Rate(3, 3.0)], max_wait_s=10, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        assert limiter.acquire() is None
    assert clock.slept == []
    assert limiter.acquire() is None
    assert clock.slept == [pytest.approx(1.0)]
    assert limiter.acquire() is None
    assert sum(clock.slept) == pytest.approx(2.0)


def test_limiter_refuses_long_waits_with_a_reason_instead_of_sleeping():
    clock = FakeClock()
    limiter = RateLimiter(
        [Rate(5, 3600.0, "5/hour"), Rate(100, 86400.0, "100/day")],
        max_wait_s=30,
        clock=clock,
        sleep=clock.sleep,
    )
    for _ in range(5):
        assert limiter.acquire() is None
    reason = limiter.acquire()
    assert reason is not None and "5/hour" in reason and "720 s" in reason
    assert clock.slept == []
    clock.now += 720
    assert limiter.acquire() is None


def test_limiter_uses_the_tightest_of_several_limits():
    clock = FakeClock()
    limiter = RateLimiter(
        [Rate(100, 60.0), Rate(2, 86400.0, "2/day")], max_wait_s=5, clock=clock, sleep=clock.sleep
    )
    assert limiter.acquire() is None and limiter.acquire() is None
    assert "2/day" in limiter.acquire()


def test_block_for_holds_back_requests_for_retry_after():
    clock = FakeClock()
    limiter = RateLimiter([Rate(10, 1.0)], max_wait_s=5, clock=clock, sleep=clock.sleep)
    limiter.block_for(2.5)
    assert limiter.acquire() is None
    assert clock.slept == [pytest.approx(2.5)]
    limiter.block_for(60)
    assert "Retry-After" in limiter.acquire()


def test_unlimited_limiter_never_waits():
    clock = FakeClock()
    limiter = RateLimiter([], clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        assert limiter.acquire() is None
    assert clock.slept == []


def test_rate_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="count"):
        Rate(0, 1.0)
    with pytest.raises(ValueError, match="per_s"):
        Rate(1, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"connect_timeout_s": 0}, "HttpConfig.connect_timeout_s"),
        ({"total_timeout_s": -1.0}, "HttpConfig.total_timeout_s"),
        ({"read_timeout_s": "5"}, "HttpConfig.read_timeout_s"),
        ({"max_retries": -1}, "HttpConfig.max_retries"),
        ({"max_429_retries": 1.5}, "HttpConfig.max_429_retries"),
        ({"retry_backoff_s": -0.1}, "HttpConfig.retry_backoff_s"),
        ({"max_retry_after_s": -1}, "HttpConfig.max_retry_after_s"),
        ({"max_response_bytes": 100}, "HttpConfig.max_response_bytes"),
        ({"user_agent": ""}, "HttpConfig.user_agent"),
        ({"user_agent": "ie_env\r\nX-Injected: 1"}, "HttpConfig.user_agent"),
    ],
)
def test_http_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field} must .*, got "):
        HttpConfig(**kwargs)


def test_limiter_max_wait_must_not_be_negative():
    with pytest.raises(ValueError, match=r"RateLimiter\.max_wait_s must .*, got -1"):
        RateLimiter([], max_wait_s=-1)


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-4") is None
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now_wall=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now_wall=now) == 0.0


# -- credentials ----------------------------------------------------------------------------------


def test_secret_never_prints_its_value():
    secret = Secret("s3cr3t-value-123", "MY_KEY")
    shown = [
        str(secret),
        repr(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>40}",
        format(secret, ""),
        str([secret]),
    ]
    for text in shown:
        assert "s3cr3t-value-123" not in text
        assert "MY_KEY" in text
    assert secret.reveal() == "s3cr3t-value-123"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_secret_from_env_and_redact():
    env = {"SOME_KEY": "  abcdef123456  ", "BLANK": "  "}
    secret = secret_from_env("SOME_KEY", env)
    assert secret is not None and secret.reveal() == "abcdef123456"
    assert secret_from_env("BLANK", env) is None
    assert secret_from_env("MISSING", env) is None
    assert redact("GET /?api_key=abcdef123456&q=owl") == f"GET /?api_key={REDACTED}&q=owl"


def test_log_records_are_redacted(caplog):
    Secret("log-secret-98765", "K")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("httpx").info("HTTP Request: GET %s", "https://x/?api_key=log-secret-98765")
        logging.getLogger("some.other").warning("key is log-secret-98765")
    assert caplog.records
    assert "log-secret-98765" not in caplog.text
    assert all("log-secret-98765" not in r.getMessage() for r in caplog.records)


# -- registry -------------------------------------------------------------------------------------


def test_make_engine_builds_each_engine_and_rejects_unknown(tmp_path):
    assert {"openverse", "local", "wikimedia", "flickr", "caption_index"} <= set(ENGINES)
    openverse = make_engine("openverse", base_url="http://127.0.0.1:1")
    assert isinstance(openverse, OpenverseEngine) and openverse.name == "openverse"
    local = make_engine("local", base_url="http://127.0.0.1:1")
    assert isinstance(local, OpenverseEngine) and local.name == "local"
    wikimedia = make_engine("wikimedia", base_url="http://127.0.0.1:1")
    assert isinstance(wikimedia, WikimediaEngine)
    flickr = make_engine("flickr", base_url="http://127.0.0.1:1", env={})
    assert isinstance(flickr, FlickrEngine)
    for engine in (openverse, local, wikimedia, flickr):
        assert isinstance(engine, SearchEngine) and engine.local
    with pytest.raises(ValueError, match="known: caption_index, flickr, local"):
        make_engine("bing")
    with pytest.raises(ValueError, match="loopback"):
        make_engine("local", base_url="https://api.openverse.org")
    with pytest.raises(ValueError, match="path="):
        make_engine("caption_index")
    wrapped = make_engine("openverse", base_url="http://127.0.0.1:1", replay=tmp_path / "r.sqlite")
    assert type(wrapped).__name__ == "ReplayEngine" and wrapped.name == "openverse"


@pytest.mark.parametrize(
    ("factory", "kwargs", "fragment"),
    [
        (OpenverseEngine, {"base_url": "ftp://x"}, "base_url"),
        (OpenverseEngine, {"base_url": "http://127.0.0.1:1", "max_page_size": 501}, "max_page_size"),
        (OpenverseEngine, {"base_url": "http://127.0.0.1:1", "extra_params": {"q": "x"}}, "extra_params"),
        (WikimediaEngine, {"thumb_width": 5}, "thumb_width"),
        (WikimediaEngine, {"max_page_size": 51}, "max_page_size"),
        (FlickrEngine, {"licenses": (4, 99), "env": {}}, "unknown licence ids"),
        (FlickrEngine, {"safe_search": 7, "env": {}}, "safe_search"),
    ],
)
def test_engine_configs_validate(factory, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        factory(**kwargs)
