"""The downloader: URLs in, small RGB training images out; fast, polite, safe, never raises.

>>> from ie_env.download import Downloader, DownloadConfig
>>> with Downloader(DownloadConfig(allowed_hosts=("127.0.0.1:8000",))) as downloader:
...     batch = downloader.fetch(hits)            # list of URLs or of objects with a ``.url``
...     batch.counts                              # {"ok": 93, "duplicate": 4, "http_error": 3}
...     images = batch.images()                   # uint8 (n, 64, 64, 3), the ``ok`` ones in input order

How one URL is handled (every hop of a redirect chain repeats steps 1-3):

1. the URL is checked (http/https, length, UTF-8, no credentials) and its host resolved; loopback,
   private, link-local and metadata addresses are refused unless the host is on
   ``allowed_hosts`` (:mod:`ie_env.download.netguard`), before any connection is made;
2. robots.txt of the origin is fetched once and honoured (:mod:`ie_env.download.politeness`);
3. one GET with an identifying User-Agent, under a global and a per-host concurrency cap, with
   connect/read/total timeouts (:mod:`ie_env.download.transfer`); ``X-Robots-Tag: noai`` and friends
   opt an image out; the body is capped at ``max_bytes`` (Content-Length, the raw bytes streamed and
   the bytes after undoing at most one gzip/deflate layer); 429 and 5xx are retried with backoff,
   honouring ``Retry-After`` for the whole host;
4. exact duplicates (sha256 of the bytes) are dropped before decoding;
5. decode + resize + perceptual hash run in worker processes (:mod:`ie_env.download.decodepool`), in
   adaptive batches, with a byte budget so memory stays bounded however fast the network is;
6. near-duplicates (Hamming distance of the 64-bit phash, :mod:`ie_env.download.dedup`) are dropped,
   in input order, within the batch and against an optional ``known`` index (the
   :class:`~ie_env.download.store.ImageStore`).

Every outcome is a :class:`~ie_env.download.results.Download` whose ``status`` is one of
:data:`~ie_env.download.config.STATUSES`.

Memory is bounded for any input, and each term is enforced where it arises:

- bodies being received: at most ``concurrency`` requests, each holding at most ``max_bytes`` of
  body (plus one copy while it is joined): the transfer refuses a body once its raw or decoded
  bytes pass ``max_bytes`` and gives zlib a ``max_length`` so no single read overshoots;
- bodies waiting for a decoder: ``max_pending_bytes`` (fetching pauses until they are decoded);
- each decode (in a worker, or in this process when ``processes=0``): at most
  ``DECODE_MEMORY_FACTOR x max_pixels`` bytes beyond its input, see :mod:`ie_env.download.decode`;
- the returned images: ``image_size`` squared x 3 bytes each.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import replace

import httpx

from ie_env.download.batch import BatchState, finalise
from ie_env.download.config import DownloadConfig
from ie_env.download.dedup import DedupIndex
from ie_env.download.loopthread import LoopThread
from ie_env.download.netguard import (
    AddressPolicy,
    BlockedAddressError,
    ParsedURL,
    Resolver,
    parse_url,
)
from ie_env.download.politeness import RobotsRules, rules_from_response
from ie_env.download.results import Download, DownloadBatch
from ie_env.download.session import Session
from ie_env.download.transfer import Fetched, get

log = logging.getLogger(__name__)


def _url_of(item: object) -> object:
    return item if isinstance(item, str | bytes | bytearray) else getattr(item, "url", item)


def _display(raw: object) -> str:
    return raw if isinstance(raw, str) else repr(raw)


class Downloader:
    """Downloads images politely and safely; see the module docstring.

    Use it as a context manager, or call :meth:`close`. The synchronous :meth:`fetch` runs on a
    private event loop in a background thread, so it works from plain code (``env.step``) and
    from inside a running loop alike; repeated calls reuse the loop, HTTP connections and worker
    processes. From async code use ``async with Downloader(...)`` and :meth:`fetch_async`; one
    downloader serves one event loop. Decode workers start with multiprocessing's forkserver, so
    scripts need the usual ``if __name__ == "__main__":`` guard.

    Memory is bounded as the module docstring says (bodies, pending bodies, decodes, results).

    Args:
        config: settings; defaults to ``DownloadConfig()``.
        resolver: async ``(host, port) -> [address, ...]`` used instead of the system resolver
            (tests use it to make names resolve to forbidden addresses).
    """

    def __init__(self, config: DownloadConfig | None = None, *, resolver: Resolver | None = None) -> None:
        self.config = config or DownloadConfig()
        self.policy = AddressPolicy(self.config.allowed_hosts, resolver=resolver)
        self._session_obj: Session | None = None
        self._loop_thread: LoopThread | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close HTTP connections, stop the private loop and the worker processes. Idempotent."""
        if self._loop_thread is not None:
            self._loop_thread.run(self._close_session())
            self._loop_thread.stop()
            self._loop_thread = None
        elif (
            self._session_obj is not None
            and not self._session_obj.loop.is_closed()
            and not self._session_obj.loop.is_running()
        ):
            self._session_obj.loop.run_until_complete(self._close_session())
        self._session_obj = None
        self._closed = True

    async def aclose(self) -> None:
        """Async counterpart of :meth:`close` for :meth:`fetch_async` users."""
        await self._close_session()
        self._closed = True

    async def _close_session(self) -> None:
        if self._session_obj is not None:
            session, self._session_obj = self._session_obj, None
            await session.client.aclose()
            await session.decoder.aclose()

    def _session(self) -> Session:
        loop = asyncio.get_running_loop()
        if self._session_obj is None:
            self._session_obj = Session(self)
        elif self._session_obj.loop is not loop:
            raise RuntimeError("this Downloader is bound to another event loop; use one Downloader per loop")
        return self._session_obj

    # -- public API --------------------------------------------------------------------------

    def fetch(self, items: Iterable[object], known: DedupIndex | None = None) -> DownloadBatch:
        """Download ``items`` (URLs or objects with ``.url``); blocks; never raises for bad input.

        Args:
            items: URL strings, or objects with a ``url`` attribute (e.g. ``SearchHit``).
            known: already-stored images (e.g. an ``ImageStore``): their URLs are not fetched again
                and their content counts as duplicate.
        """
        if self._closed:
            raise RuntimeError("Downloader is closed")
        if self._loop_thread is None:
            self._loop_thread = LoopThread()
        return self._loop_thread.run(self.fetch_async(list(items), known))

    async def fetch_async(self, items: Iterable[object], known: DedupIndex | None = None) -> DownloadBatch:
        """Async :meth:`fetch`; run it on the loop this downloader is bound to."""
        if self._closed:
            raise RuntimeError("Downloader is closed")
        started = time.perf_counter()
        session = self._session()
        cfg = self.config
        raws = [_url_of(item) for item in items]
        state = BatchState(known=known if cfg.dedup else None, results=[None] * len(raws))
        queues: dict[str, deque[tuple[int, ParsedURL]]] = {}
        first_index: dict[str, int] = {}
        for i, raw in enumerate(raws):
            parsed, error = parse_url(raw, cfg.max_url_length)
            if parsed is None:
                state.results[i] = Download(_display(raw), "invalid_url", error)
                continue
            key = str(parsed.url)
            if cfg.dedup and key in first_index:
                state.results[i] = Download(
                    _display(raw), "duplicate", f"same URL as item {first_index[key]}"
                )
                continue
            first_index[key] = i
            if state.known is not None and (state.known.has_url(key) or state.known.has_url(_display(raw))):
                state.results[i] = Download(_display(raw), "duplicate", "URL already in the store")
                continue
            queues.setdefault(parsed.host, deque()).append((i, parsed))
        workers = [
            asyncio.create_task(self._host_worker(session, queue, raws, state))
            for queue in queues.values()
            for _ in range(min(cfg.per_host, len(queue)))
        ]
        try:
            await asyncio.gather(*workers)
            await asyncio.gather(*state.decode_tasks)
        finally:
            for task in [*workers, *state.decode_tasks]:
                task.cancel()
        downloads = finalise([_display(raw) for raw in raws], state, self.config)
        counts = dict(Counter(d.status for d in downloads))
        return DownloadBatch(downloads, counts, time.perf_counter() - started)

    # -- per URL -----------------------------------------------------------------------------

    async def _host_worker(
        self, s: Session, queue: deque[tuple[int, ParsedURL]], raws: list[object], state: BatchState
    ) -> None:
        while queue:
            index, parsed = queue.popleft()
            url = _display(raws[index])
            try:
                fetched = await self._fetch_with_retries(s, parsed)
                if fetched.status != "ok" or fetched.body is None:
                    state.results[index] = Download(
                        url,
                        fetched.status,
                        fetched.error,
                        final_url=fetched.final_url,
                        http_status=fetched.http_status,
                    )
                    continue
                body = fetched.body
                sha = hashlib.sha256(body).hexdigest()
                if self.config.dedup:
                    if sha in state.first_by_sha:
                        state.sha_dups.append((index, sha, replace(fetched, body=None)))
                        continue
                    if state.known is not None and state.known.has_sha256(sha):
                        state.results[index] = Download(
                            url,
                            "duplicate",
                            "same bytes as a stored image",
                            sha256=sha,
                            final_url=fetched.final_url,
                            http_status=fetched.http_status,
                            nbytes=len(body),
                        )
                        continue
                    state.first_by_sha[sha] = index
                await s.decoder.reserve(len(body))
                task = asyncio.create_task(self._decode_into(s, state, index, url, fetched, sha))
                state.decode_tasks.append(task)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug, not bad input: keep the batch going
                log.exception("downloader internal error for %s", url)
                state.results[index] = Download(url, "internal_error", f"{type(exc).__name__}: {exc}")

    async def _decode_into(
        self, s: Session, state: BatchState, index: int, url: str, fetched: Fetched, sha: str
    ) -> None:
        body = fetched.body or b""
        try:
            decoded = await s.decoder.decode(body)
        finally:
            await s.decoder.release(len(body))
        state.results[index] = Download(
            url,
            decoded.status,
            decoded.error,
            sha,
            decoded.phash,
            decoded.width,
            decoded.height,
            decoded.image,
            fetched.final_url,
            fetched.http_status,
            decoded.format,
            len(body),
        )

    async def _fetch_with_retries(self, s: Session, parsed: ParsedURL) -> Fetched:
        cfg = self.config
        attempt = 0
        while True:
            fetched = await self._fetch_chain(s, parsed)
            if fetched.retry_after is None:
                return fetched
            delay = fetched.retry_after if fetched.retry_after >= 0 else cfg.backoff * 2**attempt
            if attempt >= cfg.retries:
                fetched.error = f"{fetched.error} after {attempt + 1} attempts"
                return fetched
            if delay > cfg.max_retry_after:
                fetched.error = f"{fetched.error}; Retry-After {delay:.0f}s exceeds max_retry_after"
                return fetched
            # Back off the whole host, not just this URL.
            host = httpx.URL(fetched.final_url or str(parsed.url)).host
            s.not_before[host] = max(s.not_before.get(host, 0.0), s.loop.time() + delay)
            attempt += 1

    async def _wait_for_host(self, s: Session, host: str) -> None:
        while (delay := s.not_before.get(host, 0.0) - s.loop.time()) > 0:
            await asyncio.sleep(delay)

    async def _check_hop(self, s: Session, hop: ParsedURL) -> Fetched | None:
        """Address guard and robots.txt for one hop; a failure value, or None to go ahead."""
        try:
            await self.policy.addresses(hop.host, hop.port)
        except BlockedAddressError as exc:
            return Fetched("blocked_address", str(exc), final_url=str(hop.url))
        except OSError as exc:
            return Fetched("network_error", f"cannot resolve {hop.host}: {exc}", final_url=str(hop.url))
        if self.config.respect_robots:
            rules = await self._robots(s, hop)
            if not rules.can_fetch(self.config.robots_token, str(hop.url)):
                return Fetched("blocked_by_robots", rules.reason or "disallowed", final_url=str(hop.url))
        return None

    async def _fetch_chain(self, s: Session, parsed: ParsedURL, *, robots: bool = False) -> Fetched:
        """One attempt: follow redirects ourselves, checking every hop before connecting."""
        cfg = self.config
        hop = parsed
        for n_redirects in range(cfg.max_redirects + 1):
            if robots:
                try:
                    await self.policy.addresses(hop.host, hop.port)
                except BlockedAddressError as exc:
                    return Fetched("blocked_address", str(exc), final_url=str(hop.url))
                except OSError as exc:
                    return Fetched("network_error", f"cannot resolve {hop.host}: {exc}")
            else:
                refused = await self._check_hop(s, hop)
                if refused is not None:
                    return refused
            await self._wait_for_host(s, hop.host)
            async with s.host_sem(hop.host, cfg.per_host), s.global_sem:
                fetched = await get(s.client, hop, cfg, robots=robots)
            if fetched.redirect is None:
                return fetched
            if n_redirects == cfg.max_redirects:
                return Fetched(
                    "too_many_redirects",
                    f"more than {cfg.max_redirects} redirects",
                    final_url=str(hop.url),
                    http_status=fetched.http_status,
                )
            try:
                location = fetched.redirect.decode("utf-8")
            except UnicodeDecodeError:
                return Fetched("invalid_url", "redirect Location is not valid UTF-8", final_url=str(hop.url))
            try:
                target = str(hop.url.join(location))
            except Exception as exc:
                return Fetched("invalid_url", f"bad redirect Location {location[:100]!r}: {exc}")
            nxt, error = parse_url(target, cfg.max_url_length)
            if nxt is None:
                return Fetched(
                    "invalid_url", f"redirect to {target[:100]!r}: {error}", final_url=str(hop.url)
                )
            hop = nxt
        raise AssertionError("unreachable")

    async def _robots(self, s: Session, hop: ParsedURL) -> RobotsRules:
        origin = f"{hop.url.scheme}://{hop.host}:{hop.port}"
        cached = s.robots.get(origin)
        if cached is not None and cached[0] > s.loop.time():
            return cached[1]
        lock = s.robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:
            cached = s.robots.get(origin)
            if cached is not None and cached[0] > s.loop.time():
                return cached[1]
            robots_url, _ = parse_url(str(hop.url.copy_with(path="/robots.txt", query=None, fragment=None)))
            assert robots_url is not None
            fetched = await self._fetch_chain(s, robots_url, robots=True)
            if fetched.status == "ok":
                rules = rules_from_response(fetched.http_status, fetched.body)
            elif fetched.status == "http_error" and fetched.http_status is not None:
                rules = rules_from_response(fetched.http_status, None)
            else:
                rules = rules_from_response(None, None, f"{fetched.status}: {fetched.error}")
            # Unreachable robots.txt is retried sooner than a good one is refreshed.
            ttl = 3600.0 if not rules.disallow_all or fetched.http_status else 60.0
            s.robots[origin] = (s.loop.time() + ttl, rules)
            return rules
