"""Executors without Ray: config validation, the local back end, and the dedup rule around a split fetch.

The split-fetch tests run the distributed path's logic in this process (workers replaced by plain
downloaders with dedup off, fetching chunks), so the rule that makes Ray's values equal the local
executor's is checked even where Ray is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hostile_server import HostileServer

from ie_env.download import DownloadConfig, Downloader
from ie_env.download.executor import (
    ExecutorConfig,
    LocalExecutor,
    make_executor,
    merge_batch,
    plan_batch,
)
from ie_env.download.results import Download
from ie_env.download.store import ImageStore


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


def corpus(server: HostileServer) -> list[object]:
    """Plain images, exact and near duplicates, failures, a repeated URL and non-URLs, shuffled."""
    paths = [f"/img/{i}.png" for i in range(12)]
    paths += [
        "/same-a.png",
        "/img/3.png",
        "/same-b.png",
        "/near.jpg",
        "/tiny.png",
        "/missing",
        "/private/1.png",
    ]
    urls: list[object] = [server.url(p) for p in paths]
    urls += ["ftp://nope/x.png", 42, server.url("/img/5.png?x=1")]
    order = [7, 3, 18, 0, 12, 21, 5, 14, 9, 1, 16, 20, 11, 2, 13, 15, 4, 19, 6, 17, 10, 8]
    return [urls[i] for i in order]


def fields(d: Download) -> tuple:
    image = None if d.image is None else d.image.tobytes()
    return (d.url, d.status, d.error, d.sha256, d.phash, d.width, d.height, image, d.final_url, d.nbytes)


def split_fetch(items: list[object], known: ImageStore | None, config: DownloadConfig, chunk: int = 4):
    """The distributed path with in-process "workers": plan, chunked fetch with dedup off, merge."""
    plan = plan_batch(items, known, config)
    fetched: dict[int, Download] = {}
    with Downloader(DownloadConfig(**{**config.__dict__, "dedup": False})) as worker:
        for k in range(0, len(plan.todo), chunk):
            indices = plan.todo[k : k + chunk]
            for i, d in zip(indices, worker.fetch([plan.raws[i] for i in indices]).downloads, strict=True):
                fetched[i] = d
    return merge_batch(plan, fetched, known, config)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "spark"}, "ExecutorConfig.kind"),
        ({"download_workers": 0}, "download_workers"),
        ({"urls_per_task": True}, "urls_per_task"),
        ({"address": ""}, "address"),
        ({"worker_cpus": -1}, "worker_cpus"),
    ],
)
def test_bad_config_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExecutorConfig(**kwargs)


def test_split_fetch_equals_one_fetch_with_a_store(server, tmp_path):
    config = DownloadConfig(allowed_hosts=(server.hostport,), processes=0, total_timeout=5.0)
    items = corpus(server)
    with ImageStore(tmp_path / "a") as a, ImageStore(tmp_path / "b") as b, Downloader(config) as local:
        for store in (a, b):  # the same stored image in both: its URL and its bytes count as duplicate
            store.add_many(local.fetch([server.url("/img/7.png"), server.url("/same-a.png?v=2")]).downloads)
        expected = local.fetch(items, known=a)
        got = split_fetch(items, b, config)
    assert [fields(d) for d in got.downloads] == [fields(d) for d in expected.downloads]
    assert got.counts == expected.counts
    statuses = set(got.counts)
    assert {"ok", "duplicate", "invalid_url", "too_small", "http_error", "blocked_by_robots"} <= statuses
    errors = {d.error for d in got.downloads if d.status == "duplicate"}
    assert "URL already in the store" in errors and "same bytes as a stored image" in errors


def test_split_fetch_without_dedup_keeps_every_copy(server):
    config = DownloadConfig(allowed_hosts=(server.hostport,), processes=0, dedup=False)
    items = [server.url("/same-a.png"), server.url("/same-b.png"), server.url("/same-a.png")]
    got = split_fetch(items, None, config, chunk=1)
    assert got.counts == {"ok": 3}


def test_merge_sees_images_stored_after_the_plan(server, tmp_path):
    """A stream plans ahead; what the consumer stored meanwhile must still count as duplicate."""
    config = DownloadConfig(allowed_hosts=(server.hostport,), processes=0)
    first, second = [server.url("/img/30.png")], [server.url("/img/30.png"), server.url("/img/31.png")]
    with ImageStore(tmp_path / "s") as store, Downloader(config) as local:
        plan = plan_batch(second, store, config)  # planned before the first batch is stored
        assert plan.todo == [0, 1]
        store.add_many(local.fetch(first, known=store).downloads)
        fetched = dict(zip(plan.todo, local.fetch(second).downloads, strict=True))
        batch = merge_batch(plan, fetched, store, config)
    assert [(d.status, d.error) for d in batch.downloads] == [
        ("duplicate", "URL already in the store"),
        ("ok", None),
    ]


def test_a_missing_worker_outcome_is_an_internal_error(server):
    config = DownloadConfig(allowed_hosts=(server.hostport,), processes=0)
    plan = plan_batch([server.url("/img/1.png")], None, config)
    batch = merge_batch(plan, {}, None, config)
    assert batch.counts == {"internal_error": 1}


def test_local_executor_streams_in_order_and_searches_with_its_engine(server, tmp_path):
    class Engine:
        name = "fake"

        def search(self, query, n):
            from ie_env.search.base import SearchHit, SearchResult

            return SearchResult("fake", query, [SearchHit(server.url(f"/img/{len(query)}.png"))][:n])

    config = DownloadConfig(allowed_hosts=(server.hostport,), processes=0)
    with make_executor(ExecutorConfig(), config, Engine) as executor, ImageStore(tmp_path / "s") as store:
        assert isinstance(executor, LocalExecutor)
        results = executor.search_many(["ab", "abcd"], 5)
        assert [r.hits[0].url for r in results] == [server.url("/img/2.png"), server.url("/img/4.png")]
        lists = [[h.url for h in r.hits] for r in results] + [[server.url("/img/2.png")]]
        out = []
        for batch in executor.stream(lists, known=store):
            store.add_many(batch.downloads)
            out.append([d.status for d in batch.downloads])
    assert out == [["ok"], ["ok"], ["duplicate"]]
    assert executor.report.lost_workers == []


def test_local_executor_without_engine_refuses_to_search():
    with LocalExecutor() as executor, pytest.raises(RuntimeError, match="engine_factory"):
        executor.search("dog", 3)
