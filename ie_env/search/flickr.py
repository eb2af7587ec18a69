"""Flickr photo search (``flickr.photos.search``), with an API key from ``$FLICKR_API_KEY``.

``GET https://api.flickr.com/services/rest/?method=flickr.photos.search&format=json&nojsoncallback=1
&api_key=…&text=…&license=…&extras=url_q,url_m,license,owner_name,tags&per_page=…&page=…``
returns ``{"photos": {"page", "pages", "perpage", "total", "photo": [{"id", "owner", "secret",
"server", "farm", "title", "license", "ownername", "tags", "url_m", "width_m", "height_m", "url_q",
...}]}, "stat": "ok"}``; failures come as HTTP 200 with ``{"stat": "fail", "code", "message"}``.
``per_page`` ≤ 500 and only the first 4,000 results of a query are served.

Licence ids (``flickr.photos.licenses.getInfo``): 0 all rights reserved, 1 BY-NC-SA, 2 BY-NC,
3 BY-NC-ND, 4 BY, 5 BY-SA, 6 BY-ND, 7 no known copyright restrictions, 8 US Government work,
9 CC0, 10 Public Domain Mark. The default filter asks for every open licence (1-10).
The key's documented limit is 3,600 queries/hour; the limiter also spaces bursts.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ie_env.search.base import SearchHit, SearchResult, rank_hits, validate_query
from ie_env.search.credentials import Secret, redact, secret_from_env
from ie_env.search.http import HttpConfig, JsonHttp, describe_status, is_loopback_url
from ie_env.search.ratelimit import Rate, RateLimiter, shared_limiter

LIVE_URL = "https://api.flickr.com/services/rest/"
API_KEY_ENV = "FLICKR_API_KEY"
MAX_PAGE_SIZE = 500
MAX_RESULTS = 4000
STATIC_HOST = "https://live.staticflickr.com"
LICENSES = {
    0: "all-rights-reserved",
    1: "by-nc-sa",
    2: "by-nc",
    3: "by-nc-nd",
    4: "by",
    5: "by-sa",
    6: "by-nd",
    7: "nkcr",
    8: "us-gov",
    9: "cc0",
    10: "pdm",
}
OPEN_LICENSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
DEFAULT_RATES = (Rate(3600, 3600.0, "3600/hour"), Rate(5, 1.0, "5/s burst"))
EXTRAS = "url_q,url_m,license,owner_name,tags"


class FlickrEngine:
    """Search Flickr photos under open licences.

    Args:
        base_url: the REST endpoint.
        name: engine name.
        licenses: licence ids to allow (``license=`` filter); empty means no filter.
        sort: Flickr sort order ("relevance" like a web search).
        safe_search: 1 safe, 2 moderate, 3 restricted.
        max_page_size: ``per_page`` (≤ 500).
        http: timeouts and limits.
        rates: rate limits (default the key's 3,600/hour; none for loopback).
        env: where ``FLICKR_API_KEY`` is read (default ``os.environ``).
        clock: monotonic seconds (injectable).
        sleep: sleeps seconds (injectable).
    """

    def __init__(
        self,
        base_url: str = LIVE_URL,
        *,
        name: str = "flickr",
        licenses: Sequence[int] = OPEN_LICENSES,
        sort: str = "relevance",
        safe_search: int = 1,
        max_page_size: int = MAX_PAGE_SIZE,
        http: HttpConfig | None = None,
        rates: Sequence[Rate] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"FlickrEngine: base_url must be an http(s) URL, got {base_url!r}")
        bad = [lic for lic in licenses if lic not in LICENSES]
        if bad:
            raise ValueError(f"FlickrEngine: unknown licence ids {bad}; known: {sorted(LICENSES)}")
        if safe_search not in (1, 2, 3):
            raise ValueError(f"FlickrEngine: safe_search must be 1, 2 or 3, got {safe_search!r}")
        if not 1 <= max_page_size <= MAX_PAGE_SIZE:
            raise ValueError(
                f"FlickrEngine: max_page_size must be in [1, {MAX_PAGE_SIZE}], got {max_page_size!r}"
            )
        self.base_url = base_url
        self.name = name
        self.licenses = tuple(licenses)
        self.sort = sort
        self.safe_search = safe_search
        self.max_page_size = max_page_size
        self._api_key: Secret | None = secret_from_env(API_KEY_ENV, env)
        local = is_loopback_url(base_url)
        if rates is None:
            rates = () if local else DEFAULT_RATES
        if clock is time.monotonic and sleep is time.sleep and rates:
            who = (
                hashlib.sha256(self._api_key.reveal().encode()).hexdigest()[:8] if self._api_key else "nokey"
            )
            limiter = shared_limiter(f"flickr:{who}@{parts.hostname}", rates)
        else:
            limiter = RateLimiter(rates, clock=clock, sleep=sleep)
        self.http = JsonHttp(http, limiter=limiter, trust_env=not local, clock=clock, sleep=sleep)
        self.clock = clock

    def __repr__(self) -> str:
        key = "api key set" if self._api_key else "no api key"
        return f"FlickrEngine(base_url={self.base_url!r}, name={self.name!r}, {key})"

    def close(self) -> None:
        self.http.close()

    def search(self, query: str, n: int) -> SearchResult:
        """Return up to ``n`` (≤ 4,000) photo hits, best first; errors as values."""
        text = validate_query(query, n, self.name)
        started = self.clock()
        if self._api_key is None:
            return SearchResult(
                engine=self.name,
                query=text,
                error=f"{self.name}: no API key; set the {API_KEY_ENV} environment variable",
            )
        n_wanted = min(n, MAX_RESULTS)
        deadline = started + self.http.config.total_timeout_s
        per_page = min(n_wanted, self.max_page_size)
        hits: list[SearchHit] = []
        note = None
        page = 1
        while len({h.url for h in hits}) < n_wanted and page * per_page <= MAX_RESULTS + per_page - 1:
            params: dict[str, str | int] = {
                "method": "flickr.photos.search",
                "api_key": self._api_key.reveal(),
                "text": text,
                "format": "json",
                "nojsoncallback": 1,
                "sort": self.sort,
                "safe_search": self.safe_search,
                "content_type": 1,
                "media": "photos",
                "extras": EXTRAS,
                "per_page": per_page,
                "page": page,
            }
            if self.licenses:
                params["license"] = ",".join(str(lic) for lic in self.licenses)
            reply, reason = self.http.request_json("GET", self.base_url, params=params, deadline=deadline)
            if reply is not None and reply.status != 200:
                reply, reason = None, describe_status(reply)
            data = reply.data if reply is not None else None
            if reason is None and not isinstance(data, dict):
                reason = "unexpected response (not a JSON object)"
            if reason is None and data.get("stat") != "ok":
                reason = f"API error {data.get('code', '?')}: {str(data.get('message', ''))[:200]}"
            photos = data.get("photos") if reason is None else None
            if reason is None and not (isinstance(photos, dict) and isinstance(photos.get("photo"), list)):
                reason = "unexpected response (no photos.photo list)"
            if reason is not None:
                if not hits:
                    return SearchResult(
                        engine=self.name,
                        query=text,
                        error=redact(f"{self.name}: {reason}"),
                        seconds=self.clock() - started,
                    )
                note = redact(f"page {page} failed ({reason}); returned {len(hits)} hits")
                break
            batch = photos["photo"]
            hits.extend(hit for item in batch if (hit := self._hit(item)) is not None)
            pages = _as_int(photos.get("pages"))
            if len(batch) < per_page or (pages is not None and page >= pages):
                break
            page += 1
        return SearchResult(
            engine=self.name,
            query=text,
            hits=rank_hits(hits, n_wanted),
            seconds=self.clock() - started,
            note=note,
        )

    def _hit(self, item: Any) -> SearchHit | None:
        if not isinstance(item, dict):
            return None
        photo_id, secret, server = item.get("id"), item.get("secret"), item.get("server")
        url = item.get("url_m")
        width, height = _as_int(item.get("width_m")), _as_int(item.get("height_m"))
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            if not (photo_id and secret and server):
                return None
            url, width, height = f"{STATIC_HOST}/{server}/{photo_id}_{secret}.jpg", None, None
        thumb = item.get("url_q")
        if not isinstance(thumb, str) and photo_id and secret and server:
            thumb = f"{STATIC_HOST}/{server}/{photo_id}_{secret}_q.jpg"
        license_id = _as_int(item.get("license"))
        tags = item.get("tags")
        return SearchHit(
            url=url,
            title=str(item.get("title") or ""),
            engine=self.name,
            id=str(photo_id or ""),
            thumbnail=thumb if isinstance(thumb, str) else None,
            license=LICENSES.get(license_id, "") if license_id is not None else "",
            source="flickr",
            width=width,
            height=height,
            tags=tuple(tags.split()) if isinstance(tags, str) else (),
        )


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
