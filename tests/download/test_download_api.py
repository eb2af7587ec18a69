"""Downloader API: configuration, the sync wrapper's lifecycle, worker processes, guard units."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpcore
import imagehash
import numpy as np
import pytest
from hostile_server import HostileServer, encode, fake_resolver, loopback_guard, pattern_image
from PIL import Image

from ie_env.download import DownloadConfig, Downloader
from ie_env.download.decode import DecodeSpec, decode_image, phash
from ie_env.download.dedup import hamming
from ie_env.download.netguard import (
    AddressPolicy,
    BlockedAddressError,
    GuardedBackend,
    blocked_reason,
    parse_url,
)
from ie_env.download.politeness import rules_from_response, x_robots_opt_out
from ie_env.download.store import ImageStore


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


def cfg(server: HostileServer, **kw: object) -> DownloadConfig:
    return DownloadConfig(allowed_hosts=(server.hostport,), total_timeout=5.0, **kw)  # type: ignore[arg-type]


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 0}, "image_size"),
        ({"resize_mode": "stretch"}, "stretch"),
        ({"per_host": 64, "concurrency": 8}, "per_host"),
        ({"retries": -1}, "retries"),
        ({"phash_threshold": 65}, "phash_threshold"),
        ({"processes": -2}, "processes"),
        ({"allowed_hosts": "127.0.0.1"}, "allowed_hosts"),
        ({"allowed_hosts": ("http://127.0.0.1/",)}, "http://127.0.0.1/"),
        ({"formats": ("JPEG", "NOPE")}, "formats"),
        ({"total_timeout": 0}, "total_timeout"),
    ],
)
def test_config_validation_names_the_bad_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DownloadConfig(**kwargs)


# -- lifecycle -------------------------------------------------------------------------------------


def test_repeated_sync_fetches_reuse_loop_and_workers_and_close_cleans_up(server: HostileServer) -> None:
    threads_before = set(threading.enumerate())
    downloader = Downloader(cfg(server, processes=1))
    first = downloader.fetch([server.url("/img/900.png")])
    loop_thread = downloader._loop_thread
    session = downloader._session_obj
    assert session is not None and session.decoder.pool is not None
    pids = session.decoder.pool.pids()
    assert len(pids) == 1
    for i in range(3):
        batch = downloader.fetch([server.url(f"/img/{901 + i}.png")])
        assert batch.counts == {"ok": 1}
        assert downloader._loop_thread is loop_thread and downloader._session_obj is session
        assert session.decoder.pool.pids() == pids
    assert first.counts == {"ok": 1}
    downloader.close()
    downloader.close()  # idempotent
    assert not loop_thread.thread.is_alive() and loop_thread.loop.is_closed()
    deadline = time.monotonic() + 5
    while _alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids[0])
    leaked = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert leaked == [] or all(t.name.startswith("asyncio_") for t in leaked), leaked
    with pytest.raises(RuntimeError, match="closed"):
        downloader.fetch([server.url("/img/1.png")])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_decode_worker_is_replaced(server: HostileServer) -> None:
    with Downloader(cfg(server, processes=1)) as downloader:
        assert downloader.fetch([server.url("/img/910.png")]).counts == {"ok": 1}
        pool = downloader._session_obj.decoder.pool  # type: ignore[union-attr]
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        batch = downloader.fetch([server.url(f"/img/{911 + i}.png") for i in range(4)])
        assert batch.counts == {"ok": 4}
        assert pool.pids() and pool.pids() != [pid]


def test_async_api_and_sync_api_inside_a_running_loop(server: HostileServer) -> None:
    async def main() -> tuple[dict, dict]:
        async with Downloader(cfg(server, processes=0)) as downloader:
            batch = await downloader.fetch_async([server.url("/img/920.png"), server.url("/status/404")])
        with Downloader(cfg(server, processes=0)) as sync_downloader:  # sync call from a coroutine
            other = sync_downloader.fetch([server.url("/img/921.png")])
        return batch.counts, other.counts

    assert asyncio.run(main()) == ({"ok": 1, "http_error": 1}, {"ok": 1})


def test_known_store_skips_stored_urls_and_content(server: HostileServer, tmp_path: Path) -> None:
    with ImageStore(tmp_path) as store, Downloader(cfg(server, processes=0)) as downloader:
        urls = [server.url(f"/img/{930 + i}.png") for i in range(3)]
        first = downloader.fetch(urls, known=store)
        assert first.counts == {"ok": 3}
        store.add_many(first.downloads, iteration=0)
        mark = len(server.state.paths())
        again = downloader.fetch([*urls, server.url("/img/930.png?copy=1")], known=store)
        assert [d.status for d in again.downloads] == ["duplicate"] * 4
        # The stored URLs were not requested again; the copy was, and matched stored bytes.
        assert server.state.paths()[mark:] == ["/img/930.png?copy=1"]
        assert "stored" in (again.downloads[3].error or "")


# -- resize modes ----------------------------------------------------------------------------------


def test_resize_modes() -> None:
    data = encode(pattern_image(3, (200, 100)), "PNG")
    crop = decode_image(data, DecodeSpec(image_size=32, resize_mode="center_crop"))
    keep = decode_image(data, DecodeSpec(image_size=32, resize_mode="keep_ratio"))
    border = decode_image(data, DecodeSpec(image_size=32, resize_mode="border"))
    assert crop.image is not None and crop.image.shape == (32, 32, 3)
    assert keep.image is not None and keep.image.shape == (32, 64, 3)
    assert border.image is not None and border.image.shape == (32, 32, 3)
    assert (border.image[:7] == 255).all() and (border.image[-7:] == 255).all()  # white bands
    assert crop.phash == keep.phash == border.phash  # hashed before cropping


def test_jpeg_draft_decode_matches_full_decode() -> None:
    big = pattern_image(5, (1600, 1200))
    data = encode(big, "JPEG", quality=92)
    fast = decode_image(data, DecodeSpec(image_size=64))
    full = np.asarray(Image.open(__import__("io").BytesIO(data)).convert("RGB").crop((200, 0, 1400, 1200)))
    slow = np.asarray(Image.fromarray(full).resize((64, 64), Image.Resampling.LANCZOS)).astype(int)
    assert fast.image is not None
    assert np.abs(fast.image.astype(int) - slow).mean() < 6


def test_phash_is_imagehash_compatible() -> None:
    for seed in range(5):
        im = pattern_image(seed, (150, 110))
        assert phash(im) == int(str(imagehash.phash(im)), 16)
    assert hamming(np.array([0b1011, 0], dtype=np.uint64), 0b0001).tolist() == [2, 1]


# -- guard and politeness units --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00:ec2::254", True),
        ("::ffff:127.0.0.1", True),
        ("224.0.0.1", True),
    ],
)
def test_blocked_reason(address: str, blocked: bool) -> None:
    assert (blocked_reason(address) is not None) == blocked


def test_parse_url_normalises_host_and_port() -> None:
    parsed, error = parse_url("HTTP://Example.COM./a?b=1")
    assert error is None and parsed is not None
    assert (parsed.host, parsed.port) == ("example.com", 80)
    assert parse_url("https://x.test/")[0].port == 443  # type: ignore[union-attr]


def test_guarded_backend_refuses_before_connecting() -> None:
    policy = AddressPolicy(resolver=fake_resolver({"evil.test": ["10.9.8.7"]}))
    backend = GuardedBackend(policy)

    async def attempt(host: str) -> None:
        await backend.connect_tcp(host, 80, timeout=1)

    with loopback_guard() as guard:
        for host in ("evil.test", "169.254.169.254", "127.0.0.1"):
            with pytest.raises(BlockedAddressError):
                asyncio.run(attempt(host))
        with pytest.raises(httpcore.ConnectError, match="resolve"):
            asyncio.run(attempt("unknown.test"))
    assert guard.attempts == []


def test_allow_list_matches_host_and_port() -> None:
    policy = AddressPolicy(["127.0.0.1:8080", "localhost"])
    assert policy.is_allowed("127.0.0.1", 8080) and policy.is_allowed("LOCALHOST", 1)
    assert not policy.is_allowed("127.0.0.1", 8081) and not policy.is_allowed("127.0.0.2", 8080)


def test_x_robots_and_robots_rules() -> None:
    assert x_robots_opt_out(["noarchive", "NoAI"], "ie-env", ["noai"]) == "noai"
    assert x_robots_opt_out(["googlebot: noai"], "ie-env", ["noai"]) is None
    assert x_robots_opt_out(["IE-ENV: noimageai, nofollow"], "ie-env", ["noimageai"]) == "noimageai"
    assert rules_from_response(404, None).can_fetch("ie-env", "http://a/x")
    assert rules_from_response(403, None).can_fetch("ie-env", "http://a/x")
    assert not rules_from_response(503, None).can_fetch("ie-env", "http://a/x")
    assert not rules_from_response(None, None, "timeout").can_fetch("ie-env", "http://a/x")
    rules = rules_from_response(200, b"User-agent: ie-env\nDisallow: /no/\n\nUser-agent: *\nDisallow: /\n")
    assert rules.can_fetch("ie-env", "http://a/yes.png") and not rules.can_fetch(
        "ie-env", "http://a/no/x.png"
    )
    assert not rules.can_fetch("otherbot", "http://a/yes.png")


def test_deduplicator_exact_and_near_rules() -> None:
    from ie_env.download.dedup import Deduplicator

    seen = Deduplicator(threshold=4, pairs=[("a" * 64, 0)])
    assert len(seen) == 1
    assert not seen.admit("a" * 64, None)  # same bytes
    assert not seen.admit(None, 0b1111)  # 4 bits away: near
    assert seen.admit(None, 0b11111)  # 5 bits away: new, remembered
    assert seen.match("b" * 64, 0b11110).index == 1 and seen.match("b" * 64, 0b11110).distance == 1
    assert seen.is_duplicate("a" * 64, 2**64 - 1) and not seen.is_duplicate(None, None)
    assert len(seen) == 2
    with pytest.raises(ValueError, match="threshold"):
        Deduplicator(threshold=65)
