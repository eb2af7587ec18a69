"""The one sync HTTP helper the live search clients share: timeouts, limits, retries, errors as values.

Every request has connect/read/write timeouts and a total deadline (checked while the body streams
in, so a server that trickles bytes cannot hold a step for long), a response-size cap, the engine's
rate limiter, bounded waits on ``429`` + ``Retry-After``, and a few retries with back-off on
connection failures and ``5xx`` answers. It never raises for network trouble: ``request_json``
returns ``(reply, None)`` or ``(None, reason)``, and every reason passes through
:func:`~ie_env.search.credentials.redact`. URLs (which can carry an API key) are never put in
messages or logs.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

import ie_env
from ie_env.search.credentials import redact
from ie_env.search.ratelimit import RateLimiter, parse_retry_after
from ie_env.validate import check_int, check_ints, check_numbers, check_text

log = logging.getLogger(__name__)

PROJECT_URL = "https://github.com/ie-env/ie_env"
RETRY_STATUSES = frozenset({500, 502, 503, 504})


def default_user_agent(contact: str | None = None) -> str:
    """A descriptive User-Agent per the Wikimedia policy: client/version (contact) library/version."""
    contact = contact or PROJECT_URL
    return (
        f"ie_env/{ie_env.__version__} ({contact}; research crawler for Internet Explorer) "
        f"httpx/{httpx.__version__} Python/{platform.python_version()}"
    )


@dataclass(frozen=True)
class HttpConfig:
    """Timeouts and limits for one engine's HTTP requests.

    Attributes:
        connect_timeout_s: TCP/TLS connect timeout.
        read_timeout_s: longest gap between received bytes.
        total_timeout_s: deadline for one request, body included (retries and waits included).
        max_response_bytes: larger bodies are refused.
        max_retries: extra tries after a connection failure or a 5xx answer.
        retry_backoff_s: first back-off; doubles each retry.
        max_retry_after_s: longest ``Retry-After`` we wait; longer ones become an error value.
        max_429_retries: how many 429 answers we wait out before giving up.
        user_agent: the User-Agent header.
    """

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    total_timeout_s: float = 30.0
    max_response_bytes: int = 32 << 20
    max_retries: int = 2
    retry_backoff_s: float = 0.25
    max_retry_after_s: float = 60.0
    max_429_retries: int = 2
    user_agent: str = field(default_factory=default_user_agent)

    def __post_init__(self) -> None:
        check_numbers(self, ("connect_timeout_s", "read_timeout_s", "total_timeout_s"), 0, low_open=True)
        check_ints(self, ("max_retries", "max_429_retries"), 0)
        check_numbers(self, ("retry_backoff_s", "max_retry_after_s"), 0)
        check_int(self, "max_response_bytes", 1024)
        check_text(self, "user_agent")


@dataclass(frozen=True)
class HttpReply:
    """A completed HTTP exchange.

    Attributes:
        status: HTTP status code.
        data: the parsed JSON body, or None when the body was not JSON.
        headers: response headers.
        text: the first 300 characters of the body (redacted), for messages.
    """

    status: int
    data: Any
    headers: Mapping[str, str]
    text: str = ""


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is a loopback address or ``localhost``."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JsonHttp:
    """A sync httpx client with the project's timeouts, limits, retries and redaction.

    Args:
        config: timeouts and limits.
        limiter: the engine's rate limiter (None: unlimited).
        trust_env: let httpx read proxy settings from the environment (off for loopback use).
        clock: monotonic seconds (injectable for tests).
        sleep: sleeps seconds (injectable for tests).
    """

    def __init__(
        self,
        config: HttpConfig | None = None,
        *,
        limiter: RateLimiter | None = None,
        trust_env: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config or HttpConfig()
        self.limiter = limiter
        self.clock = clock
        self.sleep = sleep
        cfg = self.config
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                connect=cfg.connect_timeout_s,
                read=cfg.read_timeout_s,
                write=cfg.read_timeout_s,
                pool=cfg.connect_timeout_s,
            ),
            headers={"User-Agent": cfg.user_agent, "Accept": "application/json"},
            follow_redirects=True,
            max_redirects=3,
            trust_env=trust_env,
        )

    def __repr__(self) -> str:
        return f"JsonHttp(limiter={self.limiter!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> JsonHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_json(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
        use_limiter: bool = True,
    ) -> tuple[HttpReply | None, str | None]:
        """Send one request and parse a JSON answer, with retries; never raises for network trouble.

        Args:
            method: "GET" or "POST".
            url: the endpoint (never echoed in messages).
            params: query parameters.
            data: form body (POST).
            headers: extra headers.
            deadline: absolute ``clock()`` time to give up by (default now + total timeout).
            use_limiter: take a rate-limit token first.

        Returns:
            ``(reply, None)`` for any answer other than 429/5xx-after-retries (the caller checks
            ``reply.status``), else ``(None, reason)``.
        """
        cfg = self.config
        if deadline is None:
            deadline = self.clock() + cfg.total_timeout_s
        tries_5xx = 0
        tries_429 = 0
        while True:
            if use_limiter and self.limiter is not None:
                remaining = max(0.0, deadline - self.clock())
                refused = self.limiter.acquire(max_wait_s=min(self.limiter.max_wait_s, remaining))
                if refused is not None:
                    return None, refused
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None, f"timed out after {cfg.total_timeout_s:g} s"
            reply, reason, retryable = self._once(method, url, params, data, headers, deadline)
            if reply is not None and reply.status == 429:
                refused = self._wait_out_429(reply, tries_429, deadline)
                if refused is not None:
                    return None, refused
                tries_429 += 1
                continue
            if reply is not None and reply.status in RETRY_STATUSES:
                retryable, reason = True, f"HTTP {reply.status}"
            elif reply is not None:
                return reply, None
            if not retryable or tries_5xx >= cfg.max_retries:
                if tries_5xx:
                    reason = f"{reason} (after {tries_5xx + 1} tries)"
                return None, reason
            backoff = cfg.retry_backoff_s * (2**tries_5xx)
            if self.clock() + backoff >= deadline:
                return None, f"{reason}; no time left to retry"
            tries_5xx += 1
            self.sleep(backoff)

    def _wait_out_429(self, reply: HttpReply, tries: int, deadline: float) -> str | None:
        """Hold requests back for a 429's ``Retry-After``; the reason to give up, or None after waiting.

        The limiter (when there is one) is blocked for the wait, so the next ``acquire`` sleeps it;
        without a limiter this sleeps. Waits past ``max_retry_after_s``, past the deadline or after
        ``max_429_retries`` answers are refused instead.
        """
        cfg = self.config
        wait = parse_retry_after(reply.headers.get("retry-after"))
        shown = "no Retry-After" if wait is None else f"Retry-After {wait:.0f} s"
        if wait is None:
            wait = cfg.retry_backoff_s * (2**tries)
        if self.limiter is not None:
            self.limiter.block_for(wait)
        if tries >= cfg.max_429_retries or wait > cfg.max_retry_after_s or self.clock() + wait >= deadline:
            return f"HTTP 429 Too Many Requests ({shown}); gave up after {tries + 1} tries"
        log.info("429 from server, waiting %.1f s", wait)
        if self.limiter is None:
            self.sleep(wait)
        return None

    def _once(
        self,
        method: str,
        url: str,
        params: Mapping[str, str | int] | None,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        deadline: float,
    ) -> tuple[HttpReply | None, str, bool]:
        """One attempt: (reply, "", False) or (None, reason, retryable)."""
        cfg = self.config
        remaining = max(0.001, deadline - self.clock())
        timeout = httpx.Timeout(
            connect=min(cfg.connect_timeout_s, remaining),
            read=min(cfg.read_timeout_s, remaining),
            write=min(cfg.read_timeout_s, remaining),
            pool=min(cfg.connect_timeout_s, remaining),
        )
        log.debug("%s %s", method, urlsplit(url).path)
        try:
            with self._client.stream(
                method, url, params=params, data=data, headers=headers, timeout=timeout
            ) as response:
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cfg.max_response_bytes:
                    return None, f"response of {int(declared)} bytes exceeds {cfg.max_response_bytes}", False
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > cfg.max_response_bytes:
                        return None, f"response exceeds {cfg.max_response_bytes} bytes", False
                    if self.clock() > deadline:
                        return None, f"timed out after {cfg.total_timeout_s:g} s (slow body)", False
                    chunks.append(chunk)
                status = response.status_code
                resp_headers = dict(response.headers)
        except httpx.TimeoutException as exc:
            return None, f"timed out ({type(exc).__name__})", False
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            return None, f"connection failed ({type(exc).__name__}: {redact(str(exc))[:200]})", True
        except httpx.HTTPError as exc:
            return None, f"HTTP failure ({type(exc).__name__}: {redact(str(exc))[:200]})", False
        except (OSError, ValueError) as exc:
            return None, f"request failed ({type(exc).__name__}: {redact(str(exc))[:200]})", False
        body = b"".join(chunks)
        text = redact(body[:300].decode("utf-8", "replace"))
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        return HttpReply(status=status, data=parsed, headers=resp_headers, text=text), "", False


def describe_status(reply: HttpReply) -> str:
    """A short reason for an unexpected HTTP status, with the server's message when it gave one."""
    detail = ""
    data = reply.data
    if isinstance(data, dict):
        for key in ("detail", "message", "error", "error_description"):
            value = data.get(key)
            if value:
                detail = value if isinstance(value, str) else json.dumps(value)[:200]
                break
    elif reply.text:
        detail = reply.text.strip().splitlines()[0][:200] if reply.text.strip() else ""
    reason = f"HTTP {reply.status}"
    return redact(f"{reason}: {detail}" if detail else reason)
