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
   connect/read/total timeouts; ``X-Robots-Tag: noai`` and friends opt an image out; the body is
   capped at ``max_bytes`` (Content-Length and the bytes actually streamed); 429 and 5xx are
   retried with backoff, honouring ``Retry-After`` for the whole host;
4. exact duplicates (sha256 of the bytes) are dropped before decoding;
5. decode + resize + perceptual hash run in worker processes (:mod:`ie_env.download.decodepool`), in
   adaptive batches, with a byte budget so memory stays bounded however fast the network is;
6. near-duplicates (Hamming distance of the 64-bit phash) are dropped, in input order, within the
   batch and against an optional ``known`` index (the :class:`~ie_env.download.store.ImageStore`).

Every outcome is a :class:`Download` value whose ``status`` is one of :data:`STATUSES`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import hashlib
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import httpx
import numpy as np

from ie_env.download.decode import DEFAULT_FORMATS, RESIZE_MODES, Decoded, DecodeSpec, decode_batch, hamming
from ie_env.download.decodepool import DecodePool
from ie_env.download.netguard import (
    AddressPolicy,
    BlockedAddressError,
    GuardedTransport,
    ParsedURL,
    Resolver,
    parse_url,
)
from ie_env.download.politeness import (
    DEFAULT_USER_AGENT,
    OPT_OUT_DIRECTIVES,
    ROBOTS_MAX_BYTES,
    ROBOTS_TOKEN,
    RobotsRules,
    rules_from_response,
    x_robots_opt_out,
)

log = logging.getLogger(__name__)

STATUSES = (
    "ok",
    "duplicate",
    "http_error",
    "timeout",
    "network_error",
    "too_large",
    "not_image",
    "decode_error",
    "too_small",
    "blocked_by_robots",
    "opted_out",
    "blocked_address",
    "invalid_url",
    "too_many_redirects",
    "internal_error",
)
RETRY_STATUS_CODES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUS_CODES = frozenset({301, 302, 303, 307, 308})
_NON_IMAGE_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/xhtml",
    "application/javascript",
)
_ACCEPT = "image/webp,image/png,image/jpeg,image/gif,image/bmp;q=0.9,image/*;q=0.5"

T = TypeVar("T")


@dataclass(frozen=True)
class DownloadConfig:
    """Downloader settings (validated; errors name the bad value).

    Attributes:
        image_size: output size in pixels (see ``resize_mode``).
        resize_mode: ``center_crop`` (square ``image_size``, like img2dataset's ``center_crop``),
            ``keep_ratio`` (short side ``image_size``) or ``border`` (long side, padded white).
        min_size: images whose short side is smaller are ``too_small``.
        max_bytes: body cap per image (Content-Length and streamed bytes).
        max_pixels: pixel cap per image, checked from the header before decoding.
        connect_timeout, read_timeout: seconds, per connection attempt / per read.
        total_timeout: seconds for one request from send to the last body byte.
        concurrency: requests in flight at once, all hosts together.
        per_host: requests in flight at once to one host.
        retries: extra attempts after a 429 or 5xx answer (no retry for anything else).
        backoff: first retry delay in seconds when there is no ``Retry-After``; doubles each time.
        max_retry_after: a ``Retry-After`` longer than this gives up instead of waiting.
        max_redirects: redirects followed per URL (each hop is checked like the first URL).
        user_agent: the User-Agent header; ``robots_token`` is the name robots rules are matched by.
        respect_robots: fetch and honour robots.txt per origin.
        respect_x_robots_tag: drop images whose response opts out with ``opt_out_directives``.
        allowed_hosts: ``host`` or ``host:port`` that may resolve to loopback/private addresses
            (the offline web); nothing else may.
        dedup: drop exact (sha256) and near (phash) duplicates within a batch and vs ``known``.
        phash_threshold: Hamming distance (of 64 bits) at or below which images are near-duplicates.
        processes: decode worker processes; ``None`` = one per CPU (at most 4); 0 = a thread.
        decode_batch: most images sent to a worker in one round trip.
        max_pending_bytes: bytes of fetched bodies waiting to be decoded before fetching pauses.
        max_url_length: longer URLs are ``invalid_url``.
        formats: image formats Pillow may open.
        verify_tls: verify HTTPS certificates.
    """

    image_size: int = 64
    resize_mode: str = "center_crop"
    min_size: int = 16
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 32 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    concurrency: int = 32
    per_host: int = 8
    retries: int = 2
    backoff: float = 0.5
    max_retry_after: float = 30.0
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    robots_token: str = ROBOTS_TOKEN
    respect_robots: bool = True
    respect_x_robots_tag: bool = True
    opt_out_directives: tuple[str, ...] = OPT_OUT_DIRECTIVES
    allowed_hosts: tuple[str, ...] = ()
    dedup: bool = True
    phash_threshold: int = 4
    processes: int | None = None
    decode_batch: int = 8
    max_pending_bytes: int = 64 * 1024 * 1024
    max_url_length: int = 2048
    formats: tuple[str, ...] = DEFAULT_FORMATS
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.allowed_hosts, str):
            raise ValueError(
                f"allowed_hosts must be a tuple of strings, got the string {self.allowed_hosts!r}"
            )
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        object.__setattr__(self, "opt_out_directives", tuple(self.opt_out_directives))
        object.__setattr__(self, "formats", tuple(self.formats))
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        positive = {
            "image_size": self.image_size,
            "min_size": self.min_size,
            "max_bytes": self.max_bytes,
            "max_pixels": self.max_pixels,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "total_timeout": self.total_timeout,
            "concurrency": self.concurrency,
            "per_host": self.per_host,
            "decode_batch": self.decode_batch,
            "max_pending_bytes": self.max_pending_bytes,
            "max_url_length": self.max_url_length,
        }
        for name, value in positive.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("retries", "max_redirects", "backoff", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if self.per_host > self.concurrency:
            raise ValueError(
                f"per_host ({self.per_host!r}) must not exceed concurrency ({self.concurrency!r})"
            )
        if not 0 <= self.phash_threshold <= 64:
            raise ValueError(f"phash_threshold must be in [0, 64], got {self.phash_threshold!r}")
        if self.processes is not None and (not isinstance(self.processes, int) or self.processes < 0):
            raise ValueError(f"processes must be None or an int >= 0, got {self.processes!r}")
        if not self.user_agent.strip() or not self.robots_token.strip():
            raise ValueError(f"user_agent and robots_token must be non-empty, got {self.user_agent!r}")
        self.decode_spec()  # validates image_size, formats, ...
        from ie_env.download.netguard import normalise_allowed

        normalise_allowed(self.allowed_hosts)

    def decode_spec(self) -> DecodeSpec:
        return DecodeSpec(self.image_size, self.resize_mode, self.min_size, self.max_pixels, self.formats)

    def worker_count(self) -> int:
        if self.processes is not None:
            return self.processes
        return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True, eq=False)
class Download:
    """The outcome for one URL.

    Attributes:
        url: the URL as given (``repr`` of it when it was not a string).
        status: one of :data:`STATUSES`.
        error: why, when ``status`` is not ``ok``.
        sha256: hex sha256 of the downloaded bytes (when something was downloaded).
        phash: 64-bit perceptual hash as an unsigned int (when decoded).
        width, height: the original image size.
        image: uint8 array (H, W, 3), RGB, resized; only for ``ok``.
        final_url: the URL the bytes came from after redirects.
        http_status: the last HTTP status code seen.
        format: the decoded format (``PNG``, ``JPEG``, ...).
        nbytes: size of the downloaded body.
    """

    url: str
    status: str
    error: str | None = None
    sha256: str | None = None
    phash: int | None = None
    width: int | None = None
    height: int | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    final_url: str | None = None
    http_status: int | None = None
    format: str | None = None
    nbytes: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def phash_hex(self) -> str | None:
        return None if self.phash is None else f"{self.phash:016x}"


@dataclass
class DownloadBatch:
    """All outcomes of one :meth:`Downloader.fetch`, in input order, and counts per status."""

    downloads: list[Download]
    counts: dict[str, int]
    seconds: float = 0.0

    @property
    def ok(self) -> list[Download]:
        return [d for d in self.downloads if d.ok]

    def images(self) -> np.ndarray:
        """The ``ok`` images stacked as uint8 (n, H, W, 3) (needs a square ``resize_mode``)."""
        ok = self.ok
        if not ok:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8)
        return np.stack([d.image for d in ok])


class DedupIndex(Protocol):
    """What the downloader asks of already-stored images (the ImageStore implements it)."""

    def has_url(self, url: str) -> bool: ...

    def has_sha256(self, sha256: str) -> bool: ...

    def near_duplicate(self, phash: int) -> Any: ...


# ---------------------------------------------------------------------------------------------
# internals


@dataclass
class _Fetched:
    status: str
    error: str | None = None
    body: bytes | None = None
    final_url: str | None = None
    http_status: int | None = None
    redirect: bytes | None = None
    retry_after: float | None = None


def _retry_after_seconds(value: str | None) -> float | None:
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


def _url_of(item: object) -> object:
    return item if isinstance(item, str | bytes | bytearray) else getattr(item, "url", item)


def _display(raw: object) -> str:
    return raw if isinstance(raw, str) else repr(raw)


class _BatchDecoder:
    """Sends bodies to the decode workers in adaptive batches, with a byte budget for back-pressure.

    While fewer than two batches per worker are in flight, a body is sent at once; when the
    workers are busy, bodies accumulate into batches of up to ``batch_size``.
    """

    def __init__(self, config: DownloadConfig) -> None:
        self._spec = config.decode_spec()
        self._batch_size = config.decode_batch
        self._budget = config.max_pending_bytes
        workers = config.worker_count()
        self.pool: DecodePool | None = DecodePool(workers, self._spec) if workers > 0 else None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        if self.pool is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ie-env-decode")
        self._max_inflight = 2 * max(1, workers)
        self._inflight = 0
        self._pending_bytes = 0
        self._pending_items = 0
        self._buf: list[tuple[bytes, asyncio.Future[Decoded]]] = []
        self._cond = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    async def reserve(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more may wait for decoding (always admits one body)."""
        async with self._cond:
            await self._cond.wait_for(
                lambda: self._pending_items == 0 or self._pending_bytes + nbytes <= self._budget
            )
            self._pending_bytes += nbytes
            self._pending_items += 1

    async def release(self, nbytes: int) -> None:
        async with self._cond:
            self._pending_bytes -= nbytes
            self._pending_items -= 1
            self._cond.notify_all()

    async def decode(self, data: bytes) -> Decoded:
        future: asyncio.Future[Decoded] = asyncio.get_running_loop().create_future()
        self._buf.append((data, future))
        self._flush()
        return await future

    def _flush(self) -> None:
        while self._buf and self._inflight < self._max_inflight:
            batch, self._buf = self._buf[: self._batch_size], self._buf[self._batch_size :]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[bytes, asyncio.Future[Decoded]]]) -> None:
        items = [data for data, _ in batch]
        try:
            if self.pool is not None:
                results = await self.pool.decode(items)
            else:
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(self._thread, decode_batch, items, self._spec)
        except Exception as exc:
            results = [Decoded("decode_error", f"decoder failed: {type(exc).__name__}: {exc}")] * len(items)
        finally:
            self._inflight -= 1
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        self._flush()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.pool is not None:
            await self.pool.aclose()
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)


class _Session:
    """Per-event-loop state: the HTTP client, semaphores, robots cache and decoder."""

    def __init__(self, downloader: Downloader) -> None:
        cfg = downloader.config
        self.loop = asyncio.get_running_loop()
        limits = httpx.Limits(
            max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency, keepalive_expiry=30.0
        )
        timeout = httpx.Timeout(
            connect=cfg.connect_timeout, read=cfg.read_timeout, write=cfg.read_timeout, pool=cfg.total_timeout
        )
        self.client = httpx.AsyncClient(
            transport=GuardedTransport(downloader.policy, limits, verify=cfg.verify_tls),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": cfg.user_agent, "Accept": _ACCEPT},
        )
        self.global_sem = asyncio.Semaphore(cfg.concurrency)
        self.host_sems: dict[str, asyncio.Semaphore] = {}
        self.not_before: dict[str, float] = {}
        self.robots: dict[str, tuple[float, RobotsRules]] = {}
        self.robots_locks: dict[str, asyncio.Lock] = {}
        self.decoder = _BatchDecoder(cfg)

    def host_sem(self, host: str, size: int) -> asyncio.Semaphore:
        sem = self.host_sems.get(host)
        if sem is None:
            sem = self.host_sems[host] = asyncio.Semaphore(size)
        return sem


@dataclass
class _BatchState:
    known: DedupIndex | None
    results: list[Download | None]
    first_by_sha: dict[str, int] = field(default_factory=dict)
    sha_dups: list[tuple[int, str, _Fetched]] = field(default_factory=list)
    decode_tasks: list[asyncio.Task[None]] = field(default_factory=list)


class _LoopThread:
    """A private event loop in a daemon thread, for the synchronous API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="ie-env-downloader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


# ---------------------------------------------------------------------------------------------


class Downloader:
    """Downloads images politely and safely; see the module docstring.

    Use it as a context manager, or call :meth:`close`. The synchronous :meth:`fetch` runs on a
    private event loop in a background thread, so it works from plain code (``env.step``) and
    from inside a running loop alike; repeated calls reuse the loop, HTTP connections and worker
    processes. From async code use ``async with Downloader(...)`` and :meth:`fetch_async`; one
    downloader serves one event loop. Decode workers start with multiprocessing's forkserver, so
    scripts need the usual ``if __name__ == "__main__":`` guard.

    Memory is bounded by ``concurrency x max_bytes`` for bodies being received, plus
    ``max_pending_bytes`` of bodies waiting for a decode worker, plus the returned images.

    Args:
        config: settings; defaults to ``DownloadConfig()``.
        resolver: async ``(host, port) -> [address, ...]`` used instead of the system resolver
            (tests use it to make names resolve to forbidden addresses).
    """

    def __init__(self, config: DownloadConfig | None = None, *, resolver: Resolver | None = None) -> None:
        self.config = config or DownloadConfig()
        self.policy = AddressPolicy(self.config.allowed_hosts, resolver=resolver)
        self._session_obj: _Session | None = None
        self._loop_thread: _LoopThread | None = None
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

    def _session(self) -> _Session:
        loop = asyncio.get_running_loop()
        if self._session_obj is None:
            self._session_obj = _Session(self)
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
            self._loop_thread = _LoopThread()
        return self._loop_thread.run(self.fetch_async(list(items), known))

    async def fetch_async(self, items: Iterable[object], known: DedupIndex | None = None) -> DownloadBatch:
        """Async :meth:`fetch`; run it on the loop this downloader is bound to."""
        if self._closed:
            raise RuntimeError("Downloader is closed")
        started = time.perf_counter()
        session = self._session()
        cfg = self.config
        raws = [_url_of(item) for item in items]
        state = _BatchState(known=known if cfg.dedup else None, results=[None] * len(raws))
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
        downloads = self._finalise(raws, state)
        counts = dict(Counter(d.status for d in downloads))
        return DownloadBatch(downloads, counts, time.perf_counter() - started)

    # -- per URL -----------------------------------------------------------------------------

    async def _host_worker(
        self, s: _Session, queue: deque[tuple[int, ParsedURL]], raws: list[object], state: _BatchState
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
        self, s: _Session, state: _BatchState, index: int, url: str, fetched: _Fetched, sha: str
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

    async def _fetch_with_retries(self, s: _Session, parsed: ParsedURL) -> _Fetched:
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

    async def _wait_for_host(self, s: _Session, host: str) -> None:
        while (delay := s.not_before.get(host, 0.0) - s.loop.time()) > 0:
            await asyncio.sleep(delay)

    async def _check_hop(self, s: _Session, hop: ParsedURL) -> _Fetched | None:
        """Address guard and robots.txt for one hop; a failure value, or None to go ahead."""
        try:
            await self.policy.addresses(hop.host, hop.port)
        except BlockedAddressError as exc:
            return _Fetched("blocked_address", str(exc), final_url=str(hop.url))
        except OSError as exc:
            return _Fetched("network_error", f"cannot resolve {hop.host}: {exc}", final_url=str(hop.url))
        if self.config.respect_robots:
            rules = await self._robots(s, hop)
            if not rules.can_fetch(self.config.robots_token, str(hop.url)):
                return _Fetched("blocked_by_robots", rules.reason or "disallowed", final_url=str(hop.url))
        return None

    async def _fetch_chain(self, s: _Session, parsed: ParsedURL, *, robots: bool = False) -> _Fetched:
        """One attempt: follow redirects ourselves, checking every hop before connecting."""
        cfg = self.config
        hop = parsed
        for n_redirects in range(cfg.max_redirects + 1):
            if robots:
                try:
                    await self.policy.addresses(hop.host, hop.port)
                except BlockedAddressError as exc:
                    return _Fetched("blocked_address", str(exc), final_url=str(hop.url))
                except OSError as exc:
                    return _Fetched("network_error", f"cannot resolve {hop.host}: {exc}")
            else:
                refused = await self._check_hop(s, hop)
                if refused is not None:
                    return refused
            await self._wait_for_host(s, hop.host)
            async with s.host_sem(hop.host, cfg.per_host), s.global_sem:
                fetched = await self._get(s, hop, robots=robots)
            if fetched.redirect is None:
                return fetched
            if n_redirects == cfg.max_redirects:
                return _Fetched(
                    "too_many_redirects",
                    f"more than {cfg.max_redirects} redirects",
                    final_url=str(hop.url),
                    http_status=fetched.http_status,
                )
            try:
                location = fetched.redirect.decode("utf-8")
            except UnicodeDecodeError:
                return _Fetched("invalid_url", "redirect Location is not valid UTF-8", final_url=str(hop.url))
            try:
                target = str(hop.url.join(location))
            except Exception as exc:
                return _Fetched("invalid_url", f"bad redirect Location {location[:100]!r}: {exc}")
            nxt, error = parse_url(target, cfg.max_url_length)
            if nxt is None:
                return _Fetched(
                    "invalid_url", f"redirect to {target[:100]!r}: {error}", final_url=str(hop.url)
                )
            hop = nxt
        raise AssertionError("unreachable")

    async def _get(self, s: _Session, hop: ParsedURL, *, robots: bool) -> _Fetched:
        cfg = self.config
        url = str(hop.url)
        limit = ROBOTS_MAX_BYTES if robots else cfg.max_bytes
        try:
            async with asyncio.timeout(cfg.total_timeout):
                async with s.client.stream("GET", hop.url) as response:
                    code = response.status_code
                    if code in REDIRECT_STATUS_CODES:
                        location = _raw_header(response, b"location")
                        if location is None:
                            return _Fetched(
                                "http_error", f"HTTP {code} without Location", final_url=url, http_status=code
                            )
                        return _Fetched("redirect", redirect=location, final_url=url, http_status=code)
                    if robots:
                        if not 200 <= code < 300:
                            return _Fetched("http_error", f"HTTP {code}", final_url=url, http_status=code)
                    elif code in RETRY_STATUS_CODES:
                        retry = _retry_after_seconds(response.headers.get("retry-after"))
                        return _Fetched(
                            "http_error",
                            f"HTTP {code}",
                            final_url=url,
                            http_status=code,
                            retry_after=-1.0 if retry is None else retry,
                        )
                    elif not 200 <= code < 300:
                        return _Fetched("http_error", f"HTTP {code}", final_url=url, http_status=code)
                    if not robots:
                        refused = self._check_headers(response)
                        if refused is not None:
                            refused.final_url, refused.http_status = url, code
                            return refused
                    length = response.headers.get("content-length")
                    if not robots and length is not None and length.strip().isdigit() and int(length) > limit:
                        return _Fetched(
                            "too_large",
                            f"Content-Length {int(length)} > max_bytes {limit}",
                            final_url=url,
                            http_status=code,
                        )
                    chunks: list[bytes] = []
                    received = 0
                    async for chunk in response.aiter_bytes():
                        received += len(chunk)
                        if received > limit:
                            if robots:
                                chunks.append(chunk[: limit - (received - len(chunk))])
                                break
                            return _Fetched(
                                "too_large",
                                f"body exceeds max_bytes {limit}",
                                final_url=url,
                                http_status=code,
                            )
                        chunks.append(chunk)
                    return _Fetched("ok", body=b"".join(chunks), final_url=url, http_status=code)
        except TimeoutError:
            return _Fetched("timeout", f"no complete answer within {cfg.total_timeout}s", final_url=url)
        except httpx.TimeoutException as exc:
            return _Fetched("timeout", f"{type(exc).__name__}", final_url=url)
        except BlockedAddressError as exc:
            return _Fetched("blocked_address", str(exc), final_url=url)
        except httpx.DecodingError as exc:
            return _Fetched("http_error", f"bad Content-Encoding: {exc}"[:200], final_url=url)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return _Fetched("invalid_url", str(exc)[:200], final_url=url)
        except (httpx.HTTPError, OSError) as exc:
            return _Fetched("network_error", f"{type(exc).__name__}: {exc}"[:200], final_url=url)

    def _check_headers(self, response: httpx.Response) -> _Fetched | None:
        cfg = self.config
        if cfg.respect_x_robots_tag:
            directive = x_robots_opt_out(
                response.headers.get_list("x-robots-tag"), cfg.robots_token, cfg.opt_out_directives
            )
            if directive is not None:
                return _Fetched("opted_out", f"X-Robots-Tag: {directive}")
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype.startswith(_NON_IMAGE_TYPES):
            return _Fetched("not_image", f"Content-Type {ctype}")
        return None

    async def _robots(self, s: _Session, hop: ParsedURL) -> RobotsRules:
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

    # -- dedup and assembly ------------------------------------------------------------------

    def _finalise(self, raws: Sequence[object], state: _BatchState) -> list[Download]:
        results = state.results
        # Exact duplicates: the first in input order keeps the image, whichever finished first.
        groups: dict[str, list[tuple[int, _Fetched]]] = {}
        for index, sha, fetched in state.sha_dups:
            groups.setdefault(sha, []).append((index, fetched))
        for sha, members in groups.items():
            first = state.first_by_sha[sha]
            decoded = results[first]
            assert decoded is not None
            where = {first: (decoded.final_url, decoded.http_status)}
            where.update({i: (f.final_url, f.http_status) for i, f in members})
            keeper_index = min(where)
            keeper = replace(
                decoded,
                url=_display(raws[keeper_index]),
                final_url=where[keeper_index][0],
                http_status=where[keeper_index][1],
            )
            for index, (final_url, http_status) in where.items():
                if index == keeper_index:
                    results[index] = keeper
                    continue
                results[index] = Download(
                    _display(raws[index]),
                    "duplicate" if keeper.ok else keeper.status,
                    f"same bytes as {keeper.url}" if keeper.ok else keeper.error,
                    sha,
                    keeper.phash,
                    keeper.width,
                    keeper.height,
                    None,
                    final_url,
                    http_status,
                    keeper.format,
                    keeper.nbytes,
                )
        out: list[Download] = [
            r if r is not None else Download(_display(raws[i]), "internal_error", "no result recorded")
            for i, r in enumerate(results)
        ]
        if not self.config.dedup:
            return out
        threshold = self.config.phash_threshold
        kept = np.zeros(len(out), dtype=np.uint64)
        kept_index: list[int] = []
        for i, d in enumerate(out):
            if not d.ok or d.phash is None:
                continue
            if state.known is not None:
                match = state.known.near_duplicate(d.phash)
                if match is not None:
                    out[i] = replace(
                        d, status="duplicate", error="near-duplicate of a stored image", image=None
                    )
                    continue
            if kept_index:
                distances = hamming(kept[: len(kept_index)], d.phash)
                j = int(np.argmin(distances))
                if distances[j] <= threshold:
                    other = out[kept_index[j]].url
                    out[i] = replace(
                        d,
                        status="duplicate",
                        error=f"near-duplicate (distance {distances[j]}) of {other}",
                        image=None,
                    )
                    continue
            kept[len(kept_index)] = np.uint64(d.phash)
            kept_index.append(i)
        return out


def _raw_header(response: httpx.Response, name: bytes) -> bytes | None:
    for key, value in response.headers.raw:
        if key.lower() == name:
            return value
    return None


def fetch(items: Iterable[object], config: DownloadConfig | None = None, **kwargs: Any) -> DownloadBatch:
    """One-shot convenience: download ``items`` with a fresh :class:`Downloader` and close it."""
    with Downloader(config, **kwargs) as downloader:
        return downloader.fetch(items)
