"""Descriptors from a language model behind any OpenAI-compatible ``chat/completions`` endpoint.

A local llama.cpp or vLLM server works as well as a hosted API. For each concept the source asks for
``samples_per_request`` completions per request (the API's ``n``; servers that ignore it answer one)
of the paper's prompt (:mod:`ie_env.concepts.llm_prompt`) at temperature 0.9, keeps the valid
descriptors and asks again for degenerate ones, until ``pool_size`` are kept or ``max_requests``
requests were made. The pool is cached per concept on disk (:class:`DescriptorCache`, keyed by the
endpoint, model, prompt version and sampling settings, never by the key) and every query draws one
descriptor of the pool with the caller's generator, so a cached run replays exactly.

Failures (timeouts, HTTP errors, answers that are not the API's JSON, rate-limit waits over
``max_wait_s``) raise :class:`DescriptorError` in ``strict`` mode; otherwise the query goes out
without a descriptor, the failure is counted in :attr:`LLMDescriptors.stats` and nothing is cached.
After ``MAX_FAILURES`` failures in a row the endpoint is left alone for ``COOLDOWN_S`` seconds. The
API key is a :class:`~ie_env.search.credentials.Secret`: it is sent in the ``Authorization`` header
and appears in no log, error, repr or cache (every message goes through ``redact``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from ie_env.concepts.descriptor_cache import DescriptorCache, cache_key
from ie_env.concepts.descriptors import DescriptorConfig, DescriptorSource
from ie_env.concepts.llm_prompt import PROMPT_VERSION, chat_messages, descriptor_from
from ie_env.concepts.queries import normalize_text
from ie_env.search.credentials import Secret, redact, secret_from_env
from ie_env.search.ratelimit import Rate, RateLimiter, parse_retry_after

if TYPE_CHECKING:
    from ie_env.concepts.vocabulary import Concept

log = logging.getLogger(__name__)
MAX_FAILURES = 3
COOLDOWN_S = 60.0
_BODY_SNIPPET = 200


class DescriptorError(RuntimeError):
    """The LLM endpoint failed (the message is redacted and names no key)."""


def endpoint_url(url: str) -> str:
    """The ``chat/completions`` URL for a base URL (``.../v1``) or the full URL itself.

    Raises:
        ValueError: not an http(s) URL, or one with credentials in it (use the key variable).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"LLM endpoint must be an http(s) URL, got {redact(url)!r}")
    if parts.username or parts.password:
        raise ValueError("LLM endpoint URL must not contain credentials: put the key in the key variable")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class LLMDescriptors(DescriptorSource):
    """See the module docstring.

    Args:
        config: the settings (``url`` and ``model`` fall back to ``$IE_ENV_LLM_URL``/``$IE_ENV_LLM_MODEL``).
        api_key: the key (default: ``$<config.api_key_env>``; none: no ``Authorization`` header).
        cache: where pools are kept (default: a :class:`DescriptorCache` under the cache dir).
        transport: an httpx transport (tests); default: the network.
        clock: monotonic seconds (injectable, for the rate limit and the cooldown).
        sleep: sleeps seconds (injectable).
    """

    name = "llm"

    def __init__(
        self,
        config: DescriptorConfig | None = None,
        *,
        api_key: str | Secret | None = None,
        cache: DescriptorCache | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config = config or DescriptorConfig(source="llm")
        url = config.resolved_url()
        if not url:
            raise ValueError("the llm descriptor source needs DescriptorConfig.url or $IE_ENV_LLM_URL")
        self.url = endpoint_url(url)
        self.model = config.resolved_model()
        if isinstance(api_key, str):
            api_key = Secret(api_key, "api_key")
        self._key = api_key if api_key is not None else secret_from_env(config.api_key_env)
        self.cache = cache or DescriptorCache.open(self.cache_key())
        self._limiter = RateLimiter(
            [Rate(config.requests_per_minute, 60.0, f"{config.requests_per_minute}/minute")],
            max_wait_s=config.max_wait_s,
            clock=clock,
            sleep=sleep,
        )
        self._client = httpx.Client(timeout=httpx.Timeout(config.timeout_s), transport=transport)
        self._clock = clock
        self._lock = threading.Lock()
        self._pools: dict[str, tuple[str, ...]] = {}
        self._failures = 0
        self._closed_until = -1.0
        self.stats = {"requests": 0, "failures": 0, "rejected": 0, "cached": 0, "fetched": 0, "skipped": 0}
        self.last_error: str | None = None

    def cache_key(self) -> str:
        """The pools' cache key: endpoint (without query string), model, prompt version, sampling."""
        parts = urlsplit(self.url)
        c = self.config
        fields = [urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), self.model, PROMPT_VERSION]
        fields += [c.temperature, c.max_tokens, c.pool_size, c.max_words, c.max_chars]
        return cache_key(fields)

    def __repr__(self) -> str:
        return f"LLMDescriptors(url={redact(self.url)!r}, model={self.model!r}, key={'set' if self._key else 'none'})"

    def describe(self) -> dict:
        """Source, endpoint, model and prompt version (no key), with the request counts."""
        return {"source": self.name, "url": redact(self.url), "model": self.model, "prompt": PROMPT_VERSION,
                **self.stats}  # fmt: skip

    # -- drawing ------------------------------------------------------------------------------

    def descriptor(self, concept_query: str, rng: np.random.Generator, concept: Concept | None = None) -> str:
        """Draw one descriptor of the concept's pool (``""`` when it has none or the endpoint failed)."""
        pool = self.pool(concept_query)
        return pool[int(rng.integers(len(pool)))] if pool else ""

    def pool(self, concept_query: str) -> tuple[str, ...]:
        """The concept's descriptors: from memory, the disk cache, or the endpoint (then cached)."""
        key = normalize_text(concept_query)
        with self._lock:
            pool = self._pools.get(key)
        if pool is not None:
            return pool
        pool = self.cache.get(key)
        if pool is not None:
            self._count("cached")
        elif self._clock() < self._closed_until:
            self._count("skipped")
            if self.config.strict:
                raise DescriptorError(f"LLM endpoint paused after {MAX_FAILURES} failures in a row")
            return ()
        else:
            try:
                pool, rejected = self._sample(concept_query)
            except DescriptorError as exc:
                self._failed(exc)
                return ()
            self.cache.put(key, pool, rejected)
            self._count("fetched")
        with self._lock:
            self._pools[key] = pool
        return pool

    def prefetch(self, concept_queries: Iterable[str]) -> None:
        """Fill the pools of many concepts, ``concurrency`` requests at a time."""
        todo = list(dict.fromkeys(q for q in concept_queries if normalize_text(q) not in self._pools))
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            list(pool.map(self.pool, todo))

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.stats[name] += amount

    def _failed(self, exc: DescriptorError) -> None:
        with self._lock:
            self._failures += 1
            self.stats["failures"] += 1
            self.last_error = str(exc)
            if self._failures >= MAX_FAILURES:
                self._closed_until = self._clock() + COOLDOWN_S
        log.warning("descriptor request failed, querying without a descriptor: %s", exc)
        if self.config.strict:
            raise exc

    # -- requests -----------------------------------------------------------------------------

    def _sample(self, concept: str) -> tuple[tuple[str, ...], int]:
        """Request completions until the pool is full or the request bound is hit."""
        c = self.config
        kept: list[str] = []
        rejected = 0
        for _ in range(c.max_requests):
            want = min(c.samples_per_request, c.pool_size - len(kept))
            for completion in self._complete(concept, want):
                descriptor, _reason = descriptor_from(completion, concept, c.max_words, c.max_chars)
                if descriptor is None:
                    rejected += 1
                elif len(kept) < c.pool_size:
                    kept.append(descriptor)
            if len(kept) >= c.pool_size:
                break
        self._count("rejected", rejected)
        return tuple(kept), rejected

    def _complete(self, concept: str, n: int) -> list[str]:
        """One chat/completions request: the completions' texts (raises DescriptorError)."""
        wait = self._limiter.acquire()
        if wait is not None:
            raise DescriptorError(wait)
        body = {
            "model": self.model,
            "messages": chat_messages(concept),
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
            "n": n,
        }
        headers = {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}
        self._count("requests")
        try:
            response = self._client.post(self.url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise DescriptorError(f"LLM request timed out after {self.config.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise DescriptorError(redact(f"LLM request failed: {type(exc).__name__}: {exc}")) from None
        if response.status_code == 429:
            seconds = parse_retry_after(response.headers.get("Retry-After"))
            self._limiter.block_for(seconds if seconds is not None else 1.0)
        if response.status_code != 200:
            snippet = response.text[:_BODY_SNIPPET]
            raise DescriptorError(redact(f"LLM endpoint answered HTTP {response.status_code}: {snippet!r}"))
        texts = _completion_texts(response.content)
        with self._lock:
            self._failures = 0
        return texts

    def close(self) -> None:
        """Close the HTTP client and the cache."""
        self._client.close()
        self.cache.close()


def _completion_texts(content: bytes) -> list[str]:
    """The ``choices[*].message.content`` (or ``.text``) strings of an answer; DescriptorError if not the API's JSON."""
    try:
        data: Any = json.loads(content)
        choices = data["choices"]
        if not isinstance(choices, list):
            raise TypeError("choices is not a list")
        texts = []
        for choice in choices:
            message = choice.get("message") or {}
            text = message.get("content") if isinstance(message, dict) else None
            text = choice.get("text") if text is None else text
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise TypeError("a completion is not a string")
            texts.append(text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DescriptorError(
            redact(f"LLM endpoint answered something that is not a chat completion ({exc})")
        ) from None
    return texts
