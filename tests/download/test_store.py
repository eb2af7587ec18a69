"""ImageStore: content addressing, metadata, dedup, repair after a crash (real files, real SQLite)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hostile_server import encode, pattern_image

from ie_env.download import Download
from ie_env.download.decode import DecodeSpec, decode_image
from ie_env.download.store import ImageStore


def make_download(seed: int, url: str | None = None, status: str = "ok") -> Download:
    data = encode(pattern_image(seed, (120, 100)), "PNG")
    decoded = decode_image(data, DecodeSpec(image_size=32))
    import hashlib

    return Download(
        url or f"http://127.0.0.1:1/img/{seed}.png",
        status,
        None,
        hashlib.sha256(data).hexdigest(),
        decoded.phash,
        decoded.width,
        decoded.height,
        decoded.image if status == "ok" else None,
        nbytes=len(data),
    )


def test_add_writes_content_addressed_file_and_row(tmp_path: Path) -> None:
    with ImageStore(tmp_path) as store:
        d = make_download(1)
        rec = store.add(d, query="owl", concept_id=7, engine="web", license="cc0", iteration=3)
        assert rec is not None
        assert rec.path == f"images/{d.sha256[:2]}/{d.sha256}.png"
        assert (tmp_path / rec.path).is_file()
        assert store.count() == 1 and store.has_url(d.url) and store.has_sha256(d.sha256 or "")
        got = store.get(rec.id)
        assert (got.query, got.concept_id, got.engine, got.license, got.iteration) == (
            "owl",
            7,
            "web",
            "cc0",
            3,
        )
        assert got.phash == d.phash and got.width == 120 and got.height == 100
        images = store.load_images([rec.id])
        assert images.shape == (1, 32, 32, 3)
        np.testing.assert_array_equal(images[0], d.image)  # PNG is lossless
    db = sqlite3.connect(tmp_path / "meta.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_duplicates_are_refused(tmp_path: Path) -> None:
    with ImageStore(tmp_path) as store:
        first = make_download(2)
        assert store.add(first) is not None
        assert store.add(make_download(2, url="http://127.0.0.1:1/other.png")) is None  # same bytes
        assert store.add(first) is None  # same URL
        near = Download(
            "http://127.0.0.1:1/near.png", "ok", None, "f" * 64, first.phash ^ 0b101, 1, 1, first.image
        )
        assert store.add(near) is None  # phash within the threshold
        assert store.near_duplicate(first.phash ^ 0b11) is not None
        assert store.near_duplicate(first.phash ^ 0xFFFF) is None
        assert store.count() == 1
        assert store.has_url("http://127.0.0.1:1/near.png")  # remembered: not fetched again


def test_final_failures_are_remembered_transient_ones_are_not(tmp_path: Path) -> None:
    with ImageStore(tmp_path) as store:
        gone = Download("http://127.0.0.1:1/404", "http_error", "HTTP 404", http_status=404)
        busy = Download("http://127.0.0.1:1/503", "http_error", "HTTP 503", http_status=503)
        slow = Download("http://127.0.0.1:1/slow", "timeout", "timeout")
        junk = Download("http://127.0.0.1:1/junk", "not_image", "html")
        assert store.add_many([gone, busy, slow, junk]) == [None] * 4
        assert [store.has_url(d.url) for d in (gone, busy, slow, junk)] == [True, False, False, True]
        assert store.count() == 0


def test_add_many_batch_metadata_and_updates(tmp_path: Path) -> None:
    with ImageStore(tmp_path) as store:
        downloads = [make_download(10 + i) for i in range(5)]
        records = store.add_many(
            downloads, iteration=1, engine="web", metas=[{"query": f"q{i}"} for i in range(5)]
        )
        ids = [r.id for r in records if r is not None]
        assert len(ids) == 5
        store.set_reward(ids, [0.1, 0.2, 0.3, 0.4, 0.5])
        store.set_in_buffer(ids[:2])
        assert [r.reward for r in store.records(iteration=1)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
        assert [r.id for r in store.records(in_buffer=True)] == ids[:2]
        assert store.records(iteration=2) == []
        assert {r.query for r in store.records()} == {f"q{i}" for i in range(5)}
        assert store.load_images(ids[::-1]).shape == (5, 32, 32, 3)
        with pytest.raises(KeyError):
            store.load_images([9999])
        with pytest.raises(ValueError, match="rewards"):
            store.set_reward(ids, [1.0])


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    with ImageStore(tmp_path) as store:
        rec = store.add(make_download(20))
        assert rec is not None
    with ImageStore(tmp_path) as store:
        assert store.repair_report.clean
        assert store.count() == 1 and store.get(rec.id).sha256 == rec.sha256
        assert store.near_duplicate(rec.phash) == rec.id


def test_open_repairs_what_a_crash_leaves(tmp_path: Path) -> None:
    with ImageStore(tmp_path) as store:
        kept, lost = (store.add(make_download(30 + i)) for i in range(2))
        assert kept is not None and lost is not None
    (tmp_path / lost.path).unlink()  # row without file
    half = tmp_path / "images" / "ab" / ("ab" + "0" * 62 + ".png.123.456.tmp")
    half.parent.mkdir(exist_ok=True)
    half.write_bytes(b"\x89PNG half")  # killed while writing
    orphan = tmp_path / "images" / "cd" / ("cd" + "1" * 62 + ".png")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"renamed, row never committed")
    with ImageStore(tmp_path) as store:
        report = store.repair_report
        assert (report.temp_files_removed, report.orphan_files_removed, report.rows_without_file_removed) == (
            1,
            1,
            1,
        )
        assert store.count() == 1 and store.get(kept.id).url == kept.url
        assert not store.has_url(lost.url)  # will be downloaded again
        assert store.add(make_download(31)) is not None  # and can be stored again
        assert not half.exists() and not orphan.exists()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_format"):
        ImageStore(tmp_path, image_format="tiff")
    with pytest.raises(ValueError, match="phash_threshold"):
        ImageStore(tmp_path, phash_threshold=65)
    with ImageStore(tmp_path) as store, pytest.raises(ValueError, match="unknown metadata"):
        store.add_many([make_download(40)], colour="red")
