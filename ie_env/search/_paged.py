"""The shared base of the HTTP engines that page through a JSON search API.

Openverse, Wikimedia Commons and Flickr differ in their endpoint, parameters, response shape and
licences; everything else lives here once:

* the ``base_url`` check (an http(s) URL with a host) and the loopback test: a loopback URL (the
  offline web or a test server) gets no rate limit and ignores proxy settings;
* the limiter choice: the provider's documented rates by default, a process-wide limiter shared per
  provider, account and host when the real clock is used, a private one when a test injects a clock;
* the :class:`~ie_env.search.http.JsonHttp` client with the engine's timeouts;
* the paging loop of :meth:`PagedJsonEngine.search`: validate the query, ask for pages until ``n``
  distinct URLs came back or the API has no more, keep what earlier pages gave when a later page
  fails (with a note), and rank the hits.

An engine subclass sets ``provider`` (and ``max_results`` when the API serves fewer results than a
caller may ask for) and implements :meth:`PagedJsonEngine._first_page` and
:meth:`PagedJsonEngine._fetch_page`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple
from urllib.parse import urlsplit

from ie_env.search.base import SearchHit, SearchResult, rank_hits, validate_query
from ie_env.search.credentials import Secret, redact
from ie_env.search.http import HttpConfig, HttpReply, JsonHttp, describe_status, is_loopback_url
from ie_env.search.ratelimit import Rate, RateLimiter, shared_limiter

PageParams = dict[str, str | int]


class Page(NamedTuple):
    """What one page of results gave.

    Attributes:
        hits: the page's hits in the API's order (ranks are assigned later).
        next: the parameters that ask for the next page, or None when there is no next page.
    """

    hits: list[SearchHit]
    next: PageParams | None


class PagedJsonEngine:
    """Base class of a search engine behind a paged JSON API.

    Args:
        base_url: the API endpoint; must be an http(s) URL with a host.
        name: engine name used in hits and error values.
        http: timeouts and limits (default :class:`~ie_env.search.http.HttpConfig`).
        rates: rate limits; None means ``default_rates`` for a remote URL and none for loopback.
        default_rates: the provider's documented limits for this account.
        account: who the provider counts requests against (e.g. a key's fingerprint); part of the
            shared limiter's key, "" for a provider that counts per client address only.
        clock: monotonic seconds (injectable).
        sleep: sleeps seconds (injectable).

    Raises:
        ValueError: ``base_url`` is not an http(s) URL with a host.
    """

    provider: ClassVar[str] = "http"
    max_results: ClassVar[int | None] = None

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        http: HttpConfig | None,
        rates: Sequence[Rate] | None,
        default_rates: Sequence[Rate],
        account: str = "",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{type(self).__name__}: base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url
        self.name = name
        self.local = is_loopback_url(base_url)
        if rates is None:
            rates = () if self.local else tuple(default_rates)
        if clock is time.monotonic and sleep is time.sleep and rates:
            who = f":{account}" if account else ""
            limiter = shared_limiter(f"{self.provider}{who}@{parts.hostname}", rates)
        else:
            limiter = RateLimiter(rates, clock=clock, sleep=sleep)
        self.http = JsonHttp(http, limiter=limiter, trust_env=not self.local, clock=clock, sleep=sleep)
        self.clock = clock

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()

    def search(self, query: str, n: int) -> SearchResult:
        """Return up to ``n`` hits, best first, asking for as many pages as needed; errors as values.

        Raises:
            SearchError: a bad query or ``n`` (nothing is sent).
        """
        text = validate_query(query, n, self.name)
        started = self.clock()
        wanted = n if self.max_results is None else min(n, self.max_results)
        deadline = started + self.http.config.total_timeout_s
        hits: list[SearchHit] = []
        note = None
        params: PageParams | None = self._first_page(wanted)
        page = 1
        while params is not None and len({hit.url for hit in hits}) < wanted:
            outcome = self._fetch_page(text, params, wanted - len(hits), deadline)
            if isinstance(outcome, str):
                if not hits:
                    return self._error(text, outcome, started)
                note = redact(f"page {page} failed ({outcome}); returned {len(hits)} hits")
                break
            hits.extend(outcome.hits)
            params = outcome.next
            page += 1
        return SearchResult(
            engine=self.name,
            query=text,
            hits=rank_hits(hits, wanted),
            seconds=self.clock() - started,
            note=note,
        )

    def _first_page(self, wanted: int) -> PageParams:
        """The paging parameters of the first request for ``wanted`` hits."""
        raise NotImplementedError

    def _fetch_page(self, text: str, params: PageParams, missing: int, deadline: float) -> Page | str:
        """Ask for one page.

        Args:
            text: the validated query.
            params: this page's paging parameters (from ``_first_page`` or the previous ``Page.next``).
            missing: how many more hits are wanted.
            deadline: ``clock()`` time by which the whole search must end.

        Returns:
            The page, or the reason it failed.
        """
        raise NotImplementedError

    def _error(self, text: str, reason: str, started: float) -> SearchResult:
        return SearchResult(
            engine=self.name,
            query=text,
            error=redact(f"{self.name}: {reason}"),
            seconds=self.clock() - started,
        )


def json_object(reply: HttpReply | None, reason: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object of a ``200`` answer, or the reason there is none.

    Args:
        reply: what :meth:`~ie_env.search.http.JsonHttp.request_json` returned.
        reason: its failure reason (None when a reply came back).

    Returns:
        ``(data, None)``, or ``(None, reason)`` for a failed request, another status or a body that
        is not a JSON object.
    """
    if reply is None:
        return None, reason or "no reply"
    if reply.status != 200:
        return None, describe_status(reply)
    if not isinstance(reply.data, dict):
        return None, "unexpected response (not a JSON object)"
    return reply.data, None


def as_int(value: Any) -> int | None:
    """An integer the API sent as an int, an integral float or a digit string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def fingerprint(secret: Secret) -> str:
    """A short, non-reversible id of a credential, to key shared rate limiters by account."""
    return hashlib.sha256(secret.reveal().encode()).hexdigest()[:8]


def http_url(value: Any) -> str | None:
    """``value`` if it is an absolute http(s) URL string, else None."""
    return value if isinstance(value, str) and value.startswith(("http://", "https://")) else None
