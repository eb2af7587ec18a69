"""Benchmark the vocabulary: concept-embedding throughput and cached load time.

Writes JSON keys ``embed_concepts_per_s`` (concept texts embedded per second by the MiniLM model,
model load excluded, median of repeats) and ``load_s`` (seconds to load the full vocabulary with its
cached embeddings in a warm process, median of repeats; target < 2 s), plus
``load_cold_process_s`` (the same in a fresh Python process, imports included).

Usage::

    python benchmarks/vocabulary.py [--quick] [--json out.json] [--threads N]

The full vocabulary's embeddings must be cached for ``load_s`` (``ie-vocab embed --subset full``,
about 20 min on one core); without them ``--quick`` measures the ``small`` subset instead and says so,
and the full run builds them first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def measure_embedding(texts: list[str], repeats: int, threads: int | None) -> list[float]:
    from ie_env.concepts import textembed

    textembed.embed_texts(texts[:32], threads=threads)  # load the model and warm up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        textembed.embed_texts(texts, threads=threads)
        rates.append(len(texts) / (time.perf_counter() - started))
    return rates


def measure_load(subset: str, repeats: int) -> list[float]:
    from ie_env.concepts.vocabulary import Vocabulary

    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        vocab = Vocabulary(subset)
        vectors = vocab.embeddings(build=False)
        seconds.append(time.perf_counter() - started)
        assert vectors is not None and len(vectors) == len(vocab)
    return seconds


def measure_cold_load(subset: str) -> float:
    code = (
        "import time; t = time.perf_counter(); from ie_env.concepts.vocabulary import Vocabulary; "
        f"v = Vocabulary({subset!r}); e = v.embeddings(build=False); assert e is not None; "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, about a minute")
    parser.add_argument("--json", dest="json_path", default=None, help="write results to this JSON file")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("IE_ENV_THREADS", "1")))
    args = parser.parse_args(argv)

    from ie_env.concepts.vocabulary import Vocabulary

    full = Vocabulary("full")
    rng = np.random.default_rng(0)
    n_texts = 512 if args.quick else 4096
    all_texts = full.texts
    sample = [all_texts[i] for i in rng.choice(len(full), size=n_texts, replace=False)]
    repeats = 3
    rates = measure_embedding(sample, repeats, args.threads)

    load_subset = "full"
    if not full.embeddings_cached():
        if args.quick:
            load_subset = "small"
            Vocabulary("small").embeddings(threads=args.threads)
        else:
            full.embeddings(threads=args.threads)
    load_times = measure_load(load_subset, 5)
    cold = measure_cold_load(load_subset)

    result = {
        "embed_concepts_per_s": statistics.median(rates),
        "load_s": statistics.median(load_times),
        "load_cold_process_s": cold,
        "load_subset": load_subset,
        "load_concepts": len(Vocabulary(load_subset)),
        "embed_texts": n_texts,
        "embed_mean_chars": float(np.mean([len(t) for t in sample])),
        "threads": args.threads,
        "repeats": repeats,
        "quick": args.quick,
    }
    rows = [
        (
            "embed_concepts_per_s",
            f"{result['embed_concepts_per_s']:.1f}",
            f"median of {repeats}, {n_texts} texts",
        ),
        ("load_s", f"{result['load_s']:.3f}", f"{load_subset}: {result['load_concepts']:,} concepts, warm"),
        ("load_cold_process_s", f"{cold:.3f}", "fresh process, imports included"),
    ]
    print(f"{'metric':<24}{'value':>12}  note")
    for name, value, note in rows:
        print(f"{name:<24}{value:>12}  {note}")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
