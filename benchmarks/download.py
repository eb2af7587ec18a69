"""Benchmark: our downloader vs img2dataset on the same URLs from the same nginx on loopback.

The offline clip-art corpus (Debian ``openclipart-png``: full-size original PNGs, symlinks resolved,
de-duplicated) is served by nginx on 127.0.0.1 (started and stopped here). For N URLs the files are
repeated with distinct query strings. Both tools resize to the same ``--image-size`` with
``center_crop`` and write JPEG files; both run as subprocesses, timed wall clock from start to exit
(start-up included), alternating, ``--repeats`` times. Reported: median images/s of each (successful
images / wall seconds), their ratio, and the peak RSS of ours (the process plus its decode workers).

    python benchmarks/download.py --quick --json out.json      # 500 URLs x 2; RSS run at 3,000
    python benchmarks/download.py --json out.json              # 3,000 URLs x 3; RSS run at 20,000

The comparison list is smaller than the RSS run because img2dataset is slow on this corpus (its
full-size alpha blend of RGBA PNGs); ``--n`` sets it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

CORPUS = Path("/usr/share/openclipart/png")
NGINX = "/usr/sbin/nginx"
REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------
# the server


def corpus_files(root: Path = CORPUS) -> list[str]:
    """Unique files under ``root`` (symlinks resolved), as paths relative to ``root``."""
    real_root = root.resolve()
    seen: set[str] = set()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            real = Path(dirpath, name).resolve()
            if real.is_file() and real.is_relative_to(real_root):
                seen.add(str(real.relative_to(real_root)))
    return sorted(seen)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def nginx_server(root: Path) -> Iterator[int]:
    """Run nginx serving ``root`` on a free 127.0.0.1 port; yield the port."""
    if not os.path.exists(NGINX):
        raise SystemExit("nginx is missing: apt-get install nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="ie-nginx-"))
    port = free_port()
    conf = tmp / "nginx.conf"
    temp_paths = "\n".join(
        f"    {name}_temp_path {tmp / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"""worker_processes 1;
daemon off;
pid {tmp / "nginx.pid"};
error_log {tmp / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
{temp_paths}
    types {{ image/png png; image/jpeg jpg; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root.resolve()};
        location / {{ }}
    }}
}}
"""
    )
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise SystemExit(f"nginx did not start: {err}") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def make_urls(files: list[str], port: int, n: int, seed: int = 0) -> list[str]:
    urls = []
    for k in range(n):
        path = files[k % len(files)]
        repeat = k // len(files)
        urls.append(f"http://127.0.0.1:{port}/{path}" + (f"?r={repeat}" if repeat else ""))
    random.Random(seed).shuffle(urls)
    return urls


# ------------------------------------------------------------------------------------------
# measuring a subprocess


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall seconds, peak RSS MB of it and all descendants, stdout)."""
    import psutil

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
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            total = ps.memory_info().rss
            for child in ps.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            peak = max(peak, total / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - started
    for t in readers:
        t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {''.join(err)[-2000:]}")
    return wall, peak, "".join(out)


def run_ours(url_file: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    cmd = [
        sys.executable, __file__, "--worker", "--urls", str(url_file), "--out", str(out_dir),
        "--image-size", str(args.image_size), "--per-host", str(args.per_host),
        "--chunk", str(args.chunk),
    ]  # fmt: skip
    if args.processes is not None:
        cmd += ["--processes", str(args.processes)]
    wall, peak, stdout = run_measured(cmd)
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"ok": result["ok"], "wall_s": wall, "peak_rss_mb": peak, "images_per_s": result["ok"] / wall}


def run_img2dataset(url_file: Path, out_dir: Path, n: int, args: argparse.Namespace) -> dict[str, float]:
    exe = shutil.which("img2dataset", path=str(Path(sys.executable).parent)) or shutil.which("img2dataset")
    if exe is None:
        raise FileNotFoundError("img2dataset")
    shard = max(100, min(1000, n // 8))
    cmd = [
        exe, "--url_list", str(url_file), "--input_format", "txt", "--output_folder", str(out_dir),
        "--output_format", "files", "--image_size", str(args.image_size), "--resize_mode", "center_crop",
        "--encode_format", "jpg", "--processes_count", str(args.i2d_processes),
        "--thread_count", str(args.i2d_threads), "--number_sample_per_shard", str(shard),
        "--timeout", "10", "--retries", "0", "--enable_wandb", "False", "--distributor", "multiprocessing",
    ]  # fmt: skip
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    wall, peak, _ = run_measured(cmd, env)
    ok = 0
    for stats_file in glob.glob(str(out_dir / "*_stats.json")):
        ok += json.loads(Path(stats_file).read_text())["successes"]
    return {"ok": ok, "wall_s": wall, "peak_rss_mb": peak, "images_per_s": ok / wall}


# ------------------------------------------------------------------------------------------
# the worker (our side, in its own process)


async def _worker_async(urls: list[str], out_dir: Path, args: argparse.Namespace) -> dict[str, int]:
    from PIL import Image

    from ie_env.download import DownloadConfig, Downloader

    config = DownloadConfig(
        image_size=args.image_size,
        resize_mode="center_crop",
        per_host=args.per_host,
        concurrency=max(args.per_host, 32),
        processes=args.processes,
        allowed_hosts=("127.0.0.1",),
        dedup=False,  # the URL list repeats files on purpose: decode every one, as img2dataset does
    )
    counts: dict[str, int] = {}
    loop = asyncio.get_running_loop()

    def write(downloads: list, offset: int) -> None:
        for k, d in enumerate(downloads):
            if d.ok:
                Image.fromarray(d.image).save(out_dir / f"{offset + k:08d}.jpg", quality=95)

    async with Downloader(config) as downloader:
        gate = asyncio.Semaphore(2)  # two chunks in flight: no idle tail between chunks

        async def chunk(offset: int) -> None:
            async with gate:
                batch = await downloader.fetch_async(urls[offset : offset + args.chunk])
            for status, count in batch.counts.items():
                counts[status] = counts.get(status, 0) + count
            await loop.run_in_executor(None, write, batch.downloads, offset)

        await asyncio.gather(*(chunk(o) for o in range(0, len(urls), args.chunk)))
    return counts


def worker_main(args: argparse.Namespace) -> None:
    urls = Path(args.urls).read_text().split()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = asyncio.run(_worker_async(urls, out_dir, args))
    print(json.dumps({"ok": counts.get("ok", 0), "counts": counts}))


# ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="500 URLs compared, 2 repeats; RSS at 3,000")
    parser.add_argument("--json", type=Path, help="write results here")
    parser.add_argument("--n", type=int, help="URLs in the comparison (default 3,000; 500 with --quick)")
    parser.add_argument(
        "--rss-n", type=int, help="URLs in our peak-RSS run (default 20,000; 3,000 with --quick)"
    )
    parser.add_argument("--repeats", type=int, help="runs of each tool (default 3; 2 with --quick)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--processes", type=int, default=None, help="our decode processes (default: auto)")
    parser.add_argument("--per-host", type=int, default=8, help="our concurrent requests to the host")
    parser.add_argument("--chunk", type=int, default=1000, help="URLs per fetch call on our side")
    parser.add_argument("--i2d-processes", type=int, default=2)
    parser.add_argument("--i2d-threads", type=int, default=64)
    parser.add_argument("--skip-img2dataset", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return {}
    n = args.n or (500 if args.quick else 3000)
    rss_n = args.rss_n or (3000 if args.quick else 20000)
    repeats = args.repeats or (2 if args.quick else 3)
    if not CORPUS.is_dir():
        raise SystemExit(f"{CORPUS} is missing: run `make setup` (Debian openclipart-png)")
    files = corpus_files()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup (nginx, temp dirs)
    ours_runs: list[dict[str, float]] = []
    i2d_runs: list[dict[str, float]] = []
    i2d_error: str | None = None
    work = Path(tempfile.mkdtemp(prefix="ie-bench-download-"))
    try:
        with nginx_server(CORPUS) as port:
            url_file = work / "urls.txt"
            url_file.write_text("\n".join(make_urls(files, port, n)) + "\n")
            print(
                f"{len(files)} unique files, {n} URLs, nginx on 127.0.0.1:{port}, {repeats} repeats",
                flush=True,
            )
            for r in range(repeats):
                order = ["ours", "img2dataset"] if r % 2 == 0 else ["img2dataset", "ours"]
                for tool in order:
                    out_dir = work / f"{tool}-{r}"
                    if tool == "ours":
                        result = run_ours(url_file, out_dir, args)
                        ours_runs.append(result)
                    elif args.skip_img2dataset or i2d_error:
                        continue
                    else:
                        try:
                            result = run_img2dataset(url_file, out_dir, n, args)
                        except (FileNotFoundError, RuntimeError) as exc:
                            i2d_error = f"img2dataset unavailable: {exc}"[:500]
                            print(i2d_error)
                            continue
                        i2d_runs.append(result)
                    shutil.rmtree(out_dir, ignore_errors=True)
                    print(
                        f"  run {r} {tool:<12} ok {result['ok']:>6}  {result['wall_s']:7.1f} s"
                        f"  {result['images_per_s']:7.1f} img/s  peak RSS {result['peak_rss_mb']:6.0f} MB",
                        flush=True,
                    )
            rss_file = work / "urls-rss.txt"
            rss_file.write_text("\n".join(make_urls(files, port, rss_n, seed=1)) + "\n")
            rss_run = run_ours(rss_file, work / "ours-rss", args)
            shutil.rmtree(work / "ours-rss", ignore_errors=True)
            print(
                f"  ours, {rss_n} URLs: ok {rss_run['ok']}  {rss_run['images_per_s']:.1f} img/s"
                f"  peak RSS {rss_run['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(runs: list[dict[str, float]], key: str) -> float | None:
        return statistics.median(r[key] for r in runs) if runs else None

    ours = median(ours_runs, "images_per_s")
    theirs = median(i2d_runs, "images_per_s")
    result: dict[str, object] = {
        "ours_images_per_s": ours,
        "img2dataset_images_per_s": theirs,
        "ratio": (ours / theirs) if ours and theirs else None,
        "peak_rss_mb": rss_run["peak_rss_mb"],
        "peak_rss_n_urls": rss_n,
        "ours_large_run": rss_run,
        "n_urls": n,
        "unique_files": len(files),
        "repeats": repeats,
        "image_size": args.image_size,
        "resize_mode": "center_crop",
        "ours_runs": ours_runs,
        "img2dataset_runs": i2d_runs,
        "img2dataset_peak_rss_mb": max((r["peak_rss_mb"] for r in i2d_runs), default=None),
        "img2dataset_settings": {
            "processes_count": args.i2d_processes,
            "thread_count": args.i2d_threads,
            "number_sample_per_shard": max(100, min(1000, n // 8)),
        },
        "ours_settings": {"processes": args.processes, "per_host": args.per_host, "chunk": args.chunk},
        "cpu_count": os.cpu_count(),
        "img2dataset_error": i2d_error,
    }
    print()
    print(f"{'':<22}{'images/s (median)':>18}")
    print(f"{'ours':<22}{ours or float('nan'):>18.1f}")
    print(f"{'img2dataset':<22}{theirs or float('nan'):>18.1f}")
    ratio = result["ratio"]
    print(f"{'ratio':<22}{ratio if isinstance(ratio, float) else float('nan'):>18.2f}")
    print(f"{f'peak RSS ours, {rss_n} URLs (MB)':<22}{result['peak_rss_mb'] or float('nan'):>10.0f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
