"""LLM descriptors: the paper's prompt and truncation rules, resampling, caching, a stub-server round trip."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from llm_stub import StubLLM, cycling
from search_support import FakeClock

from ie_env.concepts.descriptors import DescriptorConfig, make_descriptor_source
from ie_env.concepts.llm_descriptors import DescriptorError, LLMDescriptors, endpoint_url
from ie_env.concepts.llm_prompt import (
    chat_messages,
    degenerate_reason,
    descriptor_from,
    few_shot_prompt,
    truncate,
)

KEY = "sk-stub-9f3a1c77e2d54b10"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))
    for var in ("IE_ENV_LLM_URL", "IE_ENV_LLM_MODEL", "IE_ENV_LLM_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def source(stub: StubLLM, **fields) -> LLMDescriptors:
    fields = {
        "source": "llm",
        "url": stub.url,
        "model": "stub-model",
        "samples_per_request": 4,
        "pool_size": 4,
        **fields,
    }
    return LLMDescriptors(DescriptorConfig(**fields), api_key=KEY)


def test_prompt_is_the_papers_few_shot_prompt() -> None:
    assert few_shot_prompt("labrador retriever") == (
        "What are some words that describe the quality of 'labrador retriever'?\n"
        "The labrador retriever is frail.\n"
        "The labrador retriever is red.\n"
        "The labrador retriever is humongous.\n"
        "The labrador retriever is tall.\n"
        "The labrador retriever is"
    )
    messages = chat_messages("owl")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == few_shot_prompt("owl")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (" brown, and fluffy", "brown"),
        (" very gentle. It likes", "very gentle"),
        (" blue-eyed\nThe dog is", "blue-eyed"),
        (" big_and_strong", "big"),
        ("  'tiny'  ", "tiny"),
        ("The dog is wise.", "wise"),  # a chat model repeating the last line
        ("The  DOG is\nlarge", ""),
        (" hot dog, yes", "hot dog"),  # "dog" stays: it is only the echo that is dropped
        ("", ""),
    ],
)
def test_truncation_at_first_comma_period_underscore_or_newline(completion: str, expected: str) -> None:
    assert truncate(completion, "dog") == expected


@pytest.mark.parametrize(
    ("descriptor", "reason"),
    [
        ("", "empty"),
        ("123", "no_letters"),
        ("<|endoftext|>", "bad_characters"),
        ("a", "no_content"),
        ("very", "no_content"),
        ("a retriever", "repeats_concept"),
        ("Labrador", "repeats_concept"),
        ("one two three four five", "too_long"),
        ("x" * 41, "too_long"),
        ("blue-eyed", None),
        ("very gentle", None),
        ("rock 'n' roll", None),
    ],
)
def test_degenerate_outputs(descriptor: str, reason: str | None) -> None:
    assert degenerate_reason(descriptor, "labrador retriever") == reason


def test_descriptor_from_cuts_then_judges() -> None:
    assert descriptor_from(" a retriever, of course", "labrador retriever") == (None, "repeats_concept")
    assert descriptor_from(" golden.", "labrador retriever") == ("golden", None)


def test_endpoint_url() -> None:
    assert endpoint_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1/chat/completions"
    assert (
        endpoint_url("http://127.0.0.1:8080/v1/chat/completions/")
        == "http://127.0.0.1:8080/v1/chat/completions"
    )
    with pytest.raises(ValueError, match="credentials"):
        endpoint_url("http://user:pw@127.0.0.1/v1")
    with pytest.raises(ValueError, match="http"):
        endpoint_url("ftp://127.0.0.1/v1")


def test_round_trip_keeps_valid_descriptors_and_sends_the_paper_settings() -> None:
    completions = [" brown.", " a", " The owl is wise.", " owl", " very gentle, and kind", ""]
    with StubLLM(cycling(completions), key=KEY) as stub, source(stub, pool_size=3) as llm:
        rng = np.random.default_rng(0)
        descriptor, query = llm.query_for("owl", rng)
        assert llm.pool("owl") == ("brown", "wise", "very gentle")
        assert descriptor in llm.pool("owl") and query == f"{descriptor} owl"
        body = stub.requests[0]["body"]
        assert body["temperature"] == 0.9 and body["max_tokens"] == 100 and body["model"] == "stub-model"
        assert body["messages"] == chat_messages("owl") and body["n"] == 3
        assert stub.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
        # 2 valid of the first 3 asked; then one at a time: "owl" repeats the concept, resampled
        assert [r["body"]["n"] for r in stub.requests] == [3, 1, 1]
        assert llm.stats["rejected"] == 2


def test_degenerate_outputs_are_resampled_up_to_the_bound() -> None:
    with StubLLM(cycling([" a", " {c}", " ,"]), key=KEY) as stub, source(stub, max_requests=5) as llm:
        assert llm.pool("owl") == ()
        assert len(stub.requests) == 5
        assert llm.query_for("owl", np.random.default_rng(0)) == ("", "owl")
    with StubLLM(cycling([" a", " tiny"]), key=KEY) as stub, source(stub, pool_size=2) as llm:
        assert llm.pool("owl") == ("tiny", "tiny")
        assert [r["body"]["n"] for r in stub.requests] == [2, 1, 1]


def test_pools_are_cached_per_concept_and_endpoint(home) -> None:
    with StubLLM(cycling([" red", " tall", " fuzzy", " old"]), key=KEY) as stub:
        with source(stub) as llm:
            first = [llm.descriptor("owl", np.random.default_rng(7)) for _ in range(5)]
            llm.pool("dog")
        requests = len(stub.requests)
        with source(stub) as again:  # a new process would see the same file
            assert [again.descriptor("owl", np.random.default_rng(7)) for _ in range(5)] == first
            assert again.pool("dog") and again.stats["cached"] == 2
        assert len(stub.requests) == requests
        with source(stub, model="other-model") as other:
            other.pool("owl")
        assert len(stub.requests) == requests + 1
    files = list((home / "descriptors").glob("llm-*.sqlite"))
    assert len(files) == 2
    assert all(KEY.encode() not in f.read_bytes() for f in files)


def test_one_draw_per_query_from_the_pool() -> None:
    with StubLLM(cycling([" red", " tall", " fuzzy", " old"]), key=KEY) as stub, source(stub) as llm:
        rng = np.random.default_rng(0)
        draws = {llm.descriptor("owl", rng) for _ in range(60)}
        assert draws == {"red", "tall", "fuzzy", "old"}


@pytest.mark.parametrize(
    ("mode", "message"), [("500", "HTTP 500"), ("garbage", "not a chat"), ("no_choices", "not a chat")]
)
def test_failures_fall_back_to_the_plain_query_and_are_not_cached(mode: str, message: str) -> None:
    with StubLLM(key=KEY, mode=mode) as stub, source(stub) as llm:
        assert llm.query_for("owl", np.random.default_rng(0)) == ("", "owl")
        assert llm.stats["failures"] == 1 and message in llm.last_error
        assert len(llm.cache) == 0
        stub.mode = "ok"
        assert llm.pool("owl")  # retried, not remembered as empty
    with (
        StubLLM(key=KEY, mode=mode) as stub,
        source(stub, strict=True) as llm,
        pytest.raises(DescriptorError, match=message),
    ):
        llm.query_for("owl", np.random.default_rng(0))


def test_timeout_is_bounded() -> None:
    with StubLLM(key=KEY, mode="slow", delay_s=2.0) as stub, source(stub, timeout_s=0.2, strict=True) as llm:
        started = time.monotonic()
        with pytest.raises(DescriptorError, match="timed out"):
            llm.pool("owl")
        assert time.monotonic() - started < 1.5


def test_repeated_failures_pause_the_endpoint() -> None:
    with StubLLM(key=KEY, mode="500") as stub, source(stub) as llm:
        for concept in ("a1", "a2", "a3", "a4", "a5"):
            llm.pool(concept)
        assert len(stub.requests) == 3 and llm.stats["skipped"] == 2


def test_rate_limit_refuses_long_waits() -> None:
    clock = FakeClock()
    with StubLLM(key=KEY) as stub:
        config = DescriptorConfig(
            source="llm",
            url=stub.url,
            requests_per_minute=1,
            max_wait_s=0.0,
            pool_size=1,
            samples_per_request=1,
        )
        with LLMDescriptors(config, api_key=KEY, clock=clock, sleep=clock.sleep) as llm:
            assert llm.pool("owl") == ("brown",)
            assert llm.pool("dog") == ()
            assert "rate limit" in llm.last_error and len(stub.requests) == 1


def test_prefetch_fills_every_pool() -> None:
    concepts = [f"thing {i}" for i in range(7)]
    with StubLLM(key=KEY) as stub, source(stub, concurrency=3) as llm:
        llm.prefetch(concepts + concepts)
        assert len(llm.cache) == 7 and all(llm.pool(c) for c in concepts)
        assert {r["body"]["messages"][1]["content"].splitlines()[-1] for r in stub.requests} == {
            f"The {c} is" for c in concepts
        }


def test_key_never_appears_in_logs_errors_reprs_or_caches(home, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with StubLLM(key=KEY, mode="500") as stub:
        llm = source(stub)
        llm.pool("owl")
        assert KEY in stub.requests[0]["headers"]["authorization"]  # it was sent...
        strict_config = DescriptorConfig(source="llm", url=stub.url, strict=True)
        with LLMDescriptors(strict_config, api_key=KEY) as strict, pytest.raises(DescriptorError) as error:
            strict.pool("owl")
        texts = [
            caplog.text,
            llm.last_error,
            repr(llm),
            str(llm.describe()),
            str(error.value),
            repr(error.value),
        ]
        texts += [repr(llm.config), str(llm.config)]
        llm.close()
    assert "***" in llm.last_error  # ...and the server's echo of it was redacted
    assert all(KEY not in text for text in texts)
    assert all(KEY.encode() not in path.read_bytes() for path in home.rglob("*") if path.is_file())


def test_key_and_endpoint_from_the_environment(monkeypatch) -> None:
    with StubLLM(key=KEY) as stub:
        monkeypatch.setenv("IE_ENV_LLM_URL", stub.url)
        monkeypatch.setenv("IE_ENV_LLM_MODEL", "env-model")
        monkeypatch.setenv("IE_ENV_LLM_API_KEY", KEY)
        with make_descriptor_source("llm") as llm:
            assert llm.pool("owl")
        assert stub.requests[0]["body"]["model"] == "env-model"
        monkeypatch.delenv("IE_ENV_LLM_API_KEY")
        with make_descriptor_source({"source": "llm", "model": "m2"}) as llm:
            assert llm.pool("owl") == ()  # no key: the stub answers 401
        assert "authorization" not in stub.requests[-1]["headers"]
    monkeypatch.delenv("IE_ENV_LLM_URL")
    with pytest.raises(ValueError, match="IE_ENV_LLM_URL"):
        make_descriptor_source("llm")
