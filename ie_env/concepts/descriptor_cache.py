"""A per-concept cache of LLM descriptor pools: one SQLite file per endpoint, model and prompt version.

The file is ``$IE_ENV_HOME/descriptors/llm-<key>.sqlite`` where ``key`` hashes what decides the
completions (see :func:`cache_key`); it never holds an API key. Rows are (concept, JSON list of
descriptors, rejected completions); a concept whose completions were all degenerate is cached with
an empty list, so it is not asked again. Safe to share between threads and processes (SQLite's locking,
one connection per thread).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from ie_env.paths import cache_subdir

SCHEMA = "CREATE TABLE IF NOT EXISTS pools (concept TEXT PRIMARY KEY, descriptors TEXT NOT NULL, rejected INTEGER NOT NULL)"


def cache_key(fields: Sequence[object]) -> str:
    """A short hash of the fields (endpoint, model, prompt version, sampling settings)."""
    return hashlib.sha256(json.dumps([str(f) for f in fields]).encode()).hexdigest()[:20]


class DescriptorCache:
    """Descriptor pools by normalised concept text, in one SQLite file.

    Args:
        path: the database file (created with its folder).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._connection().execute(SCHEMA)

    @classmethod
    def open(cls, key: str) -> DescriptorCache:
        """The cache for ``key`` under ``$IE_ENV_HOME/descriptors``."""
        return cls(cache_subdir("descriptors") / f"llm-{key}.sqlite")

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def get(self, concept: str) -> tuple[str, ...] | None:
        """The cached pool of a (normalised) concept, or None when it is not cached (or unreadable)."""
        row = (
            self._connection()
            .execute("SELECT descriptors FROM pools WHERE concept = ?", (concept,))
            .fetchone()
        )
        if row is None:
            return None
        try:
            pool = json.loads(row[0])
        except ValueError:
            return None
        if not isinstance(pool, list) or not all(isinstance(item, str) for item in pool):
            return None
        return tuple(pool)

    def put(self, concept: str, descriptors: Sequence[str], rejected: int = 0) -> None:
        """Store (or replace) a concept's pool."""
        self._connection().execute(
            "INSERT OR REPLACE INTO pools (concept, descriptors, rejected) VALUES (?, ?, ?)",
            (concept, json.dumps(list(descriptors)), int(rejected)),
        )

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM pools").fetchone()[0])

    def close(self) -> None:
        """Close every connection this cache opened."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()
