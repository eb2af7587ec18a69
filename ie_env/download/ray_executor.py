"""The Ray back end of the search + download stage (the ``ray`` extra).

Layout on the cluster:

* **search workers**: ``search_workers`` actors, each with its own engine built by the caller's
  ``engine_factory``. An engine with a rate limit has it replaced by a :class:`ClusterLimiter`:
  every worker draws tokens from one named limiter actor per provider key (``limiter:<key>`` in
  the config's namespace, made by the caller's process so it lives as long as the run; another run
  on the same cluster with the same key joins it), so N workers on M machines together keep the
  provider's documented rate; a 429's ``Retry-After`` seen by one worker holds back all of them.
* **download workers**: ``download_workers`` actors, each a long-lived :class:`Downloader` (its
  connections and robots.txt cache survive between calls) fetching and decoding with dedup off.
* **the caller's process** (the learner's) plans each batch and merges the outcomes with the
  downloader's dedup rule (:func:`~ie_env.download.executor.plan_batch`,
  :func:`~ie_env.download.executor.merge_batch`): the store never leaves it, and no image is stored
  twice.

Backpressure: at most ``tasks_in_flight`` calls of ``urls_per_task`` URLs wait per worker, and the
next item list of :meth:`RayExecutor.stream` is not even read until there is room, so memory is
bounded by ``workers x tasks_in_flight x urls_per_task`` images whatever the input size.

Failures: a worker that dies (killed, OOM, node lost) is reported (``report.lost_workers``, a
warning in the log) and, with ``replace_lost``, replaced; each call it held is sent to another
worker exactly once. A call whose second worker dies too ends ``internal_error`` for its URLs (an
error-valued ``SearchResult`` for queries) and counts in ``report.failed``: the run continues.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import ray

from ie_env.download.client import Downloader
from ie_env.download.config import DownloadConfig
from ie_env.download.dedup import DedupIndex
from ie_env.download.executor import (
    BatchPlan,
    EngineFactory,
    Executor,
    ExecutorConfig,
    ExecutorReport,
    merge_batch,
    plan_batch,
)
from ie_env.download.ray_pool import Job, Pool
from ie_env.download.results import Download, DownloadBatch
from ie_env.search import ratelimit
from ie_env.search.base import SearchResult
from ie_env.search.ratelimit import RateLimiter

log = logging.getLogger(__name__)


# -- the cluster-wide rate limit ------------------------------------------------------------------


@ray.remote(num_cpus=0)
class _LimiterActor:
    """One provider's token buckets, for every worker of the cluster."""

    def __init__(self, rates: tuple, max_wait_s: float) -> None:
        self.limiter = RateLimiter(rates, max_wait_s=max_wait_s)
        self.granted = 0

    def try_acquire(self) -> tuple[float, str]:
        wait, why = self.limiter.try_acquire()
        self.granted += wait <= 0.0
        return wait, why

    def block_for(self, seconds: float) -> None:
        self.limiter.block_for(seconds)

    def stats(self) -> dict[str, Any]:
        return {"granted": self.granted, "rates": [rate.describe for rate in self.limiter.rates]}


@ray.remote(num_cpus=0)
class _LimiterRegistry:
    """Makes (and so owns) the one limiter actor per provider key; made by the caller's process."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.limiters: dict[str, Any] = {}

    def get(self, key: str, rates: tuple, max_wait_s: float) -> list[Any]:
        if key not in self.limiters:
            self.limiters[key] = _LimiterActor.options(
                name=f"limiter:{key}", namespace=self.namespace, get_if_exists=True
            ).remote(rates, max_wait_s)
        return [self.limiters[key]]  # in a list, so the caller gets the handle, not a call on it

    def stats(self) -> dict[str, Any]:
        return {key: ray.get(handle.stats.remote()) for key, handle in self.limiters.items()}


class ClusterLimiter(RateLimiter):
    """A :class:`RateLimiter` whose buckets live in a named Ray actor shared by the whole cluster.

    Waiting happens in the caller (``acquire`` sleeps locally between tries), so the actor answers
    every worker at once.
    """

    def __init__(self, handle: Any, rates: Sequence[ratelimit.Rate], max_wait_s: float) -> None:
        super().__init__(rates, max_wait_s=max_wait_s)
        self.handle = handle

    def try_acquire(self) -> tuple[float, str]:
        """Ask the shared buckets for a token: ``(0.0, "")`` or ``(wait, which limit)``."""
        return ray.get(self.handle.try_acquire.remote())

    def block_for(self, seconds: float) -> None:
        """Hold every worker of the cluster back for ``seconds``."""
        ray.get(self.handle.block_for.remote(seconds))


def limiter_key(limiter: RateLimiter, engine: object) -> str:
    """The provider key ``limiter`` is shared under in its process, else one from the engine's name.

    :func:`~ie_env.search.ratelimit.shared_limiter` keys a limiter by provider, account fingerprint
    and host, so workers of the same account on any machine find the same cluster-wide limiter.
    """
    for key, shared in list(ratelimit._shared.items()):
        if shared is limiter:
            return key
    return f"engine:{getattr(engine, 'name', type(engine).__name__)}"


# -- the workers ----------------------------------------------------------------------------------


@ray.remote
class _SearchWorker:
    def __init__(self, factory: EngineFactory, registry: Any) -> None:
        self.engine = factory()
        http = getattr(self.engine, "http", None)
        limiter = getattr(http, "limiter", None)
        if isinstance(limiter, RateLimiter) and limiter.rates:
            key = limiter_key(limiter, self.engine)
            [handle] = ray.get(registry.get.remote(key, limiter.rates, limiter.max_wait_s))
            http.limiter = ClusterLimiter(handle, limiter.rates, limiter.max_wait_s)

    def pid(self) -> int:
        return os.getpid()

    def run(self, queries: list[str], n: int) -> list[SearchResult]:
        return [self.engine.search(query, n) for query in queries]


@ray.remote
class _DownloadWorker:
    def __init__(self, config: DownloadConfig) -> None:
        self.downloader = Downloader(config)

    def pid(self) -> int:
        return os.getpid()

    def run(self, urls: list[object]) -> list[Download]:
        return self.downloader.fetch(urls).downloads


class RayExecutor(Executor):
    """Search and download on a Ray cluster; see the module docstring.

    Args:
        config: the cluster address and sizes.
        download: downloader settings for every download worker (their dedup is turned off; it is
            applied in this process).
        engine_factory: picklable callable that builds the engine in each search worker.
    """

    kind = "ray"

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        download: DownloadConfig | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        self.config = config or ExecutorConfig(kind="ray")
        self.download = download or DownloadConfig()
        self.report = ExecutorReport()
        self._started_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.config.address is None:
                kwargs["num_cpus"] = self.config.num_cpus
            ray.init(address=self.config.address, namespace=self.config.namespace, **kwargs)
            self._started_ray = True
        self._downloads: Pool | None = None
        self._factory = engine_factory
        self._search: Pool | None = None
        self._registry: Any = None

    # -- search ---------------------------------------------------------------------------------

    def search_many(self, queries: Sequence[str], n: int) -> list[SearchResult]:
        """Spread the queries over the search workers; one result per query, in order."""
        if self._search is None:
            if self._factory is None:
                raise RuntimeError("this executor was made without an engine_factory")
            self._search = Pool(
                "search",
                self._new_search_worker,
                self.config.search_workers,
                self.config,
                self.report,
            )
        pool = self._search
        out: list[SearchResult | None] = [None] * len(queries)
        todo = deque(range(len(queries)))
        while todo or pool.jobs:
            while todo and pool.has_room():
                i = todo.popleft()
                pool.submit(Job((list(queries[i : i + 1]), n), i, 1))
            job, value, error = pool.next_done()
            out[job.tag] = value[0] if error is None else SearchResult("ray", queries[job.tag], error=error)
        return [r for r in out if r is not None]

    def _new_search_worker(self) -> Any:
        if self._registry is None:  # made here, so it and its limiters live as long as this process
            self._registry = _LimiterRegistry.options(
                name="limiters", namespace=self.config.namespace, get_if_exists=True
            ).remote(self.config.namespace)
        return _SearchWorker.options(num_cpus=self.config.worker_cpus).remote(self._factory, self._registry)

    def limiter_stats(self) -> dict[str, dict[str, Any]]:
        """Tokens granted and rates of each cluster-wide limiter, by provider key."""
        return {} if self._registry is None else ray.get(self._registry.stats.remote())

    def _download_pool(self) -> Pool:
        if self._downloads is None:
            worker_config = replace(self.download, dedup=False, processes=self.config.worker_processes)
            options = _DownloadWorker.options(num_cpus=self.config.worker_cpus)
            self._downloads = Pool(
                "download",
                lambda: options.remote(worker_config),
                self.config.download_workers,
                self.config,
                self.report,
            )
        return self._downloads

    # -- download -------------------------------------------------------------------------------

    def stream(
        self, batches: Iterable[Iterable[object]], known: DedupIndex | None = None
    ) -> Iterator[DownloadBatch]:
        """Yield one batch per item list, in order; fetches ahead only while workers have room."""
        source = iter(batches)
        try:
            yield from self._stream(source, known)
        finally:
            self._download_pool().drain()

    def _stream(
        self, source: Iterator[Iterable[object]], known: DedupIndex | None
    ) -> Iterator[DownloadBatch]:
        pool, cfg = self._download_pool(), self.download
        windows: deque[tuple[BatchPlan, dict[int, Download], list[int]]] = deque()
        queue: deque[Job] = deque()
        exhausted = False
        while True:
            while pool.has_room() and (queue or not exhausted):
                if queue:
                    pool.submit(queue.popleft())
                    continue
                items = next(source, None)
                if items is None:
                    exhausted = True
                    break
                plan = plan_batch(items, known, cfg)
                window = (plan, {}, [len(plan.todo)])
                windows.append(window)
                step = self.config.urls_per_task
                for k in range(0, len(plan.todo), step):
                    indices = plan.todo[k : k + step]
                    queue.append(Job(([plan.raws[i] for i in indices],), (window, indices), len(indices)))
            if windows and windows[0][2][0] == 0:
                plan, fetched, _ = windows.popleft()
                yield merge_batch(plan, fetched, known, cfg)
                continue
            if not pool.jobs:
                return
            self._collect(*pool.next_done())

    def _collect(self, job: Job, value: list[Download] | None, error: str | None) -> None:
        (plan, fetched, remaining), indices = job.tag
        for k, i in enumerate(indices):
            fetched[i] = value[k] if value is not None else Download(plan.urls[i], "internal_error", error)
        remaining[0] -= len(indices)

    # -- inspection and shutdown ----------------------------------------------------------------

    def worker_pids(self) -> dict[str, int]:
        """Process id of each live download worker, by name (``download-0``, ...)."""
        return self._download_pool().pids()

    def in_flight(self) -> dict[str, int]:
        """URLs each download worker holds now, by name."""
        pool = self._download_pool()
        held = dict.fromkeys(pool.workers, 0)
        for job in pool.jobs.values():
            held[job.worker] = held.get(job.worker, 0) + job.size
        return held

    def close(self) -> None:
        """Stop the workers; shut Ray down if this executor started it."""
        for pool in (self._downloads, self._search):
            if pool is not None:
                pool.close()
        self._search = self._downloads = None
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False
