"""The Ray executor on a local Ray instance: the local executor's values, a killed worker, one rate limit.

One Ray instance (``num_cpus=2``) serves the whole module; it starts in several seconds, so every
Ray test lives here and shares it.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Iterator

import pytest
from hostile_server import HostileServer
from search_support import FakeApi, Resp
from test_executor import corpus, fields

from ie_env.download import DownloadConfig, Downloader
from ie_env.download.executor import ExecutorConfig, make_executor
from ie_env.download.store import ImageStore
from ie_env.search.openverse import OpenverseEngine
from ie_env.search.ratelimit import Rate

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'ie_env[ray]')")

# Four actors (two download, two search) fit the two CPUs.
SMALL = {"kind": "ray", "worker_cpus": 0.5, "urls_per_task": 4, "tasks_in_flight": 2}


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="ie_env_tests")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


def download_config(server: HostileServer) -> DownloadConfig:
    return DownloadConfig(allowed_hosts=(server.hostport,), processes=0, total_timeout=10.0)


def test_ray_stream_equals_the_local_executor_with_a_store(server, tmp_path):
    config = download_config(server)
    items = corpus(server)
    lists = [items[:8], items[8:], [server.url("/img/0.png"), server.url("/img/40.png")]]
    results = {}
    for kind in ("local", "ray"):
        executor = make_executor(ExecutorConfig(**{**SMALL, "kind": kind}), config)
        with executor, ImageStore(tmp_path / kind) as store:
            store.add_many(Downloader(config).fetch([server.url("/same-b.png?v=1")]).downloads)
            results[kind] = []
            for batch in executor.stream(lists, known=store):
                store.add_many(batch.downloads)
                results[kind].append([fields(d) for d in batch.downloads])
            stored = store.count()
        assert executor.report.lost_workers == []
        results[kind].append(stored)
    assert results["ray"] == results["local"]
    statuses = {row[1] for batch in results["ray"][:-1] for row in batch}
    assert {"ok", "duplicate", "invalid_url", "too_small"} <= statuses


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(server, tmp_path):
    config = download_config(server)
    # The first list is quick and the rest slow, so the victim's calls are surely still running when
    # it is killed (with equal delays they could all be done already, and nothing would be lost).
    urls = [server.url(f"/slow/{i}.png?s={0.1 if i < 8 else 1.0}") for i in range(32)]
    lists = [urls[k : k + 8] for k in range(0, len(urls), 8)]
    with Downloader(config) as local:
        expected = [fields(d) for d in local.fetch(urls).downloads]
    before = {u: server.state.hits[u.split(server.hostport, 1)[1]] for u in urls}
    got, victim = [], None
    with make_executor(ExecutorConfig(**SMALL), config) as executor, ImageStore(tmp_path / "s") as store:
        for batch in executor.stream(lists, known=store):
            if victim is None:  # after the first batch: kill a worker that holds URLs now
                held = executor.in_flight()
                victim = max(held, key=held.get)
                assert held[victim] > 0
                os.kill(executor.worker_pids()[victim], signal.SIGKILL)
            store.add_many(batch.downloads)
            got.extend(fields(d) for d in batch.downloads)
        shas = [row[3] for row in got if row[1] == "ok"]
        stored = len(list((tmp_path / "s" / "images").rglob("*.png")))
    report = executor.report
    assert got == expected  # nothing lost, same values
    assert len(shas) == len(set(shas)) == stored  # no image stored twice
    assert [loss.worker for loss in report.lost_workers] == [victim]
    assert report.retried == report.lost_workers[0].urls > 0 and report.failed == 0
    hits = {u: server.state.hits[u.split(server.hostport, 1)[1]] - before[u] for u in urls}
    assert set(hits.values()) <= {1, 2}  # each URL fetched once, or once more after the kill
    assert sum(v == 2 for v in hits.values()) <= report.retried


def test_search_workers_share_one_rate_limit():
    page = {
        "result_count": 2,
        "page_count": 1,
        "results": [
            {"id": "a", "url": "http://127.0.0.1:9/a.png"},
            {"id": "b", "url": "http://127.0.0.1:9/b.png"},
        ],
    }
    api = FakeApi(lambda req: Resp(body=page))
    # Loopback engines are unlimited unless given rates: 1 request per 0.25 s for all workers.
    factory = functools.partial(OpenverseEngine, api.url, name="local", rates=(Rate(1, 0.25, "1/0.25s"),))
    config = ExecutorConfig(**{**SMALL, "search_workers": 2})
    try:
        with make_executor(config, engine_factory=factory) as executor:
            executor.search("warm up", 2)  # starts both workers; takes the one token in the bucket
            started = time.monotonic()
            results = executor.search_many([f"query {i}" for i in range(6)], 2)
            elapsed = time.monotonic() - started
            stats = executor.limiter_stats()
    finally:
        api.close()
    assert [r.query for r in results] == [f"query {i}" for i in range(6)]
    assert all(r.ok and len(r.hits) == 2 for r in results)
    [(key, stat)] = stats.items()
    assert key == "openverse:anon@127.0.0.1" and stat["granted"] == 7
    # One shared bucket grants the 6 tokens 0.25 s apart (the last 1.5 s after the warm-up's);
    # two private ones would grant 2 per 0.25 s and finish in about 0.75 s.
    assert elapsed >= 1.2
