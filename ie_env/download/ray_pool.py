"""A pool of Ray actors of one kind: submission to the least busy, backpressure, the retry-once rule.

:class:`Pool` is what :class:`~ie_env.download.ray_executor.RayExecutor` runs its search and
download workers with. Each actor has a ``run`` method; a call is a :class:`Job`. At most
``tasks_in_flight`` calls wait per actor (:meth:`Pool.has_room`). When an actor dies, every call it
held is sent once more, to another actor (a replacement is started with ``replace_lost``); a call
whose second actor dies too is given up, and the loss is in the :class:`ExecutorReport`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from ie_env.download.executor import ExecutorConfig, ExecutorReport, WorkerLoss

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One call on a worker.

    Attributes:
        args: the arguments of the actor's ``run``.
        tag: what the caller needs to place the result (a batch and its item indices, ...).
        size: URLs or queries in the call (what a loss counts).
        attempt: 0, or 1 for the resend after a lost worker.
        worker: the actor it was sent to.
        avoid: an actor not to send it to (the one that died with it).
    """

    args: tuple
    tag: Any
    size: int
    attempt: int = 0
    worker: str = ""
    avoid: str = ""


class Pool:
    """Actors of one kind; see the module docstring.

    Args:
        kind: worker name prefix (``download``, ``search``).
        make: starts one actor and returns its handle.
        size: actors to start.
        config: ``tasks_in_flight`` and ``replace_lost`` are used.
        report: where losses, resends and failures are counted.
    """

    def __init__(
        self, kind: str, make: Callable[[], Any], size: int, config: ExecutorConfig, report: ExecutorReport
    ) -> None:
        self.kind, self._make, self.config, self.report = kind, make, config, report
        self.workers: dict[str, Any] = {}
        self._pid_refs: dict[str, Any] = {}
        self.busy: dict[str, int] = {}
        self.jobs: dict[Any, Job] = {}
        self._losses: dict[str, WorkerLoss] = {}
        self._count = 0
        for _ in range(size):
            self._add()

    def _add(self) -> None:
        name = f"{self.kind}-{self._count}"
        self._count += 1
        self.workers[name] = self._make()
        # Asked first, so the answer does not wait behind calls (an actor runs one call at a time).
        self._pid_refs[name] = self.workers[name].pid.remote()
        self.busy[name] = 0

    def has_room(self) -> bool:
        """Whether another call may be queued without passing ``tasks_in_flight`` per actor."""
        return sum(self.busy.values()) < len(self.workers) * self.config.tasks_in_flight

    def submit(self, job: Job) -> None:
        """Send ``job`` to the least busy actor other than ``job.avoid`` (starting one if none is left)."""
        if not self.workers:
            self._add()
        names = [n for n in self.workers if n != job.avoid] or list(self.workers)
        job.worker = min(names, key=lambda n: self.busy[n])
        self.busy[job.worker] += 1
        self.jobs[self.workers[job.worker].run.remote(*job.args)] = job

    def next_done(self) -> tuple[Job, Any, str | None]:
        """Wait for a call: ``(job, value, None)``, or ``(job, None, reason)`` once its retry died too."""
        while True:
            [ref], _ = ray.wait(list(self.jobs), num_returns=1)
            job = self.jobs.pop(ref)
            if job.worker in self.busy:
                self.busy[job.worker] -= 1
            try:
                return job, ray.get(ref), None
            except RayActorError as exc:
                reason = self._lost(job, exc)
            except RayTaskError as exc:  # a bug in the worker, not a lost worker: no retry
                self.report.failed += job.size
                return job, None, f"{self.kind} worker raised {' '.join(str(exc).split())[:200]}"
            if job.attempt == 0:
                self.report.retried += job.size
                self.submit(replace(job, attempt=1, avoid=job.worker))
                continue
            self.report.failed += job.size
            return job, None, f"{self.kind} worker lost twice ({reason})"

    def _lost(self, job: Job, exc: Exception) -> str:
        reason = " ".join(str(exc).split())[:200]
        if job.worker in self.workers:
            del self.workers[job.worker]
            self._pid_refs.pop(job.worker, None)
            self.busy.pop(job.worker, None)
            self._losses[job.worker] = WorkerLoss(job.worker, reason, 0)
            self.report.lost_workers.append(self._losses[job.worker])
            log.warning("%s died; its calls go to other workers once: %s", job.worker, reason)
            if self.config.replace_lost:
                self._add()
        self._losses[job.worker].urls += job.size
        return reason

    def pids(self) -> dict[str, int]:
        """Process id of each live actor, by name (asked when it started, so this never waits for work)."""
        return dict(zip(self.workers, ray.get([self._pid_refs[n] for n in self.workers]), strict=True))

    def drain(self) -> None:
        """Wait out the calls still queued (a consumer left a stream early) and forget them."""
        with contextlib.suppress(Exception):
            ray.wait(list(self.jobs), num_returns=len(self.jobs))
        self.jobs.clear()
        self.busy = dict.fromkeys(self.workers, 0)

    def close(self) -> None:
        """Kill the actors and forget their calls."""
        for worker in self.workers.values():
            ray.kill(worker)
        self.workers.clear()
        self._pid_refs.clear()
        self.jobs.clear()
