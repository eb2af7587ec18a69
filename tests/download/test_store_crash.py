"""Kill a real downloading process with SIGKILL mid-run, restart it: nothing lost, nothing twice.

The test runs this file as a script (``worker``): it downloads N images from a local server into
an ImageStore in small batches, skipping URLs the store already has, as an explore run does.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

N_IMAGES = 120
BATCH = 8


def worker(store_dir: str, base_url: str, hostport: str, n: int) -> None:
    from ie_env.download import DownloadConfig, Downloader
    from ie_env.download.store import ImageStore

    urls = [f"{base_url}/slow/{i}.png?s=0.03" for i in range(n)]
    config = DownloadConfig(allowed_hosts=(hostport,), processes=1, per_host=2, concurrency=4)
    with ImageStore(store_dir) as store, Downloader(config) as downloader:
        for start in range(0, n, BATCH):
            todo = [u for u in urls[start : start + BATCH] if not store.has_url(u)]
            if todo:
                batch = downloader.fetch(todo, known=store)
                store.add_many(batch.downloads, iteration=0, query="crash test")
    print("finished", flush=True)


def _stored_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _descendants(pid: int) -> set[int]:
    """Pids of all live descendants of ``pid`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    from hostile_server import HostileServer

    from ie_env.download.store import ImageStore

    store_dir = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), *sys.path])}
    with HostileServer() as server:
        cmd = [sys.executable, __file__, str(store_dir), server.url(""), server.hostport, str(N_IMAGES)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while _stored_rows(store_dir / "meta.sqlite") < 3 * BATCH:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.02)
        helpers = _descendants(proc.pid)  # forkserver and decode worker
        assert helpers, "the worker should have started decode processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        orphan_deadline = time.monotonic() + 10
        while any(_alive(p) for p in helpers) and time.monotonic() < orphan_deadline:
            time.sleep(0.05)
        assert not [p for p in helpers if _alive(p)], "decode processes outlived their killed parent"

        with ImageStore(store_dir) as store:
            stored_before_restart = {r.url for r in store.records()}
        assert 0 < len(stored_before_restart) < N_IMAGES
        log_mark = len(server.state.paths())

        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "finished" in done.stdout
        refetched = {server.url(p) for p in server.state.paths()[log_mark:] if p.startswith("/slow/")}

    assert refetched, "the restarted run should have fetched the rest"
    assert not refetched & stored_before_restart, "a stored image was downloaded again"
    with ImageStore(store_dir) as store:
        assert store.repair_report.clean
        records = store.records()
        assert len(records) == N_IMAGES
        assert len({r.url for r in records}) == N_IMAGES
        assert len({r.sha256 for r in records}) == N_IMAGES
        files = sorted(p for p in (store_dir / "images").rglob("*") if p.is_file())
        assert [p.relative_to(store_dir).as_posix() for p in files] == sorted(r.path for r in records)
        assert store.load_images([r.id for r in records]).shape == (N_IMAGES, 64, 64, 3)


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
