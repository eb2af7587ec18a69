"""Peak extra memory (RSS) of downloads and decodes, measured in a fresh process for the memory tests.

``run_probe(job)`` runs this file as a script with ``job`` (JSON) on stdin and returns its JSON
answer. Before each measured call the process trims its heap and resets its peak RSS
(``/proc/self/clear_refs``), so ``extra`` is the high-water mark of that call alone, C allocations
(Pillow, zlib) included; ``tracemalloc`` would miss those.

Jobs:
    {"kind": "fetch", "config": {...}, "warmup": URL, "urls": [...]}: one ``Downloader.fetch`` per URL.
    {"kind": "decode", "spec": {...}, "paths": [...]}: ``decode_image`` of each file.
    {"kind": "fuzz", "spec": {...}, "paths": [...], "cases": N, "seed": S}: mutated copies of the files.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _status_kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def reset_peak() -> int:
    """Trim the heap, reset the peak RSS to the current RSS and return it (bytes)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def measure(call: Callable[[], Any]) -> tuple[Any, int]:
    """Return ``call()`` and the peak RSS above the RSS just before it (bytes)."""
    base = reset_peak()
    result = call()
    return result, _status_kib("VmHWM") * 1024 - base


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded mutation of ``data``: flipped bytes, a random slice, a cut, a repeat or big dimensions."""
    buf = bytearray(data)
    op = rng.randrange(5)
    if op == 0:
        for _ in range(rng.randint(1, 16)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif op == 1:
        start = rng.randrange(len(buf))
        buf[start : start + rng.randint(1, 64)] = rng.randbytes(rng.randint(1, 64))
    elif op == 2:
        del buf[rng.randrange(1, len(buf)) :]
    elif op == 3:
        start = rng.randrange(len(buf))
        buf[start:start] = buf[start : start + rng.randint(1, 256)] * rng.randint(2, 8)
    else:  # the width/height fields of most headers live in the first 32 bytes
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(min(32, len(buf)))] = 0xFF
    return bytes(buf)


def _fetch(job: dict[str, Any]) -> list[dict[str, Any]]:
    from ie_env.download import DownloadConfig, Downloader

    config = DownloadConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["config"].items()})
    out = []
    with Downloader(config) as downloader:
        downloader.fetch([job["warmup"]])
        for url in job["urls"]:
            batch, extra = measure(lambda url=url: downloader.fetch([url]))
            d = batch.downloads[0]
            out.append({"url": url, "status": d.status, "error": d.error, "extra": extra})
    return out


def _decode(job: dict[str, Any]) -> list[dict[str, Any]]:
    from ie_env.download.decode import DecodeSpec, decode_image

    spec = DecodeSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["spec"].items()})
    decode_image(Path(job["paths"][0]).read_bytes()[:64], spec)  # warm up Pillow's plugins
    out = []
    for path in job["paths"]:
        data = Path(path).read_bytes()
        decoded, extra = measure(lambda data=data: decode_image(data, spec))
        out.append({"path": path, "status": decoded.status, "error": decoded.error, "extra": extra})
    return out


def _fuzz(job: dict[str, Any]) -> dict[str, Any]:
    from ie_env.download.decode import DecodeSpec, decode_image

    spec = DecodeSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["spec"].items()})
    bases = [Path(p).read_bytes() for p in job["paths"]]
    rng = random.Random(job["seed"])
    statuses: dict[str, int] = {}
    raised: list[str] = []
    max_extra = 0
    for _ in range(job["cases"]):
        data = mutate(rng.choice(bases), rng)
        try:
            decoded, extra = measure(lambda data=data: decode_image(data, spec))
        except BaseException as exc:  # the decoder must never raise
            raised.append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        statuses[decoded.status] = statuses.get(decoded.status, 0) + 1
        max_extra = max(max_extra, extra)
    return {"statuses": statuses, "raised": raised, "max_extra": max_extra}


def run_probe(job: dict[str, Any], timeout: float = 120) -> Any:
    """Run ``job`` in a fresh Python process and return its answer."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    done = subprocess.run(
        [sys.executable, __file__],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory probe failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    request = json.loads(sys.stdin.read())
    answer = {"fetch": _fetch, "decode": _decode, "fuzz": _fuzz}[request["kind"]](request)
    print(json.dumps(answer))
