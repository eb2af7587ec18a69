"""Openverse images API client; the same class talks to the live API and to ``ie-web serve``.

``GET {base_url}/v1/images/?q=&page=&page_size=`` returns ``{"result_count", "page_count",
"page_size", "page", "results": [{"id", "title", "url", "thumbnail", "license", "tags": [{"name",
"accuracy"}], "source", "provider", "width", "height", ...}]}``. Anonymous clients may ask for
``page_size`` ≤ 20, authenticated ones ≤ 500, and ``page`` ≤ 20. With ``OPENVERSE_CLIENT_ID`` and
``OPENVERSE_CLIENT_SECRET`` set, the client gets a bearer token from ``POST /v1/auth_tokens/token/``
(OAuth2 client credentials) and renews it before it expires or after a 401.

Rate limits (Openverse's own API documentation, "rate limits"): anonymous 5/hour burst and
100/day; authenticated 100/minute and 10,000/day. A loopback ``base_url`` (the offline web) is
unlimited. URL checks, limiter, HTTP client and the paging loop are shared with the other HTTP
engines in :mod:`ie_env.search._paged`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ie_env.search._paged import Page, PagedJsonEngine, PageParams, as_int, fingerprint, http_url
from ie_env.search.base import SearchHit
from ie_env.search.credentials import Secret, secret_from_env
from ie_env.search.http import HttpConfig, HttpReply, describe_status
from ie_env.search.ratelimit import Rate
from ie_env.validate import check_int, fail

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
PAGING_PARAMS = ("q", "page", "page_size")


class OpenverseEngine(PagedJsonEngine):
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

    provider = "openverse"

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
        self.extra_params = dict(extra_params or {})
        for key in PAGING_PARAMS:
            if key in self.extra_params:
                fail(self, "extra_params", f"not set {key!r} (the engine sets {PAGING_PARAMS})", extra_params)
        check_int(self, "max_page_size", 1, AUTH_MAX_PAGE_SIZE, optional=True, value=max_page_size)
        self._client_id, self._client_secret = _credentials(env) if use_env_credentials else (None, None)
        self.authenticated = self._client_id is not None
        super().__init__(
            base_url.rstrip("/"),
            name=name,
            http=http,
            rates=rates,
            default_rates=AUTH_RATES if self.authenticated else ANON_RATES,
            account="auth-" + fingerprint(self._client_id) if self._client_id else "anon",
            clock=clock,
            sleep=sleep,
        )
        if max_page_size is None:
            max_page_size = (
                AUTH_MAX_PAGE_SIZE
                if self.authenticated
                else (LOCAL_MAX_PAGE_SIZE if self.local else ANON_MAX_PAGE_SIZE)
            )
        self.max_page_size = max_page_size
        self._token: Secret | None = None
        self._token_expires = 0.0

    def __repr__(self) -> str:
        auth = "authenticated" if self.authenticated else "anonymous"
        return f"OpenverseEngine(base_url={self.base_url!r}, name={self.name!r}, {auth})"

    def _first_page(self, wanted: int) -> PageParams:
        return {"page": 1, "page_size": min(wanted, self.max_page_size)}

    def _fetch_page(self, text: str, params: PageParams, missing: int, deadline: float) -> Page | str:
        reply, reason = self._get_page({"q": text, **params, **self.extra_params}, deadline)
        if reason is not None:
            return reason
        assert reply is not None
        data = reply.data
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            return f"unexpected response (no 'results' list): {reply.text[:100]!r}"
        hits = [hit for item in results if (hit := self._hit(item)) is not None]
        page, page_size = int(params["page"]), int(params["page_size"])
        page_count = as_int(data.get("page_count"))
        last = len(results) < page_size or (page_count is not None and page >= page_count)
        if last or page >= MAX_PAGES:
            return Page(hits, None)
        return Page(hits, {**params, "page": page + 1})

    def _get_page(self, params: PageParams, deadline: float) -> tuple[HttpReply | None, str | None]:
        """GET one page, renewing the token once after a 401."""
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

    def _auth_header(self, deadline: float, force: bool = False) -> tuple[dict[str, str], str | None]:
        """The bearer-token header (empty when anonymous), fetching a token when there is none."""
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

    def _hit(self, item: Any) -> SearchHit | None:
        if not isinstance(item, dict) or (url := http_url(item.get("url"))) is None:
            return None
        return SearchHit(
            url=url,
            title=str(item.get("title") or ""),
            engine=self.name,
            id=str(item.get("id") or ""),
            thumbnail=item.get("thumbnail") if isinstance(item.get("thumbnail"), str) else None,
            license=str(item.get("license") or ""),
            source=str(item.get("source") or item.get("provider") or ""),
            width=as_int(item.get("width")),
            height=as_int(item.get("height")),
            tags=_tag_names(item.get("tags")),
        )


def _credentials(env: Mapping[str, str] | None) -> tuple[Secret | None, Secret | None]:
    """The client id and secret from the environment; both or neither (a lone one is ignored)."""
    client_id = secret_from_env(CLIENT_ID_ENV, env)
    client_secret = secret_from_env(CLIENT_SECRET_ENV, env)
    if (client_id is None) != (client_secret is None):
        log.warning(
            "openverse: only one of %s/%s is set; searching anonymously", CLIENT_ID_ENV, CLIENT_SECRET_ENV
        )
        return None, None
    return client_id, client_secret


def _tag_names(tags: Any) -> tuple[str, ...]:
    if not isinstance(tags, list):
        return ()
    names = []
    for tag in tags:
        name = tag.get("name") if isinstance(tag, dict) else tag
        if isinstance(name, str) and name:
            names.append(name)
    return tuple(names)
