"""Record/replay: deterministic replays, misses, fall-through, crash safety, no recorded errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ie_env.search import ReplayEngine
from ie_env.search.base import SearchError, SearchHit, SearchResult
from ie_env.search.replay import ReplayStore, hit_from_dict, hit_to_dict


class CountingEngine:
    """A test double: numbered hits per query, or an error for queries containing 'down'."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def search(self, query: str, n: int) -> SearchResult:
        self.calls.append((query, n))
        if "down" in query:
            return SearchResult(engine=self.name, query=query, error="fake: connection failed")
        version = len(self.calls)
        hits = [
            SearchHit(
                url=f"https://img/{query}/{i}.jpg?v={version}",
                title=f"{query} {i}",
                engine="fake",
                rank=i,
                tags=("a", "b"),
                width=10,
            )
            for i in range(n)
        ]
        return SearchResult(engine=self.name, query=query, hits=hits, note="partial" if n == 7 else None)


def test_hit_roundtrip():
    hit = SearchHit(
        url="u",
        title="t",
        engine="e",
        rank=3,
        id="i",
        thumbnail="th",
        license="by",
        source="s",
        width=1,
        height=2,
        tags=("x",),
        score=0.5,
    )
    assert hit_from_dict(hit_to_dict(hit)) == hit
    assert hit_from_dict(hit_to_dict(SearchHit(url="u"))) == SearchHit(url="u")


def test_record_then_replay_is_deterministic(tmp_path):
    inner = CountingEngine()
    path = tmp_path / "replay.sqlite"
    recorder = ReplayEngine(inner, path, mode="record")
    recorded = recorder.search("owl", 3)
    recorder.close()
    player = ReplayEngine(None, path, mode="replay", name="fake")
    first, second = player.search("owl", 3), player.search("  owl ", 3)
    assert first.hits == second.hits == recorded.hits
    assert player.replayed == 2 and len(inner.calls) == 1


def test_replay_miss_names_the_query(tmp_path):
    player = ReplayEngine(CountingEngine(), tmp_path / "r.sqlite", mode="replay")
    result = player.search("snowy owl", 4)
    assert not result.ok and result.error.startswith("fake: replay miss") and "'snowy owl'" in result.error
    assert "n=4" in result.error and player.inner.calls == []


def test_key_includes_n_and_engine(tmp_path):
    inner = CountingEngine()
    engine = ReplayEngine(inner, tmp_path / "r.sqlite", mode="auto")
    engine.search("owl", 3)
    engine.search("owl", 5)
    engine.search("owl", 3)
    assert inner.calls == [("owl", 3), ("owl", 5)]
    other = ReplayEngine(None, tmp_path / "r.sqlite", mode="replay", name="other")
    assert not other.search("owl", 3).ok


def test_auto_mode_falls_through_and_records(tmp_path):
    inner = CountingEngine()
    engine = ReplayEngine(inner, tmp_path / "r.sqlite", mode="auto")
    a = engine.search("cat", 2)
    b = engine.search("cat", 2)
    assert a.hits == b.hits and len(inner.calls) == 1 and engine.recorded == 1 and engine.replayed == 1


def test_record_mode_refreshes(tmp_path):
    inner = CountingEngine()
    engine = ReplayEngine(inner, tmp_path / "r.sqlite", mode="record")
    first = engine.search("cat", 2)
    second = engine.search("cat", 2)
    assert first.hits != second.hits and len(inner.calls) == 2
    assert engine.store.get("fake", "cat", 2)[0] == second.hits


def test_errors_are_not_recorded(tmp_path):
    inner = CountingEngine()
    engine = ReplayEngine(inner, tmp_path / "r.sqlite", mode="auto")
    assert not engine.search("server down", 3).ok
    assert len(engine.store) == 0
    assert not engine.search("server down", 3).ok and len(inner.calls) == 2


def test_notes_are_kept(tmp_path):
    engine = ReplayEngine(CountingEngine(), tmp_path / "r.sqlite", mode="auto")
    engine.search("owl", 7)
    assert engine.search("owl", 7).note == "partial"


def test_bad_queries_raise_and_bad_modes_are_rejected(tmp_path):
    engine = ReplayEngine(CountingEngine(), tmp_path / "r.sqlite")
    with pytest.raises(SearchError):
        engine.search("", 3)
    with pytest.raises(ValueError, match="mode"):
        ReplayEngine(CountingEngine(), tmp_path / "r.sqlite", mode="sometimes")
    with pytest.raises(ValueError, match="inner engine"):
        ReplayEngine(None, tmp_path / "r.sqlite", mode="auto")


def test_a_killed_process_keeps_what_it_recorded(tmp_path):
    path = tmp_path / "r.sqlite"
    script = textwrap.dedent(
        f"""
        import os
        from ie_env.search.base import SearchHit
        from ie_env.search.replay import ReplayStore
        store = ReplayStore({str(path)!r})
        for i in range(20):
            store.put("fake", f"q{{i}}", 5, [SearchHit(url=f"https://x/{{i}}.jpg")])
        os._exit(9)  # no close, no cleanup
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()
    store = ReplayStore(path)
    assert len(store) == 20
    assert store.get("fake", "q19", 5)[0] == [SearchHit(url="https://x/19.jpg")]
