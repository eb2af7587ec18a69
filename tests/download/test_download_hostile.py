"""The downloader against a hostile server on 127.0.0.1: every bad input yields its status.

All tests run under ``loopback_guard``: any connection attempt outside 127.0.0.0/8 fails the test,
and SSRF tests additionally assert that the refused target saw no connection attempt at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from hostile_server import ConnectRecorder, HostileServer, fake_resolver, loopback_guard

from ie_env.download import DownloadConfig, Downloader
from ie_env.search.base import SearchHit

RESOLVER_TABLE = {
    "evil.test": ["10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["93.184.216.34", "192.168.1.1"],
    "v6private.test": ["fd00::1"],
    "mapped.test": ["::ffff:10.0.0.1"],
}


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


@pytest.fixture()
def guard() -> Iterator[ConnectRecorder]:
    with loopback_guard() as recorder:
        yield recorder
    assert recorder.violations == [], f"connections outside loopback were attempted: {recorder.violations}"


def config(server: HostileServer, **overrides: object) -> DownloadConfig:
    base: dict[str, object] = dict(
        allowed_hosts=(server.hostport,),
        processes=0,
        connect_timeout=2.0,
        read_timeout=2.0,
        total_timeout=2.0,
        max_bytes=1024 * 1024,
        backoff=0.05,
        retries=2,
    )
    base.update(overrides)
    return DownloadConfig(**base)  # type: ignore[arg-type]


@pytest.fixture()
def downloader(server: HostileServer, guard: ConnectRecorder) -> Iterator[Downloader]:
    with Downloader(config(server), resolver=fake_resolver(RESOLVER_TABLE)) as d:
        yield d


def one(downloader: Downloader, url: str):
    batch = downloader.fetch([url])
    assert len(batch.downloads) == 1
    return batch.downloads[0]


# -- good images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["png", "jpg", "gif", "bmp", "webp"])
def test_allowed_formats_decode_to_rgb_arrays(
    server: HostileServer, downloader: Downloader, ext: str
) -> None:
    d = one(downloader, server.url(f"/img/{100 + len(ext)}.{ext}"))
    assert d.status == "ok", d.error
    assert d.image is not None and d.image.shape == (64, 64, 3) and d.image.dtype == np.uint8
    assert (d.width, d.height) == (96, 80)
    assert len(d.sha256 or "") == 64 and isinstance(d.phash, int) and 0 <= d.phash < 2**64


def test_user_agent_identifies_the_crawler(server: HostileServer, downloader: Downloader) -> None:
    url = server.url("/img/77.png")
    assert one(downloader, url).ok
    agents = {ua for path, ua in server.state.log if path == "/img/77.png"}
    assert agents and all(ua.startswith("ie-env/") for ua in agents)


def test_search_hits_are_accepted_and_order_is_kept(server: HostileServer, downloader: Downloader) -> None:
    hits = [SearchHit(url=server.url(f"/img/{i}.png"), engine="test", rank=i) for i in range(200, 206)]
    hits.insert(3, SearchHit(url=server.url("/status/404")))
    batch = downloader.fetch(hits)
    assert [d.url for d in batch.downloads] == [h.url for h in hits]
    assert batch.counts == {"ok": 6, "http_error": 1}
    assert batch.images().shape == (6, 64, 64, 3)


def test_transparency_is_composited_onto_white(server: HostileServer, downloader: Downloader) -> None:
    d = one(downloader, server.url("/rgba.png"))
    assert d.ok, d.error
    assert d.image is not None
    assert (d.image[:, :24] == 255).all()  # transparent (black) half became white
    assert (d.image[:, 40:, 0] > 240).all() and (d.image[:, 40:, 1:] < 15).all()  # red stays red


def test_tiff_is_not_in_the_format_allow_list(server: HostileServer, downloader: Downloader) -> None:
    d = one(downloader, server.url("/img/5.tif"))
    assert d.status == "not_image" and d.image is None


# -- bad bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/bomb.png", "/bomb-warn.png", "/bomb-cap.png"])
def test_decompression_bombs_are_too_large(server: HostileServer, downloader: Downloader, path: str) -> None:
    d = one(downloader, server.url(path))
    assert d.status == "too_large", (d.status, d.error)
    assert d.image is None


@pytest.mark.parametrize("path", ["/truncated.jpg", "/truncated.png"])
def test_truncated_images_are_decode_errors(server: HostileServer, downloader: Downloader, path: str) -> None:
    d = one(downloader, server.url(path))
    assert d.status == "decode_error", (d.status, d.error)


def test_html_served_as_jpeg_is_not_an_image(server: HostileServer, downloader: Downloader) -> None:
    assert one(downloader, server.url("/html.jpg")).status == "not_image"


def test_html_content_type_is_refused_without_reading_the_body(
    server: HostileServer, downloader: Downloader
) -> None:
    d = one(downloader, server.url("/html"))
    assert d.status == "not_image" and "text/html" in (d.error or "")


def test_tiny_images_are_too_small(server: HostileServer, downloader: Downloader) -> None:
    assert one(downloader, server.url("/tiny.png")).status == "too_small"


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked", "/gzip-bomb"])
def test_byte_cap_stops_reading_and_memory_stays_bounded(
    server: HostileServer, downloader: Downloader, path: str
) -> None:
    d = one(downloader, server.url(path))
    assert d.status == "too_large", (d.status, d.error)
    time.sleep(0.2)  # let the server thread notice the closed connection
    # 100 MB offered; the client stopped after max_bytes (1 MiB) plus socket buffers.
    assert server.state.bytes_sent[path] < 24 * 1024 * 1024


def test_slow_drip_hits_the_total_timeout(server: HostileServer, downloader: Downloader) -> None:
    started = time.monotonic()
    d = one(downloader, server.url("/drip"))
    assert d.status == "timeout"
    assert time.monotonic() - started < 6


def test_connection_reset_is_a_network_error(server: HostileServer, downloader: Downloader) -> None:
    d = one(downloader, server.url("/reset"))
    assert d.status == "network_error", (d.status, d.error)


def test_run_continues_after_every_kind_of_failure(server: HostileServer, downloader: Downloader) -> None:
    bad = ["/reset", "/html.jpg", "/truncated.jpg", "/bomb.png", "/status/500", "/loop/0", "/huge"]
    urls = [server.url(p) for p in bad] + [server.url(f"/img/{i}.png") for i in range(300, 310)]
    batch = downloader.fetch(urls)
    assert batch.counts["ok"] == 10
    assert sum(batch.counts.values()) == len(urls)
    assert all(d.ok for d in batch.downloads[len(bad) :])


# -- redirects and SSRF ----------------------------------------------------------------------------


def test_redirect_is_followed(server: HostileServer, downloader: Downloader) -> None:
    target = server.url("/img/55.png")
    d = one(downloader, server.url(f"/redirect?to={target}"))
    assert d.ok and d.final_url == target and d.http_status == 200


def test_endless_redirect_chain_stops(server: HostileServer, downloader: Downloader) -> None:
    before = sum(1 for p in server.state.paths() if p.startswith("/loop/"))
    d = one(downloader, server.url("/loop/1000"))
    assert d.status == "too_many_redirects"
    after = sum(1 for p in server.state.paths() if p.startswith("/loop/"))
    assert after - before == downloader.config.max_redirects + 1


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://10.0.0.1/x.png", "10.0.0.1"),
        ("http://[fd00::1]/x.png", "fd00::1"),
        ("http://evil.test/x.png", "10.1.2.3"),
        ("http://metadata.test/latest/", "169.254.169.254"),
        ("http://mixed.test/x.png", "93.184.216.34"),
        ("http://mapped.test/x.png", "::ffff:10.0.0.1"),
    ],
)
def test_redirect_to_forbidden_address_is_refused_before_connecting(
    server: HostileServer, downloader: Downloader, guard: ConnectRecorder, target: str, host: str
) -> None:
    d = one(downloader, server.url(f"/redirect?to={target}"))
    assert d.status == "blocked_address", (d.status, d.error)
    assert not guard.attempted(host)
    assert guard.attempts, "the redirecting server itself should have been contacted"


def test_loopback_alias_not_on_allow_list_is_refused(
    server: HostileServer, downloader: Downloader, guard: ConnectRecorder
) -> None:
    target = f"http://127.0.0.2:{server.port}/img/1.png"
    d = one(downloader, server.url(f"/redirect?to={target}"))
    assert d.status == "blocked_address" and "loopback" in (d.error or "")
    assert not guard.attempted("127.0.0.2")
    # Directly, too; and the allowed host on another port is not allowed either.
    assert one(downloader, target).status == "blocked_address"
    assert one(downloader, f"http://127.0.0.1:{server.port + 1}/x.png").status == "blocked_address"
    assert not guard.attempted("127.0.0.2")


def test_direct_forbidden_urls_never_connect(
    server: HostileServer, downloader: Downloader, guard: ConnectRecorder
) -> None:
    urls = ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://evil.test/a.png"]
    batch = downloader.fetch(urls)
    assert batch.counts == {"blocked_address": 3}
    assert guard.attempts == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/image.png",
        "gopher://127.0.0.1/",
        "http://user:pw@127.0.0.1/x.png",
        "http://127.0.0.1/" + "a" * 10_000,
        b"http://127.0.0.1/\xff\xfe.png",
        "http://127.0.0.1/\udcff.png",
        "",
        "not a url",
    ],
)
def test_invalid_urls_are_refused_without_a_request(
    downloader: Downloader, guard: ConnectRecorder, url: object
) -> None:
    batch = downloader.fetch([url])
    assert batch.downloads[0].status == "invalid_url", batch.downloads[0]
    assert guard.attempts == []


def test_redirect_with_invalid_utf8_location(server: HostileServer, downloader: Downloader) -> None:
    d = one(downloader, server.url("/redirect-bad-utf8"))
    assert d.status == "invalid_url" and "UTF-8" in (d.error or "")


def test_redirect_to_file_scheme_is_refused(server: HostileServer, downloader: Downloader) -> None:
    assert one(downloader, server.url("/redirect?to=file:///etc/passwd")).status == "invalid_url"


# -- politeness ----------------------------------------------------------------------------------


def test_robots_txt_is_fetched_once_and_honoured(server: HostileServer, downloader: Downloader) -> None:
    start = len(server.state.paths())
    urls = [server.url(f"/private/{i}.png") for i in range(3)] + [server.url("/img/60.png")]
    batch = downloader.fetch(urls)
    assert batch.counts == {"blocked_by_robots": 3, "ok": 1}
    assert downloader.fetch([server.url("/img/61.png")]).counts == {"ok": 1}
    paths = server.state.paths()[start:]
    assert not any(p.startswith("/private/") for p in paths)
    assert paths.count("/robots.txt") == 1
    assert paths.index("/robots.txt") < paths.index("/img/60.png")


def test_robots_can_be_ignored_by_configuration(server: HostileServer, guard: ConnectRecorder) -> None:
    with Downloader(config(server, respect_robots=False)) as d:
        assert d.fetch([server.url("/private/9.png")]).counts == {"ok": 1}


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("noai", "opted_out"),
        ("noindex, nofollow", "opted_out"),
        ("NoImageAI", "opted_out"),
        ("ie-env: noimageindex", "opted_out"),
        ("otherbot: noai", "ok"),
        ("nofollow", "ok"),
    ],
)
def test_x_robots_tag_opt_out(server: HostileServer, downloader: Downloader, value: str, status: str) -> None:
    from urllib.parse import quote

    d = one(downloader, server.url("/xrobots/" + quote(value, safe="")))
    assert d.status == status, (value, d.status, d.error)


def test_x_robots_tag_can_be_ignored(server: HostileServer, guard: ConnectRecorder) -> None:
    with Downloader(config(server, respect_x_robots_tag=False)) as d:
        assert d.fetch([server.url("/xrobots/noai")]).counts == {"ok": 1}


def test_429_is_retried_after_retry_after(server: HostileServer, downloader: Downloader) -> None:
    started = time.monotonic()
    d = one(downloader, server.url("/flaky/31.png?ra=0.4"))
    assert d.ok, d.error
    assert time.monotonic() - started >= 0.4
    assert server.state.hits["/flaky/31.png?ra=0.4"] == 2


def test_5xx_retries_are_bounded_and_4xx_not_retried(server: HostileServer, downloader: Downloader) -> None:
    batch = downloader.fetch([server.url("/status/503?k=bounded"), server.url("/status/404?k=bounded")])
    assert [d.status for d in batch.downloads] == ["http_error", "http_error"]
    assert [d.http_status for d in batch.downloads] == [503, 404]
    assert server.state.hits["/status/503?k=bounded"] == 1 + downloader.config.retries
    assert server.state.hits["/status/404?k=bounded"] == 1


def test_too_long_retry_after_gives_up_at_once(server: HostileServer, downloader: Downloader) -> None:
    started = time.monotonic()
    d = one(downloader, server.url("/status/429?retry_after=3600"))
    assert d.status == "http_error" and "Retry-After" in (d.error or "")
    assert time.monotonic() - started < 2
    assert server.state.hits["/status/429?retry_after=3600"] == 1


def test_per_host_concurrency_cap(server: HostileServer, guard: ConnectRecorder) -> None:
    with Downloader(config(server, per_host=3, concurrency=16)) as d:
        server.state.max_in_flight = 0
        batch = d.fetch([server.url(f"/slow/{i}.png?s=0.1") for i in range(400, 415)])
    assert batch.counts == {"ok": 15}
    assert server.state.max_in_flight == 3


# -- dedup ----------------------------------------------------------------------------------------


def test_exact_and_near_duplicates_within_a_batch(server: HostileServer, downloader: Downloader) -> None:
    urls = [
        server.url("/near.jpg"),
        server.url("/same-a.png"),
        server.url("/same-b.png"),
        server.url("/same-a.png"),
    ]
    batch = downloader.fetch(urls)
    statuses = [d.status for d in batch.downloads]
    assert statuses == ["ok", "duplicate", "duplicate", "duplicate"], [d.error for d in batch.downloads]
    a, b = batch.downloads[1], batch.downloads[2]
    assert a.sha256 == b.sha256 and "near-duplicate" in (a.error or "")
    assert batch.downloads[3].error == "same URL as item 1"


def test_first_in_input_order_keeps_exact_duplicates(server: HostileServer, guard: ConnectRecorder) -> None:
    with Downloader(config(server, phash_threshold=0)) as d:
        batch = d.fetch([server.url("/same-b.png"), server.url("/same-a.png")])
    assert [x.status for x in batch.downloads] == ["ok", "duplicate"]
    assert batch.downloads[0].url.endswith("/same-b.png") and batch.downloads[0].image is not None


def test_dedup_can_be_switched_off(server: HostileServer, guard: ConnectRecorder) -> None:
    with Downloader(config(server, dedup=False)) as d:
        batch = d.fetch([server.url("/same-a.png"), server.url("/same-b.png"), server.url("/same-a.png")])
    assert batch.counts == {"ok": 3}
