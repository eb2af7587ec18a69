"""Wikimedia Commons image search through the MediaWiki Action API.

One request per page: ``action=query&generator=search&gsrnamespace=6&gsrsearch=filetype:bitmap <q>
&prop=imageinfo&iiprop=url|size|mime|extmetadata&iiurlwidth=<px>``. Pages come back keyed by page id
(or as a list with ``formatversion=2``); their search rank is the ``index`` field. The next page's
parameters are in ``continue`` (``gsroffset``). Licence comes from ``extmetadata.LicenseShortName``.

Etiquette (Wikimedia API policy): a descriptive User-Agent with contact information (set
``IE_ENV_CONTACT`` to an e-mail or URL of yours), serial requests, ``maxlag=5``, and ``Retry-After``
honoured. The default limiter allows about one request per second. URL checks, limiter, HTTP client
and the paging loop are shared with the other HTTP engines in :mod:`ie_env.search._paged`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ie_env.search._paged import Page, PagedJsonEngine, PageParams, as_int, http_url, json_object
from ie_env.search.base import SearchHit
from ie_env.search.http import HttpConfig, HttpReply, default_user_agent
from ie_env.search.ratelimit import Rate, parse_retry_after
from ie_env.validate import check_int, fail

LIVE_URL = "https://commons.wikimedia.org/w/api.php"
CONTACT_ENV = "IE_ENV_CONTACT"
MAX_PAGE_SIZE = 50
MAX_OFFSET = 10_000
DEFAULT_RATES = (Rate(3, 3.0, "1/s, burst 3"), Rate(200, 60.0, "200/min"))
IMAGE_MIMES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff"})
EXTMETADATA_FIELDS = "LicenseShortName|License|LicenseUrl|ImageDescription|Artist|Categories"
MAXLAG_TRIES = 3
_TAG_RE = re.compile(r"<[^>]+>")


def licence_code(short_name: str) -> str:
    """Map Commons' ``LicenseShortName`` (e.g. "CC BY-SA 4.0", "Public domain") to an Openverse-style code."""
    text = short_name.strip().lower()
    if not text:
        return ""
    if text.startswith("cc0"):
        return "cc0"
    if "public domain" in text or text in ("pd", "pdm"):
        return "pdm"
    match = re.match(r"cc[ -](by(?:-nc)?(?:-nd|-sa)?)", text)
    if match:
        return match.group(1)
    return text


class WikimediaEngine(PagedJsonEngine):
    """Search Wikimedia Commons files (bitmaps by default).

    Args:
        base_url: the ``api.php`` endpoint.
        name: engine name.
        thumb_width: width of the thumbnail URL asked for (``iiurlwidth``).
        filetype: CirrusSearch ``filetype:`` keyword prefixed to the query ("" for none).
        max_page_size: ``gsrlimit`` per request (≤ 50).
        contact: contact info for the User-Agent (default ``$IE_ENV_CONTACT`` or the project URL).
        http: timeouts and limits (its ``user_agent`` is replaced by the descriptive one unless set).
        rates: rate limits (default about 1/s; none for a loopback base_url).
        env: where ``IE_ENV_CONTACT`` is read (default ``os.environ``).
        clock: monotonic seconds (injectable).
        sleep: sleeps seconds (injectable).
    """

    provider = "wikimedia"

    def __init__(
        self,
        base_url: str = LIVE_URL,
        *,
        name: str = "wikimedia",
        thumb_width: int = 320,
        filetype: str = "bitmap",
        max_page_size: int = MAX_PAGE_SIZE,
        contact: str | None = None,
        http: HttpConfig | None = None,
        rates: Sequence[Rate] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_int(self, "thumb_width", 16, 4096, value=thumb_width)
        check_int(self, "max_page_size", 1, MAX_PAGE_SIZE, value=max_page_size)
        if not isinstance(filetype, str) or not re.fullmatch(r"[a-z|]*", filetype):
            fail(self, "filetype", "be like 'bitmap' or 'bitmap|drawing'", filetype)
        self.thumb_width = thumb_width
        self.filetype = filetype
        self.max_page_size = max_page_size
        contact = contact or (os.environ if env is None else env).get(CONTACT_ENV) or None
        config = http or HttpConfig()
        if http is None or http.user_agent == HttpConfig().user_agent:
            config = dataclasses.replace(config, user_agent=default_user_agent(contact))
        super().__init__(
            base_url,
            name=name,
            http=config,
            rates=rates,
            default_rates=DEFAULT_RATES,
            clock=clock,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"WikimediaEngine(base_url={self.base_url!r}, name={self.name!r})"

    def _first_page(self, wanted: int) -> PageParams:
        return {}

    def _fetch_page(self, text: str, params: PageParams, missing: int, deadline: float) -> Page | str:
        request: PageParams = {
            "action": "query",
            "format": "json",
            "formatversion": 2,
            "generator": "search",
            "gsrsearch": f"filetype:{self.filetype} {text}" if self.filetype else text,
            "gsrnamespace": 6,
            "gsrlimit": min(self.max_page_size, max(1, missing)),
            "prop": "imageinfo",
            "iiprop": "url|size|mime|extmetadata",
            "iiurlwidth": self.thumb_width,
            "iiextmetadatafilter": EXTMETADATA_FIELDS,
            "maxlag": 5,
            **params,
        }
        data, reason = json_object(*self._request(request, deadline))
        if reason is not None:
            return reason
        assert data is not None
        error = data.get("error")
        if isinstance(error, dict):
            return f"API error {error.get('code', '?')}: {str(error.get('info', ''))[:200]}"
        hits = self._page_hits(data)
        next_cont = data.get("continue")
        if not isinstance(next_cont, dict) or "gsroffset" not in next_cont:
            return Page(hits, None)
        offset = as_int(next_cont.get("gsroffset"))
        if offset is None or offset >= MAX_OFFSET:
            return Page(hits, None)
        return Page(hits, {str(key): str(value) for key, value in next_cont.items()})

    def _request(self, params: PageParams, deadline: float) -> tuple[HttpReply | None, str | None]:
        """One API call; a ``maxlag`` refusal is waited out (its Retry-After, bounded) up to twice."""
        for _ in range(MAXLAG_TRIES):
            reply, reason = self.http.request_json("GET", self.base_url, params=params, deadline=deadline)
            data = reply.data if reply is not None else None
            error = data.get("error") if isinstance(data, dict) else None
            if not (isinstance(error, dict) and error.get("code") == "maxlag"):
                return reply, reason
            assert reply is not None
            wait = parse_retry_after(reply.headers.get("retry-after")) or 5.0
            if wait > self.http.config.max_retry_after_s or self.clock() + wait >= deadline:
                return reply, reason
            self.http.sleep(wait)
        return reply, reason

    def _page_hits(self, data: dict[str, Any]) -> list[SearchHit]:
        """The image hits of one answer, in search-rank (``index``) order."""
        query = data.get("query")
        pages = query.get("pages") if isinstance(query, dict) else None
        if isinstance(pages, dict):
            pages = list(pages.values())
        if not isinstance(pages, list):
            return []
        ordered = sorted(
            (page for page in pages if isinstance(page, dict)),
            key=lambda page: page.get("index") if isinstance(page.get("index"), int) else 1 << 30,
        )
        return [hit for page in ordered if (hit := self._hit(page)) is not None]

    def _hit(self, page: dict[str, Any]) -> SearchHit | None:
        info = page.get("imageinfo")
        if not isinstance(info, list) or not info or not isinstance(info[0], dict):
            return None
        info = info[0]
        url = http_url(info.get("url"))
        if url is None or info.get("mime") not in IMAGE_MIMES:
            return None
        meta = info.get("extmetadata") if isinstance(info.get("extmetadata"), dict) else {}
        title = str(page.get("title") or "")
        title = title.split(":", 1)[1] if title.startswith("File:") else title
        title = title.rsplit(".", 1)[0] if "." in title else title
        categories = _meta_value(meta, "Categories")
        return SearchHit(
            url=url,
            title=title,
            engine=self.name,
            id=str(page.get("pageid") or ""),
            thumbnail=info.get("thumburl") if isinstance(info.get("thumburl"), str) else None,
            license=licence_code(_meta_value(meta, "LicenseShortName")),
            source="wikimedia_commons",
            width=info.get("width") if isinstance(info.get("width"), int) else None,
            height=info.get("height") if isinstance(info.get("height"), int) else None,
            tags=tuple(cat for cat in categories.split("|") if cat) if categories else (),
        )


def _meta_value(meta: dict[str, Any], key: str) -> str:
    entry = meta.get(key)
    value = entry.get("value") if isinstance(entry, dict) else None
    return _TAG_RE.sub("", value).strip() if isinstance(value, str) else ""
