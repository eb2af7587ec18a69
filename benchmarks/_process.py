"""Run a subprocess and measure its wall time and the peak RSS of it and all its descendants."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path


def _tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, from /proc (0 for processes that are gone)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(entry.path, "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {pid}, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for member in tree:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * page
    return total


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall seconds, peak RSS MB of it and all descendants, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    peak = 0.0
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True),  # type: ignore[union-attr]
    ]
    for t in readers:
        t.start()
    while proc.poll() is None:
        peak = max(peak, _tree_rss_bytes(proc.pid) / 2**20)
        time.sleep(0.05)
    wall = time.perf_counter() - started
    for t in readers:
        t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {''.join(err)[-2000:]}")
    return wall, peak, "".join(out)
