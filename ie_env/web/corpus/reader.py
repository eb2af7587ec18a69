"""The offline web's image corpus: built once per source ("site") into the cache dir, loaded fast.

Layout under ``cache_subdir('web')``::

    parts/<source>-<key>/meta.sqlite   one row per image (id, site, category, caption, title, tags, ...)
    parts/<source>-<key>/images.bin    the images as RGB PNGs (longest side <= max_side), back to back
    parts/<source>-<key>/build.json    counts, skipped files by reason, build seconds
    arrays/<corpus key>-<size>.npy     all images of a corpus letterboxed to size x size (see load_images)

``<key>`` hashes the source's input fingerprint and the build config, so a part is rebuilt only when its
inputs change. Parts are built in a temporary folder and renamed into place, so a killed build leaves
nothing half-written behind. A :class:`Corpus` is the concatenation of its parts' rows.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import mmap
import multiprocessing
import os
import re
import shutil
import sqlite3
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ie_env.paths import atomic_path, cache_subdir
from ie_env.web import sources as src

# Bump when the image processing or any source's captions/metadata change: every part is then rebuilt.
BUILD_VERSION = 2

CORPUS_PRESETS: dict[str, tuple[str, ...]] = {
    "web": ("openclipart", "gemojione", "emojify", "noto-emoji", "fashion-mnist"),
    "clipart": ("openclipart",),
    "emoji": ("gemojione", "emojify", "noto-emoji"),
    "generated": ("generated",),
    "fashion-mnist-test": ("fashion-mnist-test",),
}


def make_source(name: str) -> src.Source:
    """The source object for a site name (see :data:`CORPUS_PRESETS`)."""
    factories = {
        "openclipart": src.OpenClipartSource,
        "gemojione": src.GemojioneSource,
        "emojify": src.EmojifySource,
        "noto-emoji": src.NotoEmojiSource,
        "fashion-mnist": lambda: src.FashionMnistSource("train"),
        "fashion-mnist-test": lambda: src.FashionMnistSource("test"),
        "generated": src.GeneratedSource,
    }
    if name not in factories:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(sorted(factories))}")
    return factories[name]()


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
        if not 16 <= self.max_side <= 1024:
            raise ValueError(f"BuildConfig.max_side must be in [16, 1024], got {self.max_side}")
        if self.max_pixels < 1:
            raise ValueError(f"BuildConfig.max_pixels must be positive, got {self.max_pixels}")
        if self.min_side < 1:
            raise ValueError(f"BuildConfig.min_side must be >= 1, got {self.min_side}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"BuildConfig.workers must be >= 1 or None, got {self.workers}")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(
                f"BuildConfig.png_compress_level must be in [0, 9], got {self.png_compress_level}"
            )

    def key_fields(self) -> dict:
        fields = asdict(self)
        fields.pop("workers")
        return fields


@dataclass(frozen=True)
class ImageRecord:
    """One corpus image's metadata (see the module docstring for the storage)."""

    id: str
    site: str
    category: str
    caption: str
    title: str
    tags: tuple[str, ...]
    license: str
    creator: str
    original_path: str
    aliases: tuple[str, ...]
    alias_categories: tuple[str, ...]
    width: int
    height: int


# --------------------------------------------------------------------------- image processing


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """Composite any transparency onto white and return an RGB image."""
    if image.mode in ("RGBA", "LA", "PA", "P") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if image.mode == "I;16" or image.mode == "I":
        array = np.asarray(image, dtype=np.float64)
        peak = max(float(array.max()), 1.0)
        return Image.fromarray((array * (255.0 / peak)).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def process_payload(payload: tuple, config: BuildConfig) -> tuple[str, bytes, int, int, int, int]:
    """Decode, bound and encode one source image: (status, png bytes, width, height, orig w, orig h).

    ``status`` is ``"ok"`` or the reason it was skipped: ``huge``, ``tiny``, ``blank`` or ``unreadable``.
    """
    try:
        image = src.source_image(payload)
        if image is None:
            return ("blank", b"", 0, 0, 0, 0)
        with image:
            ow, oh = image.size
            if ow * oh > config.max_pixels:
                return ("huge", b"", 0, 0, ow, oh)
            if max(ow, oh) < config.min_side:
                return ("tiny", b"", 0, 0, ow, oh)
            image.load()
            work = image
            if work.mode == "P" or "transparency" in work.info:
                work = work.convert("RGBA")
            if max(ow, oh) > config.max_side:
                scale = config.max_side / max(ow, oh)
                size = (max(1, round(ow * scale)), max(1, round(oh * scale)))
                if work.mode not in ("RGB", "RGBA", "L", "LA"):
                    work = work.convert("RGBA")
                work = work.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
            rgb = to_rgb_on_white(work)
            buffer = io.BytesIO()
            rgb.save(buffer, "PNG", compress_level=config.png_compress_level)
            return ("ok", buffer.getvalue(), rgb.width, rgb.height, ow, oh)
    except Image.DecompressionBombError:
        return ("huge", b"", 0, 0, 0, 0)
    except (OSError, SyntaxError, ValueError, TypeError, MemoryError, struct.error):
        return ("unreadable", b"", 0, 0, 0, 0)


def _process_star(args: tuple[tuple, BuildConfig]) -> tuple[str, bytes, int, int, int, int]:
    return process_payload(*args)


# --------------------------------------------------------------------------- parts

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


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "site"


def part_key(source: src.Source, config: BuildConfig) -> str:
    """Content hash of a source's inputs and the build config."""
    payload = json.dumps(
        {"v": BUILD_VERSION, "name": source.name, "fp": source.fingerprint(), "cfg": config.key_fields()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def part_dir(source: src.Source, config: BuildConfig, root: Path | None = None) -> Path:
    root = Path(root) if root is not None else cache_subdir("web")
    return root / "parts" / f"{_slug(source.name)}-{part_key(source, config)}"


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


def _write_part(
    folder: Path, source: src.Source, items: list[src.SourceItem], config: BuildConfig, progress: bool
) -> dict:
    site = _slug(source.site)
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
            rows.append(
                (
                    kept,
                    f"{site}-{kept:06d}",
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
                    w,
                    h,
                    ow,
                    oh,
                    offset,
                    len(data),
                )
            )
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


@dataclass
class _Part:
    folder: Path
    start: int
    count: int
    _blob: mmap.mmap | None = None

    def blob(self) -> mmap.mmap | bytes:
        if self._blob is None:
            with open(self.folder / "images.bin", "rb") as handle:
                if os.fstat(handle.fileno()).st_size == 0:
                    return b""
                self._blob = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return self._blob

    def build_info(self) -> dict:
        return json.loads((self.folder / "build.json").read_text())


# --------------------------------------------------------------------------- corpus


class Corpus:
    """A built corpus: metadata columns for every image plus fast access to its pixels.

    Rows are numbered 0..len-1 in part order; ``ids[row]`` is the public image id (``<site>-<n>``).
    """

    def __init__(self, name: str, folders: Sequence[Path], root: Path) -> None:
        self.name = name
        self.root = Path(root)
        self.parts: list[_Part] = []
        columns: dict[str, list] = {c: [] for c in _COLUMNS}
        for folder in folders:
            connection = sqlite3.connect(f"file:{folder / 'meta.sqlite'}?mode=ro", uri=True)
            try:
                fetched = connection.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM images ORDER BY row"
                ).fetchall()
            finally:
                connection.close()
            self.parts.append(_Part(Path(folder), len(columns["id"]), len(fetched)))
            for values in fetched:
                for column, value in zip(_COLUMNS, values, strict=True):
                    columns[column].append(value)
        self.ids: list[str] = columns["id"]
        self.sites: list[str] = columns["site"]
        self.categories: list[str] = columns["category"]
        self.captions: list[str] = columns["caption"]
        self.titles: list[str] = columns["title"]
        self._tags_json: list[str] = columns["tags"]
        self.licenses: list[str] = columns["license"]
        self.creators: list[str] = columns["creator"]
        self.original_paths: list[str] = columns["original_path"]
        self._aliases_json: list[str] = columns["aliases"]
        self._alias_categories_json: list[str] = columns["alias_categories"]
        self.widths = np.asarray(columns["width"], dtype=np.int32)
        self.heights = np.asarray(columns["height"], dtype=np.int32)
        self._offsets = np.asarray(columns["offset"], dtype=np.int64)
        self._lengths = np.asarray(columns["length"], dtype=np.int64)
        self._part_of_row = np.repeat(np.arange(len(self.parts)), [p.count for p in self.parts])
        self._row_of_id = {image_id: row for row, image_id in enumerate(self.ids)}
        if len(self._row_of_id) != len(self.ids):
            raise ValueError(f"corpus {name!r} has duplicate image ids (two parts from the same site?)")
        self.key = hashlib.sha256("|".join(p.folder.name for p in self.parts).encode()).hexdigest()[:16]
        self._array_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Corpus({self.name!r}, {len(self)} images, sites={dict(self.site_counts())})"

    def row(self, image_id: str) -> int:
        """Row number of an image id; KeyError names the id."""
        try:
            return self._row_of_id[image_id]
        except KeyError:
            raise KeyError(f"image id {image_id!r} is not in corpus {self.name!r}") from None

    def has(self, image_id: str) -> bool:
        return image_id in self._row_of_id

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        return np.asarray([self.row(i) for i in ids], dtype=np.int64)

    def tags(self, row: int) -> tuple[str, ...]:
        return tuple(json.loads(self._tags_json[row]))

    def aliases(self, row: int) -> tuple[str, ...]:
        return tuple(json.loads(self._aliases_json[row]))

    def alias_categories(self, row: int) -> tuple[str, ...]:
        return tuple(json.loads(self._alias_categories_json[row]))

    def record(self, row: int) -> ImageRecord:
        """Everything known about one image."""
        return ImageRecord(
            id=self.ids[row],
            site=self.sites[row],
            category=self.categories[row],
            caption=self.captions[row],
            title=self.titles[row],
            tags=self.tags(row),
            license=self.licenses[row],
            creator=self.creators[row],
            original_path=self.original_paths[row],
            aliases=self.aliases(row),
            alias_categories=self.alias_categories(row),
            width=int(self.widths[row]),
            height=int(self.heights[row]),
        )

    def image_bytes(self, row: int) -> bytes:
        """The stored PNG of one image."""
        part = self.parts[int(self._part_of_row[row])]
        offset, length = int(self._offsets[row]), int(self._lengths[row])
        return bytes(part.blob()[offset : offset + length])

    def open_image(self, row: int) -> Image.Image:
        """The stored image, decoded (RGB)."""
        image = Image.open(io.BytesIO(self.image_bytes(row)))
        image.load()
        return image.convert("RGB")

    def site_counts(self) -> Counter[str]:
        return Counter(self.sites)

    def category_counts(self) -> Counter[str]:
        return Counter(self.categories)

    def info(self) -> dict:
        """Counts per site, stored bytes and build stats of each part."""
        parts = []
        for part in self.parts:
            stats = part.build_info()
            parts.append(
                {
                    "source": stats.get("source"),
                    "images": stats.get("images"),
                    "aliases": stats.get("aliases"),
                    "skipped": stats.get("skipped"),
                    "bytes": stats.get("bytes"),
                    "build_seconds": stats.get("seconds"),
                    "folder": str(part.folder),
                }
            )
        return {
            "name": self.name,
            "key": self.key,
            "images": len(self),
            "sites": dict(sorted(self.site_counts().items())),
            "categories": len(self.category_counts()),
            "distinct_captions": len(set(self.captions)),
            "bytes": int(self._lengths.sum()),
            "parts": parts,
        }

    # ----------------------------------------------------------------- pixel arrays

    def array_path(self, size: int) -> Path:
        return self.root / "arrays" / f"{self.name}-{self.key}-{size}.npy"

    def load_images(
        self, ids: Sequence[str] | None = None, size: int = 64, progress: bool = True
    ) -> np.ndarray:
        """Images as uint8 ``(N, size, size, 3)``, letterboxed on white; all images when ``ids`` is None.

        The first call for a size decodes the whole corpus into a cached ``.npy`` (with a progress bar);
        later calls memory-map it. With ``ids=None`` the read-only memory map itself is returned.
        """
        if not 8 <= size <= 512:
            raise ValueError(f"size must be in [8, 512], got {size}")
        path = self.array_path(size)
        with self._array_lock:
            if not path.exists():
                self._write_array(path, size, progress)
        array = np.load(path, mmap_mode="r")
        if array.shape != (len(self), size, size, 3):
            path.unlink(missing_ok=True)
            return self.load_images(ids, size, progress)
        if ids is None:
            return array
        return np.ascontiguousarray(array[self.rows(ids)])

    def _write_array(self, path: Path, size: int, progress: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(self), desc=f"{self.name} images at {size}px", unit="img")
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(self), size, size, 3))
            for row in range(len(self)):
                out[row] = letterbox(self.open_image(row), size)
                if bar is not None and row % 256 == 255:
                    bar.update(256)
            out.flush()
            del out
        if bar is not None:
            bar.update(len(self) - bar.n)
            bar.close()


_COLUMNS = (
    "id",
    "site",
    "category",
    "caption",
    "title",
    "tags",
    "license",
    "creator",
    "original_path",
    "aliases",
    "alias_categories",
    "width",
    "height",
    "offset",
    "length",
)


def letterbox(image: Image.Image, size: int) -> np.ndarray:
    """Pad an RGB image to a white square and resize it to ``size``: uint8 ``(size, size, 3)``."""
    w, h = image.size
    if w != h:
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        image = canvas
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image, dtype=np.uint8)


def corpus_sources(name: str | os.PathLike) -> list[src.Source]:
    """The sources of a corpus preset name, or a folder source for a path."""
    if isinstance(name, os.PathLike) or (
        isinstance(name, str) and name not in CORPUS_PRESETS and os.sep in name
    ):
        return [src.FolderSource(Path(name))]
    if name in CORPUS_PRESETS:
        return [make_source(site) for site in CORPUS_PRESETS[name]]
    if Path(name).is_dir():
        return [src.FolderSource(Path(name))]
    raise ValueError(f"unknown corpus {name!r}; presets: {', '.join(CORPUS_PRESETS)}, or a folder of images")


def open_corpus(
    name: str | os.PathLike = "web",
    *,
    config: BuildConfig = BuildConfig(),
    root: Path | None = None,
    build: bool = True,
    progress: bool = True,
    sources: Sequence[src.Source] | None = None,
) -> Corpus:
    """Open a corpus, building missing parts first (unless ``build`` is False).

    Args:
        name: a preset (``web``, ``clipart``, ``emoji``, ``generated``) or a folder of images.
        config: how images are bounded and encoded.
        root: where parts live (default ``cache_subdir('web')``).
        build: build missing parts; if False, a missing part raises FileNotFoundError.
        progress: draw progress bars.
        sources: explicit sources (overrides the preset's); ``name`` then only labels the corpus.

    Raises:
        SetupError: a Debian package a source needs is missing.
    """
    root = Path(root) if root is not None else cache_subdir("web")
    chosen = list(sources) if sources is not None else corpus_sources(name)
    folders = []
    for source in chosen:
        folder = part_dir(source, config, root)
        if not (folder / "build.json").exists():
            if not build:
                raise FileNotFoundError(f"corpus part {source.name!r} is not built; run `ie-web build`")
            folder = build_part(source, config, root, progress)
        folders.append(folder)
    label = Path(name).name if isinstance(name, os.PathLike) or os.sep in str(name) else str(name)
    return Corpus(_slug(label), folders, root)
