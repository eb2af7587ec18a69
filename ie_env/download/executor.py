"""Where the search + download stage runs: this process (the default) or a Ray cluster.

An executor turns queries into :class:`~ie_env.search.base.SearchResult` values and URLs into
:class:`~ie_env.download.results.DownloadBatch` values. Two back ends give the same values for the
same input:

* :class:`LocalExecutor` (``kind="local"``): one :class:`~ie_env.download.Downloader` and one engine
  in this process, exactly what the worlds used before executors existed;
* :class:`~ie_env.download.ray_executor.RayExecutor` (``kind="ray"``, the ``ray`` extra): search
  actors behind one cluster-wide rate limiter per provider, and a pool of download/decode actors;
  see :mod:`ie_env.download.ray_executor`.

>>> from ie_env.download.executor import ExecutorConfig, make_executor
>>> with make_executor(ExecutorConfig(kind="ray", download_workers=4), download_config) as ex:
...     for batch in ex.stream(url_lists, known=store):   # one DownloadBatch per list, in order
...         store.add_many(batch.downloads)

Dedup stays in the caller's process. A distributed back end fetches with dedup off in its workers
and applies the downloader's one rule here (:func:`plan_batch` before the fetch: invalid, repeated
and already-stored URLs; :func:`merge_batch` after it: exact duplicates by sha256, bytes already
stored, near-duplicates in input order), so the store, which lives in the caller's process, never
receives an image twice and the values equal the local executor's.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ie_env.download.batch import BatchState, finalise
from ie_env.download.client import Downloader
from ie_env.download.config import DownloadConfig
from ie_env.download.dedup import DedupIndex
from ie_env.download.netguard import parse_url
from ie_env.download.results import Download, DownloadBatch
from ie_env.download.transfer import Fetched
from ie_env.search.base import SearchEngine, SearchResult
from ie_env.validate import check_bool, check_choice, check_int, check_ints, check_number, check_text

EXECUTORS = ("local", "ray")
EngineFactory = Callable[[], SearchEngine]


@dataclass(frozen=True)
class ExecutorConfig:
    """Which back end runs the search + download stage, and how it is sized (validated).

    Attributes:
        kind: ``local`` (this process) or ``ray``.
        address: the Ray cluster to join (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``); None
            starts a local Ray instance (or uses the one this process already started).
        num_cpus: CPUs of a local Ray instance started here (None: Ray counts them).
        download_workers: download/decode actors.
        search_workers: search actors.
        urls_per_task: URLs sent to a download actor in one call.
        tasks_in_flight: calls queued per actor at once; with ``urls_per_task`` it bounds the results
            waiting to come back (backpressure).
        worker_cpus: CPUs Ray reserves per actor.
        worker_processes: decode processes inside each download actor (0: a thread of the actor).
        replace_lost: start a new actor for each one that dies.
        namespace: Ray namespace of the named limiter actors.
    """

    kind: str = "local"
    address: str | None = None
    num_cpus: int | None = None
    download_workers: int = 2
    search_workers: int = 1
    urls_per_task: int = 32
    tasks_in_flight: int = 2
    worker_cpus: float = 1.0
    worker_processes: int = 0
    replace_lost: bool = True
    namespace: str = "ie_env"

    def __post_init__(self) -> None:
        check_choice(self, "kind", EXECUTORS)
        if self.address is not None:
            check_text(self, "address")
        check_int(self, "num_cpus", 1, optional=True)
        check_ints(self, ("download_workers", "search_workers", "urls_per_task", "tasks_in_flight"), 1)
        check_int(self, "worker_processes", 0)
        check_number(self, "worker_cpus", 0)
        check_bool(self, "replace_lost")
        check_text(self, "namespace")


@dataclass
class WorkerLoss:
    """A worker that died.

    Attributes:
        worker: its name (``download-3``, ``search-0``).
        reason: what Ray said, shortened.
        urls: URLs (or queries) whose calls died with it; each was sent once more to another worker.
    """

    worker: str
    reason: str
    urls: int


@dataclass
class ExecutorReport:
    """What went wrong so far, for logs and ``info`` dicts.

    Attributes:
        lost_workers: each worker that died, in order.
        retried: URLs and queries sent again after their worker died.
        failed: URLs and queries whose retry died too (they end ``internal_error``).
    """

    lost_workers: list[WorkerLoss] = field(default_factory=list)
    retried: int = 0
    failed: int = 0


class Executor:
    """The interface of both back ends (use as a context manager, or call :meth:`close`)."""

    kind = "base"
    report: ExecutorReport

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, query: str, n: int) -> SearchResult:
        """Search one query; errors as values, like the engines."""
        return self.search_many([query], n)[0]

    def search_many(self, queries: Sequence[str], n: int) -> list[SearchResult]:
        """Search ``queries`` (possibly in parallel); one result per query, in order."""
        raise NotImplementedError

    def fetch(self, items: Iterable[object], known: DedupIndex | None = None) -> DownloadBatch:
        """Download ``items`` like :meth:`Downloader.fetch <ie_env.download.Downloader.fetch>`."""
        return next(iter(self.stream([items], known)))

    def stream(
        self, batches: Iterable[Iterable[object]], known: DedupIndex | None = None
    ) -> Iterator[DownloadBatch]:
        """Yield one batch per item list, in order, as if each were fetched after the previous was stored.

        A back end may fetch ahead (bounded); dedup against ``known`` happens when a batch is
        yielded, so storing each batch before asking for the next gives the sequential result.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release workers and connections. Idempotent."""


class LocalExecutor(Executor):
    """Search and download in this process: one engine, one :class:`Downloader`.

    Args:
        download: downloader settings.
        engine_factory: builds the search engine (on first search); None when only fetching.
    """

    kind = "local"

    def __init__(self, download: DownloadConfig | None = None, engine_factory: EngineFactory | None = None):
        self.downloader = Downloader(download)
        self._factory = engine_factory
        self._engine: SearchEngine | None = None
        self.report = ExecutorReport()

    def search_many(self, queries: Sequence[str], n: int) -> list[SearchResult]:
        """Search the queries one after another with the one engine."""
        if self._engine is None:
            if self._factory is None:
                raise RuntimeError("this executor was made without an engine_factory")
            self._engine = self._factory()
        return [self._engine.search(query, n) for query in queries]

    def stream(
        self, batches: Iterable[Iterable[object]], known: DedupIndex | None = None
    ) -> Iterator[DownloadBatch]:
        """Fetch each item list when the previous batch has been consumed."""
        for items in batches:
            yield self.downloader.fetch(items, known)

    def close(self) -> None:
        """Close the downloader and the engine."""
        self.downloader.close()
        close = getattr(self._engine, "close", None)
        if callable(close):
            close()


def make_executor(
    config: ExecutorConfig | None = None,
    download: DownloadConfig | None = None,
    engine_factory: EngineFactory | None = None,
) -> Executor:
    """Build the executor ``config.kind`` names.

    Args:
        config: back end and sizes; default local.
        download: downloader settings (the same in every worker).
        engine_factory: a picklable callable that builds the engine, e.g.
            ``functools.partial(make_engine, "local", base_url=url)`` (Ray builds it in each worker).

    Raises:
        ImportError: ``kind="ray"`` without the ``ray`` extra installed (the message says how).
    """
    config = config or ExecutorConfig()
    if config.kind == "local":
        return LocalExecutor(download, engine_factory)
    try:
        from ie_env.download.ray_executor import RayExecutor
    except ImportError as exc:
        raise ImportError(f"executor 'ray' needs Ray: pip install 'ie_env[ray]' ({exc})") from exc
    return RayExecutor(config, download, engine_factory)


# -- the dedup rule around a distributed fetch ----------------------------------------------------


def _url_of(item: object) -> object:
    return item if isinstance(item, str | bytes | bytearray) else getattr(item, "url", item)


def _display(raw: object) -> str:
    return raw if isinstance(raw, str) else repr(raw)


@dataclass
class BatchPlan:
    """One batch split into outcomes known before fetching and the items workers must fetch.

    Attributes:
        raws: the URLs as given (objects' ``.url``).
        urls: how each is shown in results.
        keys: the normalised URL of each item to fetch (None for the others).
        results: outcomes decided without fetching (invalid, repeated, already stored URLs).
        todo: indices of the items to fetch, in input order.
        started: ``perf_counter`` when the batch was planned.
    """

    raws: list[object]
    urls: list[str]
    keys: list[str | None]
    results: list[Download | None]
    todo: list[int]
    started: float = field(default_factory=time.perf_counter)


def plan_batch(items: Iterable[object], known: DedupIndex | None, config: DownloadConfig) -> BatchPlan:
    """Decide what needs no fetch, as :meth:`Downloader.fetch_async` does before its first request."""
    raws = [_url_of(item) for item in items]
    urls = [_display(raw) for raw in raws]
    plan = BatchPlan(raws, urls, [None] * len(raws), [None] * len(raws), [])
    known = known if config.dedup else None
    first_index: dict[str, int] = {}
    for i, raw in enumerate(raws):
        parsed, error = parse_url(raw, config.max_url_length)
        if parsed is None:
            plan.results[i] = Download(urls[i], "invalid_url", error)
            continue
        key = str(parsed.url)
        if config.dedup and key in first_index:
            plan.results[i] = Download(urls[i], "duplicate", f"same URL as item {first_index[key]}")
            continue
        first_index[key] = i
        if known is not None and (known.has_url(key) or known.has_url(urls[i])):
            plan.results[i] = Download(urls[i], "duplicate", "URL already in the store")
            continue
        plan.keys[i] = key
        plan.todo.append(i)
    return plan


def merge_batch(
    plan: BatchPlan, fetched: dict[int, Download], known: DedupIndex | None, config: DownloadConfig
) -> DownloadBatch:
    """Combine workers' outcomes (fetched with dedup off) into what the local downloader returns.

    Args:
        plan: the batch's plan.
        fetched: item index -> the worker's outcome, for the indices in ``plan.todo``; a missing one
            becomes ``internal_error``.
        known: the stored images; checked again now, so images stored since the plan count.
        config: ``dedup`` and ``phash_threshold`` are used.
    """
    known = known if config.dedup else None
    state = BatchState(known=known, results=list(plan.results))
    for i in plan.todo:
        url, key = plan.urls[i], plan.keys[i]
        d = fetched.get(i) or Download(url, "internal_error", "no outcome from any worker")
        if known is not None and (known.has_url(key or url) or known.has_url(url)):
            state.results[i] = Download(url, "duplicate", "URL already in the store")
        elif not config.dedup or d.sha256 is None:
            state.results[i] = d
        elif d.sha256 in state.first_by_sha:
            state.sha_dups.append(
                (i, d.sha256, Fetched("ok", final_url=d.final_url, http_status=d.http_status))
            )
        elif known is not None and known.has_sha256(d.sha256):
            state.results[i] = Download(
                url,
                "duplicate",
                "same bytes as a stored image",
                sha256=d.sha256,
                final_url=d.final_url,
                http_status=d.http_status,
                nbytes=d.nbytes,
            )
        else:
            state.first_by_sha[d.sha256] = i
            state.results[i] = d
    downloads = finalise(plan.urls, state, config)
    counts = dict(Counter(d.status for d in downloads))
    return DownloadBatch(downloads, counts, time.perf_counter() - plan.started)
