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
The key's documented limit is 3,600 queries/hour; the limiter also spaces bursts. URL checks,
limiter, HTTP client and the paging loop are shared with the other HTTP engines in
:mod:`ie_env.search._paged`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ie_env.search._paged import Page, PagedJsonEngine, PageParams, as_int, fingerprint, http_url, json_object
from ie_env.search.base import SearchHit, SearchResult, validate_query
from ie_env.search.credentials import Secret, secret_from_env
from ie_env.search.http import HttpConfig
from ie_env.search.ratelimit import Rate
from ie_env.validate import check_choice, check_int

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


class FlickrEngine(PagedJsonEngine):
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

    provider = "flickr"
    max_results = MAX_RESULTS

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
        bad = [lic for lic in licenses if lic not in LICENSES]
        if bad:
            raise ValueError(f"FlickrEngine: unknown licence ids {bad}; known: {sorted(LICENSES)}")
        check_choice(self, "safe_search", (1, 2, 3), value=safe_search)
        check_int(self, "max_page_size", 1, MAX_PAGE_SIZE, value=max_page_size)
        self.licenses = tuple(licenses)
        self.sort = sort
        self.safe_search = safe_search
        self.max_page_size = max_page_size
        self._api_key: Secret | None = secret_from_env(API_KEY_ENV, env)
        super().__init__(
            base_url,
            name=name,
            http=http,
            rates=rates,
            default_rates=DEFAULT_RATES,
            account=fingerprint(self._api_key) if self._api_key else "nokey",
            clock=clock,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        key = "api key set" if self._api_key else "no api key"
        return f"FlickrEngine(base_url={self.base_url!r}, name={self.name!r}, {key})"

    def search(self, query: str, n: int) -> SearchResult:
        """Return up to ``n`` (≤ 4,000) photo hits, best first; errors as values.

        Raises:
            SearchError: a bad query or ``n`` (nothing is sent).
        """
        if self._api_key is None:
            text = validate_query(query, n, self.name)
            return SearchResult(
                engine=self.name,
                query=text,
                error=f"{self.name}: no API key; set the {API_KEY_ENV} environment variable",
            )
        return super().search(query, n)

    def _first_page(self, wanted: int) -> PageParams:
        return {"page": 1, "per_page": min(wanted, self.max_page_size)}

    def _fetch_page(self, text: str, params: PageParams, missing: int, deadline: float) -> Page | str:
        assert self._api_key is not None
        request: PageParams = {
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
            **params,
        }
        if self.licenses:
            request["license"] = ",".join(str(lic) for lic in self.licenses)
        reply, reason = self.http.request_json("GET", self.base_url, params=request, deadline=deadline)
        data, reason = json_object(reply, reason)
        if reason is not None:
            return reason
        assert data is not None
        if data.get("stat") != "ok":
            return f"API error {data.get('code', '?')}: {str(data.get('message', ''))[:200]}"
        photos = data.get("photos")
        if not (isinstance(photos, dict) and isinstance(photos.get("photo"), list)):
            return "unexpected response (no photos.photo list)"
        batch = photos["photo"]
        hits = [hit for item in batch if (hit := self._hit(item)) is not None]
        page, per_page = int(params["page"]), int(params["per_page"])
        pages = as_int(photos.get("pages"))
        last = len(batch) < per_page or (pages is not None and page >= pages)
        if last or page * per_page >= MAX_RESULTS:
            return Page(hits, None)
        return Page(hits, {**params, "page": page + 1})

    def _hit(self, item: Any) -> SearchHit | None:
        if not isinstance(item, dict):
            return None
        photo_id, secret, server = item.get("id"), item.get("secret"), item.get("server")
        url = http_url(item.get("url_m"))
        width, height = as_int(item.get("width_m")), as_int(item.get("height_m"))
        if url is None:
            if not (photo_id and secret and server):
                return None
            url, width, height = f"{STATIC_HOST}/{server}/{photo_id}_{secret}.jpg", None, None
        thumb = item.get("url_q")
        if not isinstance(thumb, str) and photo_id and secret and server:
            thumb = f"{STATIC_HOST}/{server}/{photo_id}_{secret}_q.jpg"
        license_id = as_int(item.get("license"))
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
