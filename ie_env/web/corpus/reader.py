"""Reading a built corpus: metadata columns for every image and fast access to its stored PNG bytes.

A :class:`Corpus` is the concatenation of its parts' rows; ``ids[row]`` is the public image id
(``<site>-<n>``). Its decoded pixel arrays and hashes are cached by :mod:`ie_env.web.corpus.arrays`.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ie_env.web.corpus import arrays


@dataclass(frozen=True)
class CorpusImage:
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
        self._hashes: dict[int, tuple[list[str], np.ndarray]] = {}

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
        """Return whether an image id is in the corpus."""
        return image_id in self._row_of_id

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        """Return the row numbers of image ids (KeyError names an unknown id)."""
        return np.asarray([self.row(i) for i in ids], dtype=np.int64)

    def tags(self, row: int) -> tuple[str, ...]:
        """Return one image's tags."""
        return tuple(json.loads(self._tags_json[row]))

    def aliases(self, row: int) -> tuple[str, ...]:
        """Return the other paths holding the same image."""
        return tuple(json.loads(self._aliases_json[row]))

    def alias_categories(self, row: int) -> tuple[str, ...]:
        """Return the categories of an image's aliases."""
        return tuple(json.loads(self._alias_categories_json[row]))

    def record(self, row: int) -> CorpusImage:
        """Everything known about one image."""
        return CorpusImage(
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

    def stored_size(self, row: int) -> int:
        """Return the length in bytes of one image's stored PNG (what the server serves)."""
        return int(self._lengths[row])

    def open_image(self, row: int) -> Image.Image:
        """The stored image, decoded (RGB)."""
        image = Image.open(io.BytesIO(self.image_bytes(row)))
        image.load()
        return image.convert("RGB")

    def site_counts(self) -> Counter[str]:
        """Return the number of images per site."""
        return Counter(self.sites)

    def category_counts(self) -> Counter[str]:
        """Return the number of images per category."""
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
        """Return the cache file of this corpus' image array at ``size`` (see :mod:`~ie_env.web.corpus.arrays`)."""
        return arrays.array_path(self, size)

    def _ensure_arrays(self, size: int, progress: bool) -> None:
        if not 8 <= size <= 512:
            raise ValueError(f"size must be in [8, 512], got {size}")
        with self._array_lock:
            path = arrays.array_path(self, size)
            if path.exists() and arrays.hashes_path(self, size).exists():
                shape = np.load(path, mmap_mode="r").shape
                if shape == (len(self), size, size, 3):
                    return
            arrays.write_arrays(self, size, progress)
            self._hashes.pop(size, None)

    def load_images(
        self, ids: Sequence[str] | None = None, size: int = 64, progress: bool = True
    ) -> np.ndarray:
        """Return images as uint8 ``(N, size, size, 3)``; all images when ``ids`` is None.

        Each image is :func:`ie_env.download.decode.decode_image` of the bytes the search server serves
        for it, in the downloader's ``border`` mode (long side to ``size``, padded white), so it equals
        what the downloader makes of the same image. The first call for a size decodes the whole corpus
        into a cached ``.npy`` (with a progress bar); later calls memory-map it. With ``ids=None`` the
        read-only memory map itself is returned.
        """
        self._ensure_arrays(size, progress)
        array = np.load(arrays.array_path(self, size), mmap_mode="r")
        if ids is None:
            return array
        return np.ascontiguousarray(array[self.rows(ids)])

    def image_hashes(self, size: int = 64, progress: bool = True) -> tuple[list[str], np.ndarray]:
        """Return (sha256 hex of the served bytes, 64-bit phash as uint64) per row, as the downloader computes them.

        The phash comes from the same :func:`~ie_env.download.decode.decode_image` call as
        :meth:`load_images`' arrays at ``size`` and is cached beside them.
        """
        self._ensure_arrays(size, progress)
        if size not in self._hashes:
            self._hashes[size] = arrays.read_hashes(self, size)
        return self._hashes[size]


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
