"""The downloader's memory stays bounded for any input (issue 13): status AND measured peak RSS.

Each case runs in a fresh process (``memory_probe``) that fetches from a loopback server this module
starts, or decodes a file, and reports the peak RSS above its RSS just before the call. Bounds:
a transfer costs at most a few ``max_bytes``; a decode at most ``DECODE_MEMORY_FACTOR x max_pixels``,
each plus a fixed allowance for allocator slack.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import hostile_server as hs
import pytest
from hostile_server import HostileServer, encode, pattern_image
from memory_probe import run_probe
from PIL import Image

from ie_env.download.decode import DECODE_MEMORY_FACTOR

MAX_PIXELS = 8 * 1024 * 1024  # a smaller cap than the default keeps the images quick to make
MAX_BYTES = 2 * 1024 * 1024
SLACK = 16 * 1024 * 1024  # allocator and interpreter noise, independent of the input
TRANSFER_BOUND = 4 * MAX_BYTES + SLACK
DECODE_BOUND = DECODE_MEMORY_FACTOR * MAX_PIXELS + SLACK
MiB = 2**20


@pytest.fixture(scope="module")
def near_cap_images() -> dict[str, bytes]:
    side = hs.near_cap_side(MAX_PIXELS)
    return {
        "grey16.png": hs.png_16bit_grey(side, side),
        "grey16.tif": hs.tiff_16bit_grey(side, side),
        "bilevel.png": hs.png_1bit(side, side),
        "palette.png": hs.png_palette(side, side),
        "thin-rgba.png": hs.png_thin_rgba(MAX_PIXELS // 200, 200),
    }


@pytest.fixture(scope="module")
def server(near_cap_images: dict[str, bytes]) -> Iterator[HostileServer]:
    with HostileServer() as srv:
        for name, body in near_cap_images.items():
            ctype = "image/tiff" if name.endswith(".tif") else "image/png"
            srv.state.files[name] = (body, ctype, {})
        yield srv


def fetch_config(server: HostileServer, **overrides: object) -> dict[str, object]:
    return {
        "allowed_hosts": [server.hostport],
        "processes": 0,  # the env's setting: decodes land in this process
        "max_bytes": MAX_BYTES,
        "max_pixels": MAX_PIXELS,
        "total_timeout": 20.0,
        "respect_robots": False,
        **overrides,
    }


def probe_fetch(server: HostileServer, paths: list[str], **overrides: object) -> dict[str, dict]:
    job = {
        "kind": "fetch",
        "config": fetch_config(server, **overrides),
        "warmup": server.url("/img/1.png"),
        "urls": [server.url(p) for p in paths],
    }
    return {r["url"].split(str(server.port), 1)[1]: r for r in run_probe(job)}


def test_compressed_bodies_are_capped_while_decompressing(server: HostileServer) -> None:
    results = probe_fetch(
        server, ["/gzip-bomb", "/bigger-decoded", "/gzip-gzip", "/gzip-gzip-lines", "/encoding/br"]
    )
    expected = {
        "/gzip-bomb": "too_large",  # 50 MiB of zeros in about 50 KB
        "/bigger-decoded": "too_large",  # 3 MiB after decoding, max_bytes 2 MiB
        "/gzip-gzip": "bad_encoding",  # stacked: refused before reading the body
        "/gzip-gzip-lines": "bad_encoding",
        "/encoding/br": "bad_encoding",  # unknown to this client
    }
    for path, status in expected.items():
        r = results[path]
        assert r["status"] == status, (path, r)
        assert r["extra"] < TRANSFER_BOUND, f"{path}: {r['extra'] / MiB:.1f} MiB"
    assert "stacked" in results["/gzip-gzip"]["error"] and "stacked" in results["/gzip-gzip-lines"]["error"]


def test_deflate_bomb_and_an_encoding_not_asked_for(server: HostileServer) -> None:
    asked_deflate = probe_fetch(server, ["/deflate-bomb", "/encoding/deflate"], accept_encoding="deflate")
    assert asked_deflate["/deflate-bomb"]["status"] == "too_large"
    assert asked_deflate["/encoding/deflate"]["status"] == "ok"  # a well-formed deflate image decodes
    asked_gzip = probe_fetch(server, ["/deflate-bomb", "/encoding/gzip"])
    assert asked_gzip["/deflate-bomb"]["status"] == "bad_encoding"  # deflate was not asked for
    assert "not asked for" in asked_gzip["/deflate-bomb"]["error"]
    assert asked_gzip["/encoding/gzip"]["status"] == "ok"
    identity = probe_fetch(server, ["/encoding/gzip"], accept_encoding="identity")
    assert identity["/encoding/gzip"]["status"] == "bad_encoding"
    for r in [*asked_deflate.values(), *asked_gzip.values(), *identity.values()]:
        assert r["extra"] < TRANSFER_BOUND, f"{r['url']}: {r['extra'] / MiB:.1f} MiB"


def test_near_cap_images_decode_within_the_bound(server: HostileServer) -> None:
    names = ["grey16.png", "bilevel.png", "palette.png", "thin-rgba.png", "grey16.tif"]
    results = probe_fetch(server, [f"/file/{n}" for n in names], max_bytes=8 * MiB)
    for name in names[:4]:
        r = results[f"/file/{name}"]
        assert r["status"] == "ok", (name, r)
        assert r["extra"] < DECODE_BOUND, f"{name}: {r['extra'] / MiB:.1f} MiB"
    assert results["/file/grey16.tif"]["status"] == "not_image"  # TIFF is not on the allow-list
    # High bit depths are converted in float32 strips: far below the old float64 full-size copies.
    assert results["/file/grey16.png"]["extra"] < 6 * MAX_PIXELS + SLACK


def test_tiff_near_the_cap_when_allowed(near_cap_images: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "grey16.tif"
    path.write_bytes(near_cap_images["grey16.tif"])
    spec = {"max_pixels": MAX_PIXELS, "formats": ["TIFF", "PNG"]}
    (r,) = run_probe({"kind": "decode", "spec": spec, "paths": [str(path)]})
    assert r["status"] == "ok", r
    assert r["extra"] < 6 * MAX_PIXELS + SLACK, f"{r['extra'] / MiB:.1f} MiB"


def _fuzz_bases(tmp_path: Path) -> list[str]:
    paths = []
    for fmt, params in [("PNG", {}), ("JPEG", {"quality": 85}), ("GIF", {}), ("WEBP", {"quality": 80})]:
        image = pattern_image(len(fmt), (160, 120))
        path = tmp_path / f"base.{fmt.lower()}"
        path.write_bytes(encode(image, fmt, **params))
        paths.append(str(path))
    palette = io.BytesIO()
    pattern_image(11, (128, 128)).convert("P").save(palette, "PNG", transparency=3)
    (tmp_path / "base-p.png").write_bytes(palette.getvalue())
    paths.append(str(tmp_path / "base-p.png"))
    Image.open(paths[0]).verify()
    return paths


def _fuzz(tmp_path: Path, cases: int, seed: int) -> None:
    spec = {"max_pixels": MAX_PIXELS, "image_size": 64}
    answer = run_probe(
        {"kind": "fuzz", "spec": spec, "paths": _fuzz_bases(tmp_path), "cases": cases, "seed": seed},
        timeout=600,
    )
    assert answer["raised"] == []
    assert sum(answer["statuses"].values()) == cases
    assert set(answer["statuses"]) <= {"ok", "decode_error", "not_image", "too_large", "too_small"}
    assert answer["statuses"].get("ok", 0) > 0 and answer["statuses"].get("decode_error", 0) > 0
    assert answer["max_extra"] < DECODE_BOUND, f"{answer['max_extra'] / MiB:.1f} MiB"


def test_decode_fuzz_never_raises_and_stays_bounded(tmp_path: Path) -> None:
    _fuzz(tmp_path, cases=300, seed=13)


@pytest.mark.slow
def test_decode_fuzz_long(tmp_path: Path) -> None:
    _fuzz(tmp_path, cases=5000, seed=1313)
