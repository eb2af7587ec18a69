"""Openverse images API client; the same class talks to the live API and to ``ie-web serve``.

``GET {base_url}/v1/images/?q=&page=&page_size=`` returns ``{"result_count", "page_count",
"page_size", "page", "results": [{"id", "title", "url", "thumbnail", "license", "tags": [{"name",
"accuracy"}], "source", "provider", "width", "height", ...}]}``. Anonymous clients may ask for
``page_size`` ≤ 20, authenticated ones ≤ 500, and ``page`` ≤ 20. With ``OPENVERSE_CLIENT_ID`` and
``OPENVERSE_CLIENT_SECRET`` set, the client gets a bearer token from ``POST /v1/auth_tokens/token/``
(OAuth2 client credentials) and renews it before it expires or after a 401.

Rate limits (documentation/api/user/rate_limits.md): anonymous 5/hour burst and 100/day;
authenticated 100/minute and 10,000/day. A loopback ``base_url`` (the offline web) is unlimited.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ie_env.search.base import SearchHit, SearchResult, rank_hits, validate_query
from ie_env.search.credentials import Secret, redact, secret_from_env
from ie_env.search.http import HttpConfig, HttpReply, JsonHttp, describe_status, is_loopback_url
from ie_env.search.ratelimit import Rate, RateLimiter, shared_limiter

log = logging.getLogger(__name__)

LIVE_URL = "https://api.openverse.org"
CLIENT_ID_ENV = "OPENVERSE_CLIENT_ID"
CLIENT_SECRET_ENV = "OPENVERSE_CLIENT_SECRET"
ANON_MAX_PAGE_SIZE = 20
AUTH_MAX_PAGE_SIZE = 500
LOCAL_MAX_PAGE_SIZE = 100
MAX_PAGES = 20
ANON_RATES = (Rate(5, 3600.0, "5/hour"), Rate(100, 86400.0, "100/day"))
AUTH_RATES = (Rate(100, 60.0, "100/min"), Rate(10_000, 86400.0, "10000/day"))
TOKEN_MARGIN_S = 60.0


class OpenverseEngine:
    """Search Openverse (or the offline web that speaks its API).

    Args:
        base_url: API root (default the live API); ``http://127.0.0.1:PORT`` for ``ie-web serve``.
        name: engine name used in hits and error values.
        max_page_size: largest ``page_size`` sent (default 20 anonymous, 500 authenticated, 100 local).
        extra_params: further query parameters, e.g. ``{"license": "cc0,pdm", "mature": "false"}``.
        http: timeouts and limits.
        rates: rate limits (default: the provider's for live URLs, none for loopback).
        use_env_credentials: read ``OPENVERSE_CLIENT_ID``/``OPENVERSE_CLIENT_SECRET``.
        env: where to read them (default ``os.environ``).
        clock: monotonic seconds (injectable).
        sleep: sleeps seconds (injectable).
    """

    def __init__(
        self,
        base_url: str = LIVE_URL,
        *,
        name: str = "openverse",
        max_page_size: int | None = None,
        extra_params: Mapping[str, str] | None = None,
        http: HttpConfig | None = None,
        rates: Sequence[Rate] | None = None,
        use_env_credentials: bool = True,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OpenverseEngine: base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.local = is_loopback_url(self.base_url)
        self.extra_params = dict(extra_params or {})
        for key in ("q", "page", "page_size"):
            if key in self.extra_params:
                raise ValueError(f"OpenverseEngine: extra_params may not set {key!r}")
        self._client_id: Secret | None = None
        self._client_secret: Secret | None = None
        if use_env_credentials:
            self._client_id = secret_from_env(CLIENT_ID_ENV, env)
            self._client_secret = secret_from_env(CLIENT_SECRET_ENV, env)
            if (self._client_id is None) != (self._client_secret is None):
                log.warning(
                    "openverse: only one of %s/%s is set; searching anonymously",
                    CLIENT_ID_ENV,
                    CLIENT_SECRET_ENV,
                )
                self._client_id = self._client_secret = None
        self.authenticated = self._client_id is not None
        default_max = (
            AUTH_MAX_PAGE_SIZE
            if self.authenticated
            else (LOCAL_MAX_PAGE_SIZE if self.local else ANON_MAX_PAGE_SIZE)
        )
        self.max_page_size = default_max if max_page_size is None else int(max_page_size)
        if not 1 <= self.max_page_size <= AUTH_MAX_PAGE_SIZE:
            raise ValueError(f"OpenverseEngine: max_page_size must be in [1, 500], got {max_page_size!r}")
        if rates is None:
            rates = () if self.local else (AUTH_RATES if self.authenticated else ANON_RATES)
        if clock is time.monotonic and sleep is time.sleep and rates:
            who = (
                "auth-" + hashlib.sha256(self._client_id.reveal().encode()).hexdigest()[:8]
                if self._client_id
                else "anon"
            )
            limiter = shared_limiter(f"openverse:{who}@{parts.hostname}", rates)
        else:
            limiter = RateLimiter(rates, clock=clock, sleep=sleep)
        self.http = JsonHttp(http, limiter=limiter, trust_env=not self.local, clock=clock, sleep=sleep)
        self.clock = clock
        self._token: Secret | None = None
        self._token_expires = 0.0

    def __repr__(self) -> str:
        auth = "authenticated" if self.authenticated else "anonymous"
        return f"OpenverseEngine(base_url={self.base_url!r}, name={self.name!r}, {auth})"

    def close(self) -> None:
        self.http.close()

    # -- auth -------------------------------------------------------------------------------------

    def _auth_header(self, deadline: float, force: bool = False) -> tuple[dict[str, str], str | None]:
        if self._client_id is None or self._client_secret is None:
            return {}, None
        if force or self._token is None or self.clock() >= self._token_expires:
            reply, reason = self.http.request_json(
                "POST",
                f"{self.base_url}/v1/auth_tokens/token/",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id.reveal(),
                    "client_secret": self._client_secret.reveal(),
                },
                deadline=deadline,
                use_limiter=False,
            )
            if reply is None:
                return {}, f"token request failed: {reason}"
            data = reply.data if isinstance(reply.data, dict) else {}
            token = data.get("access_token")
            if reply.status != 200 or not isinstance(token, str) or not token:
                return {}, f"token request refused ({describe_status(reply)})"
            self._token = Secret(token, "openverse access token")
            try:
                lifetime = float(data.get("expires_in", 3600))
            except (TypeError, ValueError):
                lifetime = 3600.0
            self._token_expires = self.clock() + max(0.0, lifetime - TOKEN_MARGIN_S)
        return {"Authorization": f"Bearer {self._token.reveal()}"}, None

    # -- search -----------------------------------------------------------------------------------

    def search(self, query: str, n: int) -> SearchResult:
        """Return up to ``n`` hits, paginating past ``max_page_size``; errors as values."""
        text = validate_query(query, n, self.name)
        started = self.clock()
        deadline = started + self.http.config.total_timeout_s
        page_size = min(n, self.max_page_size)
        hits: list[SearchHit] = []
        note = None
        page = 1
        while len({h.url for h in hits}) < n and page <= MAX_PAGES:
            reply, reason = self._get_page(text, page, page_size, deadline)
            if reason is not None:
                if not hits:
                    return self._error(text, reason, started)
                note = f"page {page} failed ({reason}); returned {len(hits)} hits"
                break
            assert reply is not None
            data = reply.data
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                reason = f"unexpected response (no 'results' list): {reply.text[:100]!r}"
                if not hits:
                    return self._error(text, reason, started)
                note = f"page {page}: {reason}"
                break
            hits.extend(hit for item in results if (hit := self._hit(item)) is not None)
            page_count = _as_int(data.get("page_count"))
            if len(results) < page_size or (page_count is not None and page >= page_count):
                break
            page += 1
        return SearchResult(
            engine=self.name, query=text, hits=rank_hits(hits, n), seconds=self.clock() - started, note=note
        )

    def _get_page(
        self, text: str, page: int, page_size: int, deadline: float
    ) -> tuple[HttpReply | None, str | None]:
        params: dict[str, str | int] = {"q": text, "page": page, "page_size": page_size, **self.extra_params}
        for attempt in range(2):
            headers, reason = self._auth_header(deadline, force=attempt > 0)
            if reason is not None:
                return None, reason
            reply, reason = self.http.request_json(
                "GET", f"{self.base_url}/v1/images/", params=params, headers=headers, deadline=deadline
            )
            if reply is None:
                return None, reason
            if reply.status == 401 and self.authenticated and attempt == 0:
                continue
            if reply.status != 200:
                return None, describe_status(reply)
            return reply, None
        return None, "HTTP 401 after renewing the token"

    def _hit(self, item: Any) -> SearchHit | None:
        if not isinstance(item, dict):
            return None
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return None
        return SearchHit(
            url=url,
            title=str(item.get("title") or ""),
            engine=self.name,
            id=str(item.get("id") or ""),
            thumbnail=item.get("thumbnail") if isinstance(item.get("thumbnail"), str) else None,
            license=str(item.get("license") or ""),
            source=str(item.get("source") or item.get("provider") or ""),
            width=_as_int(item.get("width")),
            height=_as_int(item.get("height")),
            tags=_tag_names(item.get("tags")),
        )

    def _error(self, text: str, reason: str, started: float) -> SearchResult:
        return SearchResult(
            engine=self.name,
            query=text,
            error=redact(f"{self.name}: {reason}"),
            seconds=self.clock() - started,
        )


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _tag_names(tags: Any) -> tuple[str, ...]:
    if not isinstance(tags, list):
        return ()
    names = []
    for tag in tags:
        name = tag.get("name") if isinstance(tag, dict) else tag
        if isinstance(name, str) and name:
            names.append(name)
    return tuple(names)
