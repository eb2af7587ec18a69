"""The ``--executor`` part of the download benchmark: the Ray executor against the local one.

Both fetch the same ``--executor-n`` plain images (``/img/<n>.png``) from the loopback hostile server
(a threaded Python server, in this process), dedup off, through
:meth:`~ie_env.download.executor.Executor.stream` in lists of 250 URLs. Timed from the first list to
the last batch, after a warm-up list (Ray's start-up and the actors' imports are a one-off cost, not
throughput). Alternating, ``--repeats`` times; medians. ``ray_ratio`` = Ray / local (target >= 0.8 on
one machine: an overhead bound). ``ray_per_worker`` gives images/s with 1..``--ray-workers``
download actors, the per-worker figures of the scaling model in ``docs/scaling.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import median

REPO = Path(__file__).resolve().parent.parent
LIST = 250


def _timed(executor: object, urls: list[str]) -> tuple[int, float]:
    lists = [urls[k : k + LIST] for k in range(0, len(urls), LIST)]
    started = time.perf_counter()
    ok = sum(batch.counts.get("ok", 0) for batch in executor.stream(lists))  # type: ignore[attr-defined]
    return ok, time.perf_counter() - started


def _one(kind: str, workers: int, urls: list[str], warm: list[str], args: argparse.Namespace, host: str):
    from ie_env.download import DownloadConfig
    from ie_env.download.executor import ExecutorConfig, make_executor

    download = DownloadConfig(
        image_size=args.image_size,
        resize_mode="center_crop",
        per_host=args.per_host,
        concurrency=max(args.per_host, 32),
        processes=args.processes,
        allowed_hosts=(host,),
        dedup=False,
    )
    config = ExecutorConfig(kind=kind, download_workers=workers, urls_per_task=64, num_cpus=os.cpu_count())
    with make_executor(config, download) as executor:
        _timed(executor, warm)
        ok, wall = _timed(executor, urls)
    return {"ok": ok, "wall_s": wall, "images_per_s": ok / wall}


def executor_run(args: argparse.Namespace) -> dict[str, object]:
    """Local vs Ray executor on the hostile server's plain images; the JSON keys of ``--executor``."""
    sys.path.insert(0, str(REPO / "tests"))
    import hostile_server as hs
    import ray

    n = args.executor_n or (600 if args.quick else 3000)
    repeats = args.repeats or (2 if args.quick else 3)
    runs: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
    per_worker: dict[int, float] = {}
    with hs.HostileServer() as server:
        urls = [server.url(f"/img/{i}.png") for i in range(n)]
        warm = [server.url(f"/img/{i}.png?warm=1") for i in range(2 * LIST)]
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            for r in range(repeats):
                for kind in ("local", "ray") if r % 2 == 0 else ("ray", "local"):
                    result = _one(kind, args.ray_workers, urls, warm, args, server.hostport)
                    runs[kind].append(result)
                    print(f"  executor {kind:<5} run {r}: {result['images_per_s']:7.1f} img/s", flush=True)
            for workers in range(1, args.ray_workers + 1):
                per_worker[workers] = _one("ray", workers, urls, warm, args, server.hostport)["images_per_s"]
        finally:
            ray.shutdown()
    local = median(r["images_per_s"] for r in runs["local"])
    remote = median(r["images_per_s"] for r in runs["ray"])
    return {
        "local_executor_images_per_s": local,
        "ray_images_per_s": remote,
        "ray_ratio": remote / local,
        "ray_per_worker_images_per_s": {str(k): v for k, v in per_worker.items()},
        "ray_settings": {"download_workers": args.ray_workers, "urls_per_task": 64, "n_urls": n},
        "executor_runs": runs,
    }
