"""Benchmark the vocabulary: concept-embedding throughput and cached load time.

Writes JSON keys ``embed_concepts_per_s`` (concept texts embedded per second by the MiniLM model in
the precision the runtime picks, bfloat16 where the CPU has it; model load excluded, median of
repeats), ``embed_fp32_concepts_per_s`` and ``embed_bf16_ratio`` (bf16 / fp32 on the same texts in
the same run, repeats alternating; target >= 2.0; 1.0 where the CPU has no native bf16),
``embed_bf16_min_cosine`` (the worst cosine between a bf16 and an fp32 embedding),
``embed_library_ratio`` (our token-count-batched forward pass / sentence-transformers' ``encode``,
same texts, batch size and precision, same run) with ``embed_library_min_cosine``, ``load_s`` (seconds to load the full vocabulary with its
cached embeddings in a warm process, median of repeats; target < 2 s), plus
``load_cold_process_s`` (the same in a fresh Python process, imports included).

Usage::

    python benchmarks/vocabulary.py [--quick] [--json out.json] [--threads N]

The full vocabulary's embeddings must be cached for ``load_s`` (``ie-vocab embed --subset full``,
about 6 min on 2 cores with bf16); without them ``--quick`` measures the ``small`` subset instead and says so,
and the full run builds them first.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
from _common import finish, median, parser


def measure_embedding(texts: list[str], repeats: int) -> dict[str, float]:
    """Texts per second in bf16, fp32 and through the library's ``encode``, alternating repeats.

    Also the worst cosine between bf16 and fp32, and between ours and the library's (same precision).
    """
    from ie_env import runtime
    from ie_env.concepts import textembed

    bf16_native = runtime.bf16_enabled("cpu")
    variants = {
        "bf16": lambda: textembed.embed_texts(texts, bf16=True),
        "fp32": lambda: textembed.embed_texts(texts, bf16=False),
        "library": lambda: textembed.library_embed_texts(texts, textembed.TEXT_BATCH, False, bf16_native),
    }
    textembed.embed_texts(texts[:32])  # load the model and warm up
    textembed.library_embed_texts(texts[:32], textembed.TEXT_BATCH, False, bf16_native)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, run in variants.items():
            started = time.perf_counter()
            vectors[name] = run()
            rates[name].append(len(texts) / (time.perf_counter() - started))
    ours = "bf16" if bf16_native else "fp32"
    return {
        "bf16": median(rates["bf16"]),
        "fp32": median(rates["fp32"]),
        "library": median(rates["library"]),
        "ours": median(rates[ours]),
        "min_cosine": float((vectors["bf16"] * vectors["fp32"]).sum(axis=1).min()),
        "library_min_cosine": float((vectors[ours] * vectors["library"]).sum(axis=1).min()),
    }


def measure_load(subset: str, repeats: int) -> list[float]:
    """Seconds to load a subset with its cached embeddings, in this (warm) process."""
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
    """Seconds to load a subset with its cached embeddings in a fresh process, imports included."""
    code = (
        "import time; t = time.perf_counter(); from ie_env.concepts.vocabulary import Vocabulary; "
        f"v = Vocabulary({subset!r}); e = v.embeddings(build=False); assert e is not None; "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints the table and writes ``--json``."""
    args_parser = parser(__doc__.split("\n\n")[0])
    args_parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = args_parser.parse_args(argv)

    from ie_env import runtime
    from ie_env.concepts.vocabulary import Vocabulary

    threads = runtime.use_threads(args.threads)
    full = Vocabulary("full")
    rng = np.random.default_rng(0)
    n_texts = 512 if args.quick else 2048
    all_texts = full.texts
    sample = [all_texts[i] for i in rng.choice(len(full), size=n_texts, replace=False)]
    repeats = 3
    rates = measure_embedding(sample, repeats)

    load_subset = "full"
    if not full.embeddings_cached():
        if args.quick:
            load_subset = "small"
            Vocabulary("small").embeddings()
        else:
            full.embeddings()
    load_times = measure_load(load_subset, 5)
    cold = measure_cold_load(load_subset)
    bf16 = runtime.bf16_enabled("cpu")
    result = {
        "embed_concepts_per_s": round(rates["bf16"] if bf16 else rates["fp32"], 1),
        "embed_fp32_concepts_per_s": round(rates["fp32"], 1),
        "embed_bf16_ratio": round(rates["bf16"] / rates["fp32"], 3) if bf16 else 1.0,
        "embed_bf16_min_cosine": round(rates["min_cosine"], 6),
        "embed_library_concepts_per_s": round(rates["library"], 1),
        "embed_library_ratio": round(rates["ours"] / rates["library"], 3),
        "embed_library_min_cosine": round(rates["library_min_cosine"], 6),
        "bf16_native": bf16,
        "load_s": round(median(load_times), 3),
        "load_cold_process_s": round(cold, 3),
        "load_subset": load_subset,
        "load_concepts": len(Vocabulary(load_subset)),
        "embed_texts": n_texts,
        "embed_mean_chars": round(float(np.mean([len(t) for t in sample])), 1),
        "threads": threads,
        "repeats": repeats,
        "quick": args.quick,
    }
    return finish(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
