"""ImageStore: content-addressed image files plus SQLite (WAL) metadata; crash-safe and resumable.

Layout under ``root``::

    images/ab/ab12...ef.png   one file per image, named by the sha256 of the downloaded bytes
    meta.sqlite               tables ``images`` (one row per stored image) and ``urls`` (every
                              URL with a final outcome, so nothing is fetched twice)

Write order for each batch: encode, write temp files, fsync them, rename, fsync the directories,
then insert the rows in one transaction. A process killed at any point leaves either a complete
image with its row, or an orphan (temp file or renamed file without a row). Opening the store
removes temp and orphan files and deletes rows whose file is missing, so a restarted run refetches
exactly the URLs whose image was lost, and never one that is stored.
"""

from __future__ import annotations

import io
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ie_env.download.dedup import PHASH_BITS, PHASH_THRESHOLD, Deduplicator
from ie_env.download.results import Download
from ie_env.download.storeschema import COLUMNS, SCHEMA, ImageRecord, RepairReport, signed, unsigned
from ie_env.validate import check_choice, check_int

IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}
# Outcomes that will not change on a retry: such URLs are remembered and not fetched again.
FINAL_STATUSES = frozenset(
    {"ok", "duplicate", "not_image", "decode_error", "too_small", "too_large", "opted_out", "invalid_url"}
)
FINAL_HTTP_CODES = frozenset({400, 401, 403, 404, 405, 410, 451})
META_FIELDS = ("query", "concept_id", "engine", "license", "iteration")


class ImageStore:
    """Content-addressed image files and their metadata.

    Dedup follows :class:`~ie_env.download.dedup.Deduplicator` (exact sha256 or phash within
    ``phash_threshold``), against stored images and within each batch. Implements the downloader's
    :class:`~ie_env.download.dedup.DedupIndex` (``has_url``, ``has_sha256``, ``near_duplicate``),
    so ``downloader.fetch(hits, known=store)`` skips stored URLs and drops stored content.

    Args:
        root: directory of the store (created).
        phash_threshold: Hamming distance at or below which an image counts as already stored.
        image_format: ``png`` (lossless, default) or ``jpg`` for the stored files.
        fsync_threads: threads that write and fsync files in parallel.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        phash_threshold: int = PHASH_THRESHOLD,
        image_format: str = "png",
        fsync_threads: int = 8,
    ) -> None:
        check_choice(self, "image_format", sorted(IMAGE_FORMATS), value=image_format)
        check_int(self, "phash_threshold", 0, PHASH_BITS, value=phash_threshold)
        self._dedup = Deduplicator(phash_threshold)
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.phash_threshold = phash_threshold
        self.image_format = image_format
        self._fsync_threads = max(1, fsync_threads)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / "meta.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)
        self.repair_report = self._repair()
        rows = self._db.execute("SELECT id, sha256, phash FROM images ORDER BY id").fetchall()
        self._ids = [int(r[0]) for r in rows]  # image id of each Deduplicator entry
        for _, sha256, phash in rows:
            self._dedup.add(sha256, unsigned(phash))

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repair(self) -> RepairReport:
        temp = 0
        on_disk: set[str] = set()
        for sub in self.images_dir.iterdir():
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub):
                if entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
                    temp += 1
                else:
                    on_disk.add(f"images/{sub.name}/{entry.name}")
        rows = self._db.execute("SELECT id, path FROM images").fetchall()
        missing = [row_id for row_id, path in rows if path not in on_disk]
        known = {path for _, path in rows}
        orphans = on_disk - known
        for path in orphans:
            (self.root / path).unlink(missing_ok=True)
        if missing:
            with self._transaction():
                self._db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in missing])
                self._db.executemany("DELETE FROM urls WHERE image_id = ?", [(i,) for i in missing])
        return RepairReport(temp, len(orphans), len(missing))

    def _transaction(self) -> Any:
        store = self

        class _Tx:
            def __enter__(self) -> None:
                store._db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type: object, *rest: object) -> None:
                store._db.execute("COMMIT" if exc_type is None else "ROLLBACK")

        return _Tx()

    # -- dedup index -------------------------------------------------------------------------

    def has_url(self, url: str) -> bool:
        """True if ``url`` is stored or had a final outcome (404, not an image, duplicate, ...)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM urls WHERE url = ?", (url,)).fetchone() is not None

    def has_sha256(self, sha256: str) -> bool:
        """Return whether an image with these exact bytes is stored."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM images WHERE sha256 = ?", (sha256,)).fetchone() is not None

    def near_duplicate(self, phash: int) -> int | None:
        """Return the id of a stored image within ``phash_threshold`` bits of ``phash``, or None."""
        with self._lock:
            match = self._dedup.match(None, phash)
            return None if match is None else self._ids[match.index]

    # -- writing -----------------------------------------------------------------------------

    def add(
        self,
        download: Download,
        *,
        query: str | None = None,
        concept_id: int | None = None,
        engine: str | None = None,
        license: str | None = None,
        iteration: int | None = None,
    ) -> ImageRecord | None:
        """Store one ``ok`` download; None if it is not ``ok`` or is a (near-)duplicate."""
        meta = {"query": query, "concept_id": concept_id, "engine": engine, "license": license}
        return self.add_many([download], iteration=iteration, metas=[meta])[0]

    def add_many(
        self,
        downloads: Sequence[Download],
        *,
        iteration: int | None = None,
        metas: Sequence[Mapping[str, Any]] | None = None,
        **common: Any,
    ) -> list[ImageRecord | None]:
        """Store a batch crash-safely; one record (or None for skipped ones) per download.

        Args:
            downloads: outcomes from the downloader, any status (non-``ok`` final outcomes are
                remembered so their URLs are not fetched again).
            iteration: explore iteration the batch belongs to.
            metas: per-download ``query`` / ``concept_id`` / ``engine`` / ``license`` (override ``common``).
            common: the same keys, for the whole batch.
        """
        unknown = set(common) - set(META_FIELDS)
        if unknown:
            raise ValueError(f"unknown metadata fields {sorted(unknown)}; use {META_FIELDS}")
        if metas is not None and len(metas) != len(downloads):
            raise ValueError(f"metas has {len(metas)} entries for {len(downloads)} downloads")
        now = time.time()
        with self._lock:
            url_rows, chosen = self._select(downloads, metas, common, iteration, now)
            paths = self._write_files([d for _, d, _ in chosen])
            records: list[ImageRecord | None] = [None] * len(downloads)
            with self._transaction():
                for (i, d, meta), path in zip(chosen, paths, strict=True):
                    records[i] = self._insert(d, meta, path, now)
                    url_rows.append((d.url, "ok", d.sha256, records[i].id, meta["iteration"], now))
                self._db.executemany(
                    "INSERT OR REPLACE INTO urls (url, status, sha256, image_id, iteration, at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    url_rows,
                )
            for record in records:
                if record is not None:
                    self._dedup.add(record.sha256, record.phash)
                    self._ids.append(record.id)
            return records

    def _select(
        self,
        downloads: Sequence[Download],
        metas: Sequence[Mapping[str, Any]] | None,
        common: Mapping[str, Any],
        iteration: int | None,
        now: float,
    ) -> tuple[list[tuple], list[tuple[int, Download, dict[str, Any]]]]:
        """Split a batch into URL rows to remember (final failures, duplicates) and new images to store."""
        url_rows: list[tuple] = []
        chosen: list[tuple[int, Download, dict[str, Any]]] = []
        batch_urls: set[str] = set()
        batch = Deduplicator(self.phash_threshold)
        for i, d in enumerate(downloads):
            meta = {**common, **(metas[i] if metas is not None else {})}
            meta.setdefault("iteration", iteration)
            if d.url in batch_urls or self.has_url(d.url):
                continue
            if not d.ok or d.image is None or d.sha256 is None or d.phash is None:
                if d.status in FINAL_STATUSES or (
                    d.status == "http_error" and d.http_status in FINAL_HTTP_CODES
                ):
                    url_rows.append((d.url, d.status, d.sha256, None, meta["iteration"], now))
                    batch_urls.add(d.url)
                continue
            batch_urls.add(d.url)
            if self._dedup.is_duplicate(d.sha256, d.phash) or not batch.admit(d.sha256, d.phash):
                url_rows.append((d.url, "duplicate", d.sha256, None, meta["iteration"], now))
                continue
            chosen.append((i, d, meta))
        return url_rows, chosen

    def _insert(self, d: Download, meta: Mapping[str, Any], path: str, now: float) -> ImageRecord:
        """Insert one new image's row (inside the caller's transaction) and return its record."""
        cursor = self._db.execute(
            "INSERT INTO images (url, sha256, phash, path, width, height, nbytes, query,"
            " concept_id, engine, license, iteration, in_buffer, added_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (
                d.url, d.sha256, signed(d.phash), path, d.width, d.height, d.nbytes,
                meta.get("query"), meta.get("concept_id"), meta.get("engine"),
                meta.get("license"), meta["iteration"], now,
            ),
        )  # fmt: skip
        return ImageRecord(
            int(cursor.lastrowid or 0), d.url, d.sha256, d.phash, path, d.width, d.height, d.nbytes,
            meta.get("query"), meta.get("concept_id"), meta.get("engine"), meta.get("license"),
            meta["iteration"], None, False, now,
        )  # fmt: skip

    def _write_files(self, downloads: Sequence[Download]) -> list[str]:
        """Encode, write and fsync each image to a temp file, rename, fsync directories."""
        if not downloads:
            return []
        ext = self.image_format
        finals = [f"images/{d.sha256[:2]}/{d.sha256}.{ext}" for d in downloads if d.sha256]

        def write(item: tuple[Download, str]) -> Path:
            d, rel = item
            final = self.root / rel
            final.parent.mkdir(exist_ok=True)
            tmp = final.with_name(f"{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            buffer = io.BytesIO()
            image = Image.fromarray(np.asarray(d.image, dtype=np.uint8), "RGB")
            if ext == "png":
                image.save(buffer, format="PNG", compress_level=1)
            else:
                image.save(buffer, format="JPEG", quality=95)
            with open(tmp, "wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
            return tmp

        with ThreadPoolExecutor(min(self._fsync_threads, len(downloads))) as pool:
            temps = list(pool.map(write, zip(downloads, finals, strict=True)))
        for tmp, rel in zip(temps, finals, strict=True):
            os.replace(tmp, self.root / rel)
        for directory in {(self.root / rel).parent for rel in finals}:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return finals

    # -- reading and updating ----------------------------------------------------------------

    def count(self) -> int:
        """Return the number of stored images."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def __len__(self) -> int:
        return self.count()

    def get(self, image_id: int) -> ImageRecord:
        """Return the record of ``image_id`` (``KeyError`` if there is none)."""
        with self._lock:
            row = self._db.execute(f"SELECT {COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise KeyError(f"no image with id {image_id}")
        return ImageRecord.from_row(row)

    def records(
        self,
        iteration: int | None = None,
        in_buffer: bool | None = None,
        ids: Iterable[int] | None = None,
    ) -> list[ImageRecord]:
        """Records matching all given filters, ordered by id."""
        clauses: list[str] = []
        params: list[Any] = []
        if iteration is not None:
            clauses.append("iteration = ?")
            params.append(iteration)
        if in_buffer is not None:
            clauses.append("in_buffer = ?")
            params.append(int(in_buffer))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM images{where} ORDER BY id", params).fetchall()
        records = [ImageRecord.from_row(r) for r in rows]
        if ids is not None:
            wanted = set(ids)
            records = [r for r in records if r.id in wanted]
        return records

    def path(self, record: ImageRecord) -> Path:
        """Return the absolute path of the record's image file."""
        return self.root / record.path

    def load_images(self, ids: Sequence[int]) -> np.ndarray:
        """Images as uint8 (n, H, W, 3) in the order of ``ids`` (all must have the same size)."""
        ids = [int(i) for i in ids]
        rows: dict[int, str] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows.update(self._db.execute(f"SELECT id, path FROM images WHERE id IN ({marks})", chunk))
        missing = [i for i in ids if i not in rows]
        if missing:
            raise KeyError(f"no images with ids {missing[:10]}")
        arrays = []
        for i in ids:
            with Image.open(self.root / rows[i]) as im:
                arrays.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        if not arrays:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8)
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"images have different shapes {sorted(shapes)[:4]}; load them one by one")
        return np.stack(arrays)

    def set_reward(self, ids: Sequence[int], rewards: Sequence[float]) -> None:
        """Record the reward of each image."""
        if len(ids) != len(rewards):
            raise ValueError(f"{len(ids)} ids but {len(rewards)} rewards")
        with self._lock, self._transaction():
            self._db.executemany(
                "UPDATE images SET reward = ? WHERE id = ?",
                [(float(r), int(i)) for i, r in zip(ids, rewards, strict=True)],
            )

    def set_in_buffer(self, ids: Iterable[int], flag: bool = True) -> None:
        """Mark images as in (or out of) the replay buffer."""
        with self._lock, self._transaction():
            self._db.executemany(
                "UPDATE images SET in_buffer = ? WHERE id = ?", [(int(flag), int(i)) for i in ids]
            )
