"""One HTTP GET and its body, read with a hard byte cap that holds after any Content-Encoding.

The client asks for ``identity`` or one known encoding (``Accept-Encoding: gzip, identity;q=0.5``
by default, see :func:`accept_encoding_header`) and never lets httpx decode: the body is read from
the raw stream (``aiter_raw``) and at most one gzip or deflate layer is undone here by
:class:`BoundedInflater`, whose every ``zlib`` call gets a ``max_length`` of the bytes still allowed.
So no read produces more than ``max_bytes``: a compressed body is refused as ``too_large`` once its
raw bytes or its decoded bytes pass the cap (a 1 KB gzip bomb costs at most ``max_bytes``), and an
answer with stacked encodings (``gzip, gzip``), an unknown one, or one not asked for is
``bad_encoding`` before a byte of its body is read.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import zlib
from dataclasses import dataclass

import httpx

from ie_env.download.config import DownloadConfig
from ie_env.download.netguard import BlockedAddressError, ParsedURL
from ie_env.download.politeness import ROBOTS_MAX_BYTES, x_robots_opt_out

RETRY_STATUS_CODES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUS_CODES = frozenset({301, 302, 303, 307, 308})
ACCEPT = "image/webp,image/png,image/jpeg,image/gif,image/bmp;q=0.9,image/*;q=0.5"
_NON_IMAGE_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/xhtml",
    "application/javascript",
)
_ALIASES = {"x-gzip": "gzip"}


@dataclass
class Fetched:
    """The result of one request (or of a redirect chain): a status, and the body when ``ok``."""

    status: str
    error: str | None = None
    body: bytes | None = None
    final_url: str | None = None
    http_status: int | None = None
    redirect: bytes | None = None
    retry_after: float | None = None


class BodyTooLarge(Exception):
    """The decoded body passed its byte cap."""


def accept_encoding_header(encoding: str) -> str:
    """Return the ``Accept-Encoding`` value that asks for ``encoding`` (or only ``identity``)."""
    return "identity" if encoding == "identity" else f"{encoding}, identity;q=0.5"


def content_coding(response: httpx.Response, asked: str) -> tuple[str | None, str | None]:
    """Return ``(coding, None)`` for a body this client can undo, or ``(None, reason)`` to refuse it.

    ``coding`` is None for an unencoded body, else ``gzip`` or ``deflate`` (the one asked for).
    """
    codings = [
        token.strip().lower()
        for value in response.headers.get_list("content-encoding")
        for token in value.split(",")
        if token.strip() and token.strip().lower() != "identity"
    ]
    if not codings:
        return None, None
    shown = ", ".join(codings)[:100]
    if len(codings) > 1:
        return None, f"stacked Content-Encoding {shown!r} (one layer at most)"
    coding = _ALIASES.get(codings[0], codings[0])
    if coding not in ("gzip", "deflate"):
        return None, f"unknown Content-Encoding {shown!r}"
    if coding != asked:
        return None, f"Content-Encoding {shown!r} was not asked for (Accept-Encoding: {asked})"
    return coding, None


class BoundedInflater:
    """Undoes one gzip (any number of members) or deflate (zlib or raw) layer within ``limit`` bytes.

    Every ``zlib`` call is given ``max_length`` = the bytes still allowed + 1, so the output of one
    :meth:`feed` is never more than ``limit + 1`` bytes; :class:`BodyTooLarge` is raised as soon as
    the total passes ``limit``.
    """

    def __init__(self, coding: str, limit: int) -> None:
        self.coding = coding
        self.limit = limit
        self.total = 0
        self._first = True
        self._inflater = self._new()

    def _new(self, wbits: int | None = None) -> zlib._Decompress:
        if wbits is None:
            wbits = 16 + zlib.MAX_WBITS if self.coding == "gzip" else zlib.MAX_WBITS
        return zlib.decompressobj(wbits)

    def _decompress(self, data: bytes) -> bytes:
        room = self.limit - self.total + 1
        if self._first and self.coding == "deflate":
            self._first = False
            try:  # HTTP "deflate" should be zlib-wrapped; some servers send raw deflate
                return self._inflater.decompress(data, room)
            except zlib.error:
                self._inflater = self._new(-zlib.MAX_WBITS)
        return self._inflater.decompress(data, room)

    def feed(self, data: bytes) -> list[bytes]:
        """Return the decoded pieces of ``data``; raises :class:`BodyTooLarge` or ``zlib.error``."""
        pieces: list[bytes] = []
        while data:
            if self._inflater.eof:
                if self.coding != "gzip":
                    break  # bytes after the end of a deflate stream are ignored
                self._inflater = self._new()  # the next gzip member
            piece = self._decompress(data)
            self._count(piece, pieces)
            data = self._inflater.unconsumed_tail or (
                self._inflater.unused_data if self._inflater.eof else b""
            )
        return pieces

    def finish(self) -> list[bytes]:
        """Return what the decompressor still holds (bounded like :meth:`feed`)."""
        pieces: list[bytes] = []
        if not self._inflater.eof:
            self._count(self._inflater.flush(), pieces)
        return pieces

    def _count(self, piece: bytes, pieces: list[bytes]) -> None:
        self.total += len(piece)
        if self.total > self.limit:
            raise BodyTooLarge(f"body exceeds max_bytes {self.limit} after {self.coding} decoding")
        if piece:
            pieces.append(piece)


async def read_body(response: httpx.Response, limit: int, coding: str | None, *, truncate: bool) -> bytes:
    """Read the body of ``response`` with at most ``limit`` bytes raw and decoded.

    Raises:
        BodyTooLarge: the body passed ``limit`` and ``truncate`` is false (else it is cut there).
        zlib.error: the encoded body is corrupt.
    """
    inflater = BoundedInflater(coding, limit) if coding else None
    chunks: list[bytes] = []
    raw = received = 0
    try:
        async for chunk in response.aiter_raw():
            raw += len(chunk)
            if raw > limit:
                raise BodyTooLarge(f"body exceeds max_bytes {limit}")
            for piece in inflater.feed(chunk) if inflater else [chunk]:
                received += len(piece)
                if received > limit:
                    raise BodyTooLarge(f"body exceeds max_bytes {limit}")
                chunks.append(piece)
        if inflater is not None:
            chunks.extend(inflater.finish())
    except BodyTooLarge:
        if not truncate:
            raise
        body = b"".join(chunks)
        return body[:limit]
    return b"".join(chunks)


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` value (seconds or an HTTP date) into seconds from now, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def raw_header(response: httpx.Response, name: bytes) -> bytes | None:
    """Return the first raw (undecoded) value of header ``name``, or None."""
    for key, value in response.headers.raw:
        if key.lower() == name:
            return value
    return None


def refused_by_headers(response: httpx.Response, cfg: DownloadConfig) -> Fetched | None:
    """Return the failure for an opted-out or non-image answer, or None to read the body."""
    if cfg.respect_x_robots_tag:
        directive = x_robots_opt_out(
            response.headers.get_list("x-robots-tag"), cfg.robots_token, cfg.opt_out_directives
        )
        if directive is not None:
            return Fetched("opted_out", f"X-Robots-Tag: {directive}")
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype.startswith(_NON_IMAGE_TYPES):
        return Fetched("not_image", f"Content-Type {ctype}")
    return None


def _early_answer(response: httpx.Response, url: str, robots: bool, cfg: DownloadConfig) -> Fetched | None:
    """The outcome decided by the status line and headers alone (redirect, error, refusal), or None."""
    code = response.status_code
    if code in REDIRECT_STATUS_CODES:
        location = raw_header(response, b"location")
        if location is None:
            return Fetched("http_error", f"HTTP {code} without Location", final_url=url, http_status=code)
        return Fetched("redirect", redirect=location, final_url=url, http_status=code)
    if code in RETRY_STATUS_CODES and not robots:
        retry = retry_after_seconds(response.headers.get("retry-after"))
        return Fetched(
            "http_error",
            f"HTTP {code}",
            final_url=url,
            http_status=code,
            retry_after=-1.0 if retry is None else retry,
        )
    if not 200 <= code < 300:
        return Fetched("http_error", f"HTTP {code}", final_url=url, http_status=code)
    refused = None if robots else refused_by_headers(response, cfg)
    if refused is None:
        _, reason = content_coding(response, cfg.accept_encoding)
        refused = None if reason is None else Fetched("bad_encoding", reason)
    if refused is None and not robots:
        length = response.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > cfg.max_bytes:
            refused = Fetched("too_large", f"Content-Length {int(length)} > max_bytes {cfg.max_bytes}")
    if refused is not None:
        refused.final_url, refused.http_status = url, code
    return refused


async def get(client: httpx.AsyncClient, hop: ParsedURL, cfg: DownloadConfig, *, robots: bool) -> Fetched:
    """One GET of ``hop`` (no redirect following); never raises for network or server faults.

    Args:
        client: the session's client (it connects through the address guard).
        hop: the checked URL.
        cfg: timeouts, caps and politeness settings.
        robots: this is a robots.txt fetch: its body is cut at ``ROBOTS_MAX_BYTES``, not refused.
    """
    url = str(hop.url)
    limit = ROBOTS_MAX_BYTES if robots else cfg.max_bytes
    try:
        async with asyncio.timeout(cfg.total_timeout), client.stream("GET", hop.url) as response:
            early = _early_answer(response, url, robots, cfg)
            if early is not None:
                return early
            code = response.status_code
            coding, _ = content_coding(response, cfg.accept_encoding)
            try:
                body = await read_body(response, limit, coding, truncate=robots)
            except BodyTooLarge as exc:
                return Fetched("too_large", str(exc), final_url=url, http_status=code)
            except zlib.error as exc:
                return Fetched(
                    "bad_encoding", f"corrupt {coding} body: {exc}"[:200], final_url=url, http_status=code
                )
            return Fetched("ok", body=body, final_url=url, http_status=code)
    except TimeoutError:
        return Fetched("timeout", f"no complete answer within {cfg.total_timeout}s", final_url=url)
    except httpx.TimeoutException as exc:
        return Fetched("timeout", f"{type(exc).__name__}", final_url=url)
    except BlockedAddressError as exc:
        return Fetched("blocked_address", str(exc), final_url=url)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        return Fetched("invalid_url", str(exc)[:200], final_url=url)
    except (httpx.HTTPError, OSError) as exc:
        return Fetched("network_error", f"{type(exc).__name__}: {exc}"[:200], final_url=url)
