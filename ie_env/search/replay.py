"""Record every (engine, query, n) → hits to disk and replay them, so runs on live engines repeat.

The store is SQLite in WAL mode with ``synchronous=FULL``: each recording is one committed
transaction, so a killed process loses at most the search in flight, never the file. Only successful
searches are recorded; error values pass through unrecorded (a replay never turns an outage into
"no results"). Credentials never reach the store: hits carry only public URLs and metadata, and the
serialised text passes through :func:`~ie_env.search.credentials.redact` anyway.

Modes:
    ``record``: always ask the inner engine, store successes (replacing an older recording).
    ``replay``: answer only from the store; a miss is an error value naming the query.
    ``auto``: answer from the store when it has the key, else ask the inner engine and record.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal

from ie_env.search.base import SearchEngine, SearchHit, SearchResult, validate_query
from ie_env.search.credentials import redact
from ie_env.validate import check_choice

Mode = Literal["record", "replay", "auto"]
MODES = ("record", "replay", "auto")
SCHEMA_VERSION = 1
_HIT_FIELDS = {f.name for f in dataclasses.fields(SearchHit)}


def hit_to_dict(hit: SearchHit) -> dict[str, Any]:
    """A JSON-ready dict of a hit (fields left at their default are omitted)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(SearchHit):
        value = getattr(hit, f.name)
        if value != f.default and not (f.name == "tags" and not value):
            out[f.name] = list(value) if f.name == "tags" else value
    return out


def hit_from_dict(data: dict[str, Any]) -> SearchHit:
    """Inverse of :func:`hit_to_dict` (unknown keys are ignored)."""
    values = {key: value for key, value in data.items() if key in _HIT_FIELDS}
    if "tags" in values:
        values["tags"] = tuple(values["tags"])
    return SearchHit(**values)


class ReplayStore:
    """The on-disk map (engine, query, n) → (hits, note), in SQLite.

    Args:
        path: the database file (created with its folder).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (engine TEXT NOT NULL, query TEXT NOT NULL, n INTEGER NOT NULL,"
            " hits TEXT NOT NULL, note TEXT, recorded_at REAL NOT NULL, PRIMARY KEY (engine, query, n))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise ValueError(f"{self.path}: replay store schema {row[0]}, this code reads {SCHEMA_VERSION}")

    def __repr__(self) -> str:
        return f"ReplayStore({str(self.path)!r})"

    def get(self, engine: str, query: str, n: int) -> tuple[list[SearchHit], str | None] | None:
        """The recorded (hits, note), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT hits, note FROM results WHERE engine = ? AND query = ? AND n = ?", (engine, query, n)
            ).fetchone()
        if row is None:
            return None
        return [hit_from_dict(item) for item in json.loads(row[0])], row[1]

    def put(self, engine: str, query: str, n: int, hits: list[SearchHit], note: str | None = None) -> None:
        """Record (replacing) one result; committed and synced before returning."""
        payload = redact(
            json.dumps([hit_to_dict(hit) for hit in hits], ensure_ascii=False, separators=(",", ":"))
        )
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                (engine, query, n, payload, redact(note) if note else None, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def keys(self) -> list[tuple[str, str, int]]:
        """Every recorded (engine, query, n), oldest first."""
        with self._lock:
            return [
                tuple(row) for row in self._db.execute("SELECT engine, query, n FROM results ORDER BY rowid")
            ]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


class ReplayEngine:
    """Wrap an engine with a record/replay cache.

    Args:
        inner: the engine that really searches (may be None in ``replay`` mode).
        path: the SQLite store.
        mode: "record", "replay" or "auto".
        name: engine name (default ``inner.name``); recordings are keyed by it.
    """

    def __init__(
        self, inner: SearchEngine | None, path: str | Path, mode: Mode = "auto", name: str | None = None
    ) -> None:
        check_choice(self, "mode", MODES, value=mode)
        if inner is None and mode != "replay":
            raise ValueError(f"ReplayEngine: mode {mode!r} needs an inner engine")
        if inner is None and name is None:
            raise ValueError("ReplayEngine: give name= when there is no inner engine")
        self.inner = inner
        self.mode: Mode = mode
        self.name = name or inner.name  # type: ignore[union-attr]
        self.store = ReplayStore(path)
        self.replayed = 0
        self.recorded = 0
        self.missed = 0

    def __repr__(self) -> str:
        return f"ReplayEngine({self.inner!r}, {str(self.store.path)!r}, mode={self.mode!r})"

    def search(self, query: str, n: int) -> SearchResult:
        """Replay, or search and record; see the module docstring for the modes."""
        text = validate_query(query, n, self.name)
        if self.mode != "record":
            started = time.perf_counter()
            stored = self.store.get(self.name, text, n)
            if stored is not None:
                self.replayed += 1
                hits, note = stored
                return SearchResult(
                    engine=self.name, query=text, hits=hits, note=note, seconds=time.perf_counter() - started
                )
            if self.mode == "replay":
                self.missed += 1
                return SearchResult(
                    engine=self.name,
                    query=text,
                    error=f"{self.name}: replay miss: no recording of query {text!r} with n={n} in {self.store.path}",
                )
        assert self.inner is not None
        result = self.inner.search(text, n)
        if result.ok:
            self.store.put(self.name, text, n, result.hits, result.note)
            self.recorded += 1
        return result

    def close(self) -> None:
        """Close the store and the inner engine (when it has ``close``)."""
        self.store.close()
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
