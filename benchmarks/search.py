"""Search throughput of the offline web.

Measurements (one function each, registered in ``MEASUREMENTS``; the JSON key is the registry key):

* ``server_qps``: queries/s of the local search server (``ie-web serve`` in a subprocess) over HTTP on
  loopback, ``page_size`` 25, every query distinct (no cache hits), answered by ``--concurrency``
  keep-alive client threads in this process. The client shares the machine's cores with the server.
* ``caption_index_qps``: distinct queries/s of the in-process LAION-style caption index
  (``ie_env.search.caption_index``, one ``search`` per query, MiniLM query embedding included) over a
  table of WordNet concept texts (5k rows with ``--quick``, the full vocabulary when its embeddings are
  cached); details add the batched rate and the lookup-only time.

Adding a measurement: write ``def measure_NAME(args, queries) -> Measurement`` and add it to
``MEASUREMENTS``; ``--only NAME`` runs just that one.

    python benchmarks/search.py --quick --json out.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402 - the benchmarks' shared helpers, beside this file

WORDNET_INDEX = Path("/usr/share/wordnet/index.noun")


@dataclass
class Measurement:
    """A measured rate: the median of ``runs`` is what the JSON key gets."""

    key: str
    runs: list[float]
    unit: str = "queries/s"
    details: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        """Return the median of the runs."""
        return _common.median(self.runs)


def distinct_queries(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct short queries: WordNet noun lemmas when ``wordnet-base`` is installed, else word pairs."""
    words: list[str] = []
    if WORDNET_INDEX.exists():
        with open(WORDNET_INDEX, encoding="utf-8", errors="replace") as handle:
            words = [line.split(" ", 1)[0].replace("_", " ") for line in handle if not line.startswith(" ")]
    if len(words) < n:
        adjectives = [
            "red",
            "big",
            "small",
            "old",
            "new",
            "round",
            "striped",
            "wooden",
            "golden",
            "tiny",
            "happy",
            "dark",
            "bright",
            "wild",
        ]
        nouns = [
            "owl",
            "bicycle",
            "car",
            "tree",
            "house",
            "boat",
            "apple",
            "shoe",
            "hat",
            "dress",
            "clock",
            "book",
            "guitar",
            "flower",
            "fish",
            "bird",
        ]
        words += [
            f"{a} {b} {i}"
            for i in range(n // (len(adjectives) * len(nouns)) + 1)
            for a in adjectives
            for b in nouns
        ]
    rng = random.Random(seed)
    chosen = rng.sample(sorted(set(words)), n)
    return chosen


class ServerProcess:
    """``ie-web serve --port 0`` in a subprocess; reads the served URL from its first output line."""

    def __init__(
        self, corpus: str, target: str | None, threads: int, startup_timeout: float = 1800.0
    ) -> None:
        command = [sys.executable, "-m", "ie_env.web.cli", "serve", "--port", "0", "--no-progress"]
        command += ["--corpus", corpus, "--threads", str(threads)]
        if target:
            command += ["--target", target]
        env = dict(
            os.environ, IE_ENV_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1"
        )
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
        )
        self.url = self._wait_for_url(startup_timeout)

    def _wait_for_url(self, timeout: float) -> str:
        found: list[str] = []
        tail: list[str] = []

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                tail.append(line)
                if line.startswith("ie-web serving "):
                    found.append(line.split()[2].split("/v1/")[0])
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not found:
            self.stop()
            raise RuntimeError("search server did not start:\n" + "".join(tail[-20:]))
        threading.Thread(target=lambda: [None for _ in self.process.stdout or ()], daemon=True).start()
        return found[0]

    def stop(self) -> None:
        """Stop the server process (terminate, then kill)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _run_clients(url: str, queries: list[str], page_size: int, concurrency: int) -> tuple[float, int]:
    """Send every query once over ``concurrency`` keep-alive connections: (seconds, failures)."""
    parts = urlsplit(url)
    chunks = [queries[i::concurrency] for i in range(concurrency)]
    failures = [0] * concurrency

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            for query in chunks[slot]:
                connection.request("GET", "/v1/images/?" + urlencode({"q": query, "page_size": page_size}))
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or len(json.loads(body)["results"]) != page_size:
                    failures[slot] += 1
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return time.perf_counter() - started, sum(failures)


def measure_server_qps(args: argparse.Namespace, queries: list[str]) -> Measurement:
    """Queries/s of the HTTP server, page_size ``args.page_size``, distinct queries."""
    started = time.perf_counter()
    server = ServerProcess(args.corpus, args.target, args.threads)
    startup = time.perf_counter() - started
    try:
        warm, rest = queries[: args.warmup], queries[args.warmup :]
        _run_clients(server.url, warm, args.page_size, args.concurrency)
        runs, failures = [], 0
        for r in range(args.repeats):
            batch = rest[r * args.per_run : (r + 1) * args.per_run]
            seconds, failed = _run_clients(server.url, batch, args.page_size, args.concurrency)
            failures += failed
            runs.append(len(batch) / seconds)
    finally:
        server.stop()
    if failures:
        raise RuntimeError(f"server_qps: {failures} requests failed")
    return Measurement(
        "server_qps",
        runs,
        details={
            "startup_s": round(startup, 1),
            "queries_per_run": args.per_run,
            "concurrency": args.concurrency,
        },
    )


def measure_caption_index_qps(args: argparse.Namespace, queries: list[str]) -> Measurement:
    """Queries/s of the in-process LAION-style caption index (query embedding included), distinct queries."""
    import torch
    from _caption_index_bench import run

    torch.set_num_threads(args.threads)  # this benchmark process owns its thread count
    numbers = run(quick=args.quick, threads=args.threads)
    runs = numbers.pop("caption_index_qps_runs")
    numbers.pop("caption_index_qps")
    return Measurement("caption_index_qps", runs, details=numbers)


MEASUREMENTS: dict[str, Callable[[argparse.Namespace, list[str]], Measurement]] = {
    "server_qps": measure_server_qps,
    "caption_index_qps": measure_caption_index_qps,
}


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the table and write the JSON file when asked."""
    parser = _common.parser(__doc__, quick_help="fewer queries (about a minute once built)")
    parser.add_argument("--corpus", default="web", help="corpus preset to search (default web)")
    parser.add_argument("--target", default=None, help="target set excluded from the index")
    parser.add_argument("--page-size", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=16, help="client connections")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (median reported)")
    parser.add_argument("--per-run", type=int, default=None, help="distinct queries per timed run")
    parser.add_argument(
        "--only", nargs="*", default=None, choices=sorted(MEASUREMENTS), help="run only these"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.per_run = args.per_run or (400 if args.quick else 2000)
    args.warmup = 100
    queries = distinct_queries(args.warmup + args.repeats * args.per_run, args.seed)

    results = [MEASUREMENTS[key](args, queries) for key in (args.only or MEASUREMENTS)]
    payload: dict = {m.key: round(m.median, 2) for m in results}
    payload["details"] = {m.key: {"runs": [round(r, 2) for r in m.runs], **m.details} for m in results}
    payload["config"] = {
        "corpus": args.corpus,
        "page_size": args.page_size,
        "concurrency": args.concurrency,
        "server_threads": args.threads,
        "quick": args.quick,
        "cpus": os.cpu_count(),
    }
    return _common.finish(payload, args.json)


if __name__ == "__main__":
    sys.exit(main())
