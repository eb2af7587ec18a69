"""Wikimedia Commons image search through the MediaWiki Action API.

One request per page: ``action=query&generator=search&gsrnamespace=6&gsrsearch=filetype:bitmap <q>
&prop=imageinfo&iiprop=url|size|mime|extmetadata&iiurlwidth=<px>``. Pages come back keyed by page id
(or as a list with ``formatversion=2``); their search rank is the ``index`` field. The next page's
parameters are in ``continue`` (``gsroffset``). Licence comes from ``extmetadata.LicenseShortName``.

Etiquette (Wikimedia API policy): a descriptive User-Agent with contact information (set
``IE_ENV_CONTACT`` to an e-mail or URL of yours), serial requests, ``maxlag=5``, and ``Retry-After``
honoured. The default limiter allows about one request per second.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from ie_env.search.base import SearchHit, SearchResult, rank_hits, validate_query
from ie_env.search.credentials import redact
from ie_env.search.http import (
    HttpConfig,
    HttpReply,
    JsonHttp,
    default_user_agent,
    describe_status,
    is_loopback_url,
)
from ie_env.search.ratelimit import Rate, RateLimiter, parse_retry_after, shared_limiter

LIVE_URL = "https://commons.wikimedia.org/w/api.php"
CONTACT_ENV = "IE_ENV_CONTACT"
MAX_PAGE_SIZE = 50
MAX_OFFSET = 10_000
DEFAULT_RATES = (Rate(3, 3.0, "1/s, burst 3"), Rate(200, 60.0, "200/min"))
IMAGE_MIMES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff"})
EXTMETADATA_FIELDS = "LicenseShortName|License|LicenseUrl|ImageDescription|Artist|Categories"
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


class WikimediaEngine:
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
        clock: monotonic seconds (injectable).
        sleep: sleeps seconds (injectable).
    """

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
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"WikimediaEngine: base_url must be an http(s) URL, got {base_url!r}")
        if not 16 <= thumb_width <= 4096:
            raise ValueError(f"WikimediaEngine: thumb_width must be in [16, 4096], got {thumb_width!r}")
        if not 1 <= max_page_size <= MAX_PAGE_SIZE:
            raise ValueError(
                f"WikimediaEngine: max_page_size must be in [1, {MAX_PAGE_SIZE}], got {max_page_size!r}"
            )
        if not re.fullmatch(r"[a-z|]*", filetype):
            raise ValueError(
                f"WikimediaEngine: filetype must be like 'bitmap' or 'bitmap|drawing', got {filetype!r}"
            )
        self.base_url = base_url
        self.name = name
        self.thumb_width = thumb_width
        self.filetype = filetype
        self.max_page_size = max_page_size
        local = is_loopback_url(base_url)
        source = os.environ if env is None else env
        contact = contact or source.get(CONTACT_ENV) or None
        config = http or HttpConfig()
        if http is None or http.user_agent == HttpConfig().user_agent:
            from dataclasses import replace

            config = replace(config, user_agent=default_user_agent(contact))
        if rates is None:
            rates = () if local else DEFAULT_RATES
        if clock is time.monotonic and sleep is time.sleep and rates:
            limiter = shared_limiter(f"wikimedia@{parts.hostname}", rates)
        else:
            limiter = RateLimiter(rates, clock=clock, sleep=sleep)
        self.http = JsonHttp(config, limiter=limiter, trust_env=not local, clock=clock, sleep=sleep)
        self.clock = clock

    def __repr__(self) -> str:
        return f"WikimediaEngine(base_url={self.base_url!r}, name={self.name!r})"

    def close(self) -> None:
        self.http.close()

    def search(self, query: str, n: int) -> SearchResult:
        """Return up to ``n`` image hits, best first, following ``continue``; errors as values."""
        text = validate_query(query, n, self.name)
        started = self.clock()
        deadline = started + self.http.config.total_timeout_s
        search_text = f"filetype:{self.filetype} {text}" if self.filetype else text
        cont: dict[str, str] = {}
        hits: list[SearchHit] = []
        note = None
        pages_done = 0
        while len({h.url for h in hits}) < n:
            params: dict[str, str | int] = {
                "action": "query",
                "format": "json",
                "formatversion": 2,
                "generator": "search",
                "gsrsearch": search_text,
                "gsrnamespace": 6,
                "gsrlimit": min(self.max_page_size, max(1, n - len(hits))),
                "prop": "imageinfo",
                "iiprop": "url|size|mime|extmetadata",
                "iiurlwidth": self.thumb_width,
                "iiextmetadatafilter": EXTMETADATA_FIELDS,
                "maxlag": 5,
                **cont,
            }
            reply, reason = self._request(params, deadline)
            if reply is not None and reply.status != 200:
                reply, reason = None, describe_status(reply)
            data = reply.data if reply is not None else None
            if reason is None and not isinstance(data, dict):
                reason = "unexpected response (not a JSON object)"
            if reason is None and isinstance(data.get("error"), dict):
                error = data["error"]
                reason = f"API error {error.get('code', '?')}: {str(error.get('info', ''))[:200]}"
            if reason is not None:
                if not hits:
                    return SearchResult(
                        engine=self.name,
                        query=text,
                        error=redact(f"{self.name}: {reason}"),
                        seconds=self.clock() - started,
                    )
                note = f"page {pages_done + 1} failed ({reason}); returned {len(hits)} hits"
                break
            pages_done += 1
            hits.extend(self._page_hits(data))
            next_cont = data.get("continue")
            if not isinstance(next_cont, dict) or "gsroffset" not in next_cont:
                break
            cont = {str(k): str(v) for k, v in next_cont.items()}
            offset = next_cont.get("gsroffset")
            if not isinstance(offset, int | str) or int(offset) >= MAX_OFFSET:
                break
        return SearchResult(
            engine=self.name, query=text, hits=rank_hits(hits, n), seconds=self.clock() - started, note=note
        )

    def _request(self, params: dict, deadline: float) -> tuple[HttpReply | None, str | None]:
        """One API call; a ``maxlag`` refusal is waited out (its Retry-After, bounded) up to twice."""
        for _ in range(3):
            reply, reason = self.http.request_json("GET", self.base_url, params=params, deadline=deadline)
            data = reply.data if reply is not None else None
            error = data.get("error") if isinstance(data, dict) else None
            if not (isinstance(error, dict) and error.get("code") == "maxlag"):
                return reply, reason
            wait = parse_retry_after(reply.headers.get("retry-after")) or 5.0
            if wait > self.http.config.max_retry_after_s or self.clock() + wait >= deadline:
                return reply, reason
            self.http.sleep(wait)
        return reply, reason

    def _page_hits(self, data: dict) -> list[SearchHit]:
        pages = (data.get("query") or {}).get("pages") if isinstance(data.get("query"), dict) else None
        if isinstance(pages, dict):
            pages = list(pages.values())
        if not isinstance(pages, list):
            return []
        ordered = sorted(
            (page for page in pages if isinstance(page, dict)),
            key=lambda page: page.get("index") if isinstance(page.get("index"), int) else 1 << 30,
        )
        hits = []
        for page in ordered:
            info = page.get("imageinfo")
            if not isinstance(info, list) or not info or not isinstance(info[0], dict):
                continue
            info = info[0]
            url = info.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                continue
            if info.get("mime") not in IMAGE_MIMES:
                continue
            meta = info.get("extmetadata") if isinstance(info.get("extmetadata"), dict) else {}
            title = str(page.get("title") or "")
            title = title.split(":", 1)[1] if title.startswith("File:") else title
            title = title.rsplit(".", 1)[0] if "." in title else title
            categories = _meta_value(meta, "Categories")
            hits.append(
                SearchHit(
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
            )
        return hits


def _meta_value(meta: dict, key: str) -> str:
    entry = meta.get(key)
    value = entry.get("value") if isinstance(entry, dict) else None
    return _TAG_RE.sub("", value).strip() if isinstance(value, str) else ""
