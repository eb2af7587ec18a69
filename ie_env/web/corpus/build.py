"""Building one source into a corpus part: decoded, bounded PNGs back to back plus a metadata table.

A part lives in ``parts/<source>-<key>/`` under the web cache dir: ``meta.sqlite`` (one row per image:
id, site, category, caption, title, tags, ...), ``images.bin`` (the images as RGB PNGs, longest side
<= ``max_side``, back to back) and ``build.json`` (counts, skipped files by reason, build seconds).
``<key>`` hashes the source's input fingerprint and the build config, so a part is rebuilt only when its
inputs change. Parts are built in a temporary folder and renamed into place, so a killed build leaves
nothing half-written behind.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ie_env.paths import cache_subdir
from ie_env.validate import check_int
from ie_env.web import sources as src
from ie_env.web.corpus.process import process_payload

# Bump when the image processing or any source's captions/metadata change: every part is then rebuilt.
BUILD_VERSION = 2


@dataclass(frozen=True)
class BuildConfig:
    """How source images are turned into corpus images.

    Attributes:
        max_side: longest side of a stored image, in pixels (smaller images are kept as they are).
        max_pixels: images with more pixels than this are skipped as "huge" (Pillow's bomb check stays on).
        min_side: images whose longest side is below this are skipped as "tiny".
        workers: processes decoding files (None: the number of CPUs, at most 4).
        png_compress_level: zlib level of the stored PNGs.
    """

    max_side: int = 128
    max_pixels: int = 40_000_000
    min_side: int = 8
    workers: int | None = None
    png_compress_level: int = 6

    def __post_init__(self) -> None:
        check_int(self, "max_side", 16, 1024)
        check_int(self, "max_pixels", 1)
        check_int(self, "min_side", 1)
        check_int(self, "workers", 1, optional=True)
        check_int(self, "png_compress_level", 0, 9)

    def key_fields(self) -> dict:
        """Return the fields that change the stored images (all but ``workers``): part of the part key."""
        fields = asdict(self)
        fields.pop("workers")
        return fields


def _process_star(args: tuple[tuple, BuildConfig]) -> tuple[str, bytes, int, int, int, int]:
    return process_payload(*args)


_SCHEMA = """
CREATE TABLE images (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    site TEXT NOT NULL,
    category TEXT NOT NULL,
    caption TEXT NOT NULL,
    title TEXT NOT NULL,
    tags TEXT NOT NULL,
    license TEXT NOT NULL,
    creator TEXT NOT NULL,
    original_path TEXT NOT NULL,
    aliases TEXT NOT NULL,
    alias_categories TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    orig_width INTEGER NOT NULL,
    orig_height INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL
);
"""


def slug(text: str) -> str:
    """Return a lower-case ``a-z0-9-`` form of ``text`` for folder names and image ids."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "site"


def part_key(source: src.Source, config: BuildConfig) -> str:
    """Content hash of a source's inputs and the build config."""
    payload = json.dumps(
        {"v": BUILD_VERSION, "name": source.name, "fp": source.fingerprint(), "cfg": config.key_fields()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def part_dir(source: src.Source, config: BuildConfig, root: Path | None = None) -> Path:
    """Return the folder a source's part is (or will be) built in."""
    root = Path(root) if root is not None else cache_subdir("web")
    return root / "parts" / f"{slug(source.name)}-{part_key(source, config)}"


def build_part(
    source: src.Source, config: BuildConfig = BuildConfig(), root: Path | None = None, progress: bool = True
) -> Path:
    """Build one source into its part folder (no-op when it is already built). Returns the folder."""
    final = part_dir(source, config, root)
    if (final / "build.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    items = list(source.items())
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        stats = _write_part(tmp, source, items, config, progress)
        stats["seconds"] = round(time.perf_counter() - started, 2)
        stats["source"] = source.name
        stats["fingerprint"] = source.fingerprint()
        stats["config"] = config.key_fields()
        (tmp / "build.json").write_text(json.dumps(stats, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "build.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _results(items: list[src.SourceItem], config: BuildConfig) -> Iterable[tuple]:
    workers = config.workers or min(4, os.cpu_count() or 1)
    files = sum(1 for item in items if item.payload and item.payload[0] == "file")
    if workers > 1 and files > 64:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            yield from pool.map(_process_star, ((item.payload, config) for item in items), chunksize=16)
    else:
        for item in items:
            yield process_payload(item.payload, config)


def _table_row(
    item: src.SourceItem, site: str, row: int, sizes: tuple[int, int, int, int], offset: int, length: int
) -> tuple:
    """One ``images`` table row, in schema order; ``sizes`` is (width, height, orig width, orig height)."""
    return (
        row,
        f"{site}-{row:06d}",
        site,
        item.category,
        item.caption,
        item.title,
        json.dumps(list(item.tags)),
        item.license,
        item.creator,
        item.original_path,
        json.dumps(list(item.aliases)),
        json.dumps(list(item.alias_categories)),
        *sizes,
        offset,
        length,
    )


def _write_part(
    folder: Path, source: src.Source, items: list[src.SourceItem], config: BuildConfig, progress: bool
) -> dict:
    site = slug(source.site)
    skipped: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    connection = sqlite3.connect(folder / "meta.sqlite")
    connection.executescript(_SCHEMA)
    offset = 0
    kept = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=f"building {source.name}", unit="img")
    rows = []
    with open(folder / "images.bin", "wb") as blob:
        for item, (status, data, w, h, ow, oh) in zip(items, _results(items, config), strict=True):
            if bar is not None:
                bar.update(1)
            if status != "ok":
                skipped[status] += 1
                examples.setdefault(status, [])
                if len(examples[status]) < 5:
                    examples[status].append(item.original_path)
                continue
            blob.write(data)
            rows.append(_table_row(item, site, kept, (w, h, ow, oh), offset, len(data)))
            offset += len(data)
            kept += 1
        blob.flush()
        os.fsync(blob.fileno())
    if bar is not None:
        bar.close()
    connection.executemany(f"INSERT INTO images VALUES ({','.join('?' * 18)})", rows)
    connection.commit()
    connection.close()
    return {
        "items": len(items),
        "images": kept,
        "aliases": sum(len(item.aliases) for item in items),
        "skipped": dict(skipped),
        "skipped_examples": examples,
        "bytes": offset,
    }
