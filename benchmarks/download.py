"""Benchmark: our downloader vs img2dataset on the same URLs from the same nginx on loopback.

The offline clip-art corpus (Debian ``openclipart-png``: full-size original PNGs, symlinks resolved,
de-duplicated) is served by nginx on 127.0.0.1 (started and stopped here). For N URLs the files are
repeated with distinct query strings. Both tools resize to the same ``--image-size`` with
``center_crop`` and write JPEG files; both run as subprocesses, timed wall clock from start to exit
(start-up included), alternating, ``--repeats`` times. Reported: median images/s of each (successful
images / wall seconds), their ratio, and the peak RSS of ours (the process plus its decode workers).

``hostile_peak_rss_mb`` is the peak RSS of our downloader process and its decode workers while it
fetches ``--hostile-n`` (2,000) URLs from a misbehaving server on loopback (``tests/hostile_server.py``),
5 % of them hostile: 16-bit, 1-bit and palette PNGs just under the pixel cap, gzip and deflate bombs,
stacked and unasked-for encodings, a decompression-bomb header, an endless body, a truncated PNG;
every URL must get a status. Target: under 500 MB. It needs neither nginx nor the corpus.

``--executor ray`` adds ``ray_images_per_s`` and ``ray_ratio`` (the Ray executor / the local one on
this machine, target >= 0.8) and per-worker figures, from the hostile server's plain images (see
``benchmarks/_executor.py``; needs the ``ray`` extra).

    python benchmarks/download.py --quick --json out.json      # 500 URLs x 2; RSS run at 3,000
    python benchmarks/download.py --json out.json              # 3,000 URLs x 3; RSS run at 20,000

The comparison list is smaller than the RSS run because img2dataset is slow on this corpus (its
full-size alpha blend of RGBA PNGs); ``--n`` sets it. Without nginx or the corpus the comparison is
skipped (``comparison_error`` says why) and only the hostile run is made.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, median, parser  # noqa: E402
from _nginx import CORPUS, NGINX, corpus_files, nginx_server  # noqa: E402
from _process import run_measured  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def make_urls(files: list[str], port: int, n: int, seed: int = 0) -> list[str]:
    """Return ``n`` shuffled URLs of ``files`` on ``port``, repeats made distinct by a query string."""
    urls = []
    for k in range(n):
        path = files[k % len(files)]
        repeat = k // len(files)
        urls.append(f"http://127.0.0.1:{port}/{path}" + (f"?r={repeat}" if repeat else ""))
    random.Random(seed).shuffle(urls)
    return urls


def run_ours(
    url_file: Path,
    out_dir: Path,
    args: argparse.Namespace,
    allowed_host: str = "127.0.0.1",
    dedup: bool = False,
) -> dict[str, float]:
    """Run our downloader on ``url_file`` in a subprocess; its counts, wall time and peak RSS."""
    cmd = [
        sys.executable, __file__, "--worker", "--urls", str(url_file), "--out", str(out_dir),
        "--image-size", str(args.image_size), "--per-host", str(args.per_host),
        "--chunk", str(args.chunk), "--allowed-host", allowed_host,
    ]  # fmt: skip
    if dedup:
        cmd.append("--dedup")
    if args.processes is not None:
        cmd += ["--processes", str(args.processes)]
    wall, peak, stdout = run_measured(cmd)
    result = json.loads(stdout.strip().splitlines()[-1])
    return {
        "ok": result["ok"],
        "counts": result["counts"],
        "wall_s": wall,
        "peak_rss_mb": peak,
        "images_per_s": result["ok"] / wall,
    }


def run_img2dataset(url_file: Path, out_dir: Path, n: int, args: argparse.Namespace) -> dict[str, float]:
    """Run img2dataset on ``url_file``; its successes, wall time and peak RSS."""
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
        allowed_hosts=(args.allowed_host,),
        dedup=args.dedup,  # off by default: the URL list repeats files on purpose, as img2dataset sees them
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
    """Our side, in its own process: fetch the URL file and print the counts as JSON."""
    urls = Path(args.urls).read_text().split()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = asyncio.run(_worker_async(urls, out_dir, args))
    print(json.dumps({"ok": counts.get("ok", 0), "counts": counts}))


# ------------------------------------------------------------------------------------------


# the hostile run


HOSTILE_PATHS = (
    "/file/grey16.png",
    "/file/bilevel.png",
    "/file/palette.png",
    "/gzip-bomb",
    "/deflate-bomb",
    "/gzip-gzip",
    "/gzip-gzip-lines",
    "/encoding/br",
    "/bigger-decoded",
    "/bomb.png",
    "/huge",
    "/truncated.png",
)


def hostile_run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Fetch ``args.hostile_n`` URLs (5 % hostile) from the hostile server; peak RSS of our process tree."""
    sys.path.insert(0, str(REPO / "tests"))
    import hostile_server as hs

    from ie_env.download import DownloadConfig

    side = hs.near_cap_side(DownloadConfig().max_pixels)
    images = {
        "grey16.png": hs.png_16bit_grey(side, side),
        "bilevel.png": hs.png_1bit(side, side),
        "palette.png": hs.png_palette(side, side),
    }
    hs.gzip_bomb(), hs.deflate_bomb(), hs.stacked_gzip_bomb()  # made once, before the clock starts
    n = args.hostile_n
    n_hostile = n // 20
    urls = [f"/img/{i}.png" for i in range(n - n_hostile)]
    urls += [f"{HOSTILE_PATHS[k % len(HOSTILE_PATHS)]}?k={k}" for k in range(n_hostile)]
    random.Random(2).shuffle(urls)
    with hs.HostileServer() as server:
        for name, body in images.items():
            server.state.files[name] = (body, "image/png", {})
        url_file = work / "urls-hostile.txt"
        url_file.write_text("\n".join(server.url(u) for u in urls) + "\n")
        run = run_ours(url_file, work / "ours-hostile", args, allowed_host=server.hostport)
    shutil.rmtree(work / "ours-hostile", ignore_errors=True)
    counts = run["counts"]
    assert isinstance(counts, dict)
    given = sum(counts.values())
    print(f"  hostile, {n} URLs ({n_hostile} hostile): peak RSS {run['peak_rss_mb']:.0f} MB  {counts}")
    return {
        "hostile_peak_rss_mb": run["peak_rss_mb"],
        "hostile_n_urls": n,
        "hostile_n_hostile": n_hostile,
        "hostile_every_url_has_status": given == n,
        "hostile_counts": counts,
        "hostile_wall_s": run["wall_s"],
    }


# ------------------------------------------------------------------------------------------
# the comparison


def compare(args: argparse.Namespace, work: Path, n: int, rss_n: int, repeats: int) -> dict[str, object]:
    """Ours vs img2dataset on the clip-art corpus served by nginx, then our peak RSS at ``rss_n`` URLs."""
    files = corpus_files()
    ours_runs: list[dict[str, float]] = []
    i2d_runs: list[dict[str, float]] = []
    i2d_error: str | None = None
    with nginx_server(CORPUS) as port:
        url_file = work / "urls.txt"
        url_file.write_text("\n".join(make_urls(files, port, n)) + "\n")
        print(
            f"{len(files)} unique files, {n} URLs, nginx on 127.0.0.1:{port}, {repeats} repeats", flush=True
        )
        for r in range(repeats):
            for tool in ["ours", "img2dataset"] if r % 2 == 0 else ["img2dataset", "ours"]:
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
    ours = median(r["images_per_s"] for r in ours_runs) if ours_runs else None
    theirs = median(r["images_per_s"] for r in i2d_runs) if i2d_runs else None
    return {
        "ours_images_per_s": ours,
        "img2dataset_images_per_s": theirs,
        "ratio": (ours / theirs) if ours and theirs else None,
        "peak_rss_mb": rss_run["peak_rss_mb"],
        "peak_rss_n_urls": rss_n,
        "ours_large_run": rss_run,
        "n_urls": n,
        "unique_files": len(files),
        "ours_runs": ours_runs,
        "img2dataset_runs": i2d_runs,
        "img2dataset_peak_rss_mb": max((r["peak_rss_mb"] for r in i2d_runs), default=None),
        "img2dataset_settings": {
            "processes_count": args.i2d_processes,
            "thread_count": args.i2d_threads,
            "number_sample_per_shard": max(100, min(1000, n // 8)),
        },
        "img2dataset_error": i2d_error,
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__, quick_help="500 URLs compared, 2 repeats; RSS at 3,000")
    p.add_argument("--n", type=int, help="URLs in the comparison (default 3,000; 500 with --quick)")
    p.add_argument("--rss-n", type=int, help="URLs in our peak-RSS run (default 20,000; 3,000 with --quick)")
    p.add_argument("--hostile-n", type=int, default=2000, help="URLs in the hostile run (5 %% hostile)")
    p.add_argument("--repeats", type=int, help="runs of each tool (default 3; 2 with --quick)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--processes", type=int, default=None, help="our decode processes (default: auto)")
    p.add_argument("--per-host", type=int, default=8, help="our concurrent requests to the host")
    p.add_argument("--chunk", type=int, default=1000, help="URLs per fetch call on our side")
    p.add_argument("--i2d-processes", type=int, default=2)
    p.add_argument("--i2d-threads", type=int, default=64)
    p.add_argument("--skip-img2dataset", action="store_true")
    p.add_argument(
        "--executor", choices=("local", "ray"), default="local",
        help="ray: also compare the Ray executor with the local one (ray_images_per_s, ray_ratio)",
    )  # fmt: skip
    p.add_argument(
        "--executor-n", type=int, help="URLs in the executor comparison (default 3,000; 600 quick)"
    )
    p.add_argument("--ray-workers", type=int, default=2, help="Ray download actors (default 2)")
    for hidden in ("--urls", "--out", "--allowed-host"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dedup", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison (when nginx and the corpus are there) and the hostile run; print and save."""
    args = _parse(argv)
    if args.worker:
        worker_main(args)
        return 0
    n = args.n or (500 if args.quick else 3000)
    rss_n = args.rss_n or (3000 if args.quick else 20000)
    repeats = args.repeats or (2 if args.quick else 3)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup (nginx, temp dirs)
    result: dict[str, object] = {}
    work = Path(tempfile.mkdtemp(prefix="ie-bench-download-"))
    try:
        if not CORPUS.is_dir() or not os.path.exists(NGINX):
            result["comparison_error"] = f"needs {CORPUS} and {NGINX} (`make setup`)"
            print(result["comparison_error"])
        else:
            result.update(compare(args, work, n, rss_n, repeats))
        result.update(hostile_run(args, work))
        if args.executor == "ray":
            from _executor import executor_run

            result.update(executor_run(args))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.update(
        repeats=repeats,
        image_size=args.image_size,
        resize_mode="center_crop",
        ours_settings={"processes": args.processes, "per_host": args.per_host, "chunk": args.chunk},
        cpu_count=os.cpu_count(),
    )
    return finish(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
