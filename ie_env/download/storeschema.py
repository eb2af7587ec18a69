"""The image store's SQLite schema and the row types it returns (:class:`ImageRecord`, :class:`RepairReport`).

Perceptual hashes are unsigned 64-bit ints in Python and signed in SQLite (:func:`signed`,
:func:`unsigned` convert).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL UNIQUE,
    phash INTEGER NOT NULL,
    path TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    nbytes INTEGER,
    query TEXT,
    concept_id INTEGER,
    engine TEXT,
    license TEXT,
    iteration INTEGER,
    reward REAL,
    in_buffer INTEGER NOT NULL DEFAULT 0,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_iteration ON images(iteration);
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    sha256 TEXT,
    image_id INTEGER,
    iteration INTEGER,
    at REAL NOT NULL
);
"""
COLUMNS = (
    "id, url, sha256, phash, path, width, height, nbytes, query, concept_id, engine, license, "
    "iteration, reward, in_buffer, added_at"
)


def signed(h: int) -> int:
    """Return the unsigned 64-bit ``h`` as SQLite's signed integer."""
    return h - (1 << 64) if h >= 1 << 63 else h


def unsigned(h: int) -> int:
    """Return SQLite's signed integer ``h`` as the unsigned 64-bit phash."""
    return h + (1 << 64) if h < 0 else h


@dataclass(frozen=True)
class ImageRecord:
    """One stored image's metadata. ``path`` is relative to the store root."""

    id: int
    url: str
    sha256: str
    phash: int
    path: str
    width: int | None
    height: int | None
    nbytes: int | None
    query: str | None
    concept_id: int | None
    engine: str | None
    license: str | None
    iteration: int | None
    reward: float | None
    in_buffer: bool
    added_at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ImageRecord:
        """Build a record from a row of ``SELECT {COLUMNS}``."""
        values = list(row)
        values[3] = unsigned(values[3])
        values[14] = bool(values[14])
        return cls(*values)


@dataclass(frozen=True)
class RepairReport:
    """What opening the store had to clean up after a crash."""

    temp_files_removed: int = 0
    orphan_files_removed: int = 0
    rows_without_file_removed: int = 0

    @property
    def clean(self) -> bool:
        """Whether there was nothing to repair."""
        return not (self.temp_files_removed or self.orphan_files_removed or self.rows_without_file_removed)
