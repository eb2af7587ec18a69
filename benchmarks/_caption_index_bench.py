"""Benchmark the in-process caption index (LAION-style engine): distinct queries per second.

The table is real text: WordNet concept descriptions (``"{lemma} ({hypernym}): {gloss}."``) as
captions, each with its own URL, so its size and vocabulary look like a small caption dump. Queries
are distinct lemmas of *other* concepts, asked for 100 hits each as the paper's LAION engine returned.
Each timed query includes its MiniLM embedding; torch runs on ``--threads`` threads (default 1).

Keys: ``caption_index_qps`` (one ``search`` call per query, median of repeats),
``caption_index_batch_qps`` (``search_many`` in batches of 64), ``caption_index_rows``,
``caption_index_search_ms`` (top-k over the table alone, per query, embedding excluded).

Usage::

    python benchmarks/_caption_index_bench.py [--quick] [--json out.json] [--threads N]

``benchmarks/search.py`` runs it as its ``caption_index_qps`` measurement.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402 - the benchmarks' shared helpers, beside this file

HITS_PER_QUERY = 100
BATCH = 64


def _table(quick: bool):
    """(captions, embeddings or None, query texts) from the vocabulary, using cached embeddings when present."""
    from ie_env.concepts.vocabulary import Vocabulary

    vocab = Vocabulary("full")
    texts = vocab.texts
    lemmas = vocab.lemmas
    cached = None if quick else vocab.embeddings(build=False)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    rows = order if cached is not None else np.sort(order[: 5000 if quick else 20000])
    in_table = set(rows.tolist())
    seen: set[str] = set()
    queries = []
    for index in order:
        lemma = lemmas[int(index)].replace("_", " ")
        if (int(index) not in in_table or cached is not None) and lemma not in seen:
            seen.add(lemma)
            queries.append(lemma)
        if len(queries) >= (300 if quick else 1000):
            break
    captions = [texts[int(i)] for i in rows]
    embeddings = cached[rows] if cached is not None else None
    return captions, embeddings, queries


def run(quick: bool = False, threads: int = 1, repeats: int | None = None) -> dict:
    """Build the index, time distinct queries, and return the JSON-ready numbers.

    ``threads`` is only reported: the calling process sets torch's thread count.
    """
    from ie_env.concepts.textembed import embed_texts
    from ie_env.search.caption_index import CaptionIndexEngine, CaptionRow

    repeats = repeats or 3
    captions, embeddings, queries = _table(quick)
    rows = [CaptionRow(url=f"https://images.example.org/{i}.jpg", caption=c) for i, c in enumerate(captions)]
    engine = CaptionIndexEngine(rows, embeddings, cache_name="bench-caption-index", show_progress=not quick)
    engine.search_many(queries[:8], HITS_PER_QUERY)  # warm up the model
    chunks = [queries[i::repeats] for i in range(repeats)]  # every timed query is distinct
    single, batch = [], []
    for chunk in chunks:
        started = time.perf_counter()
        for query in chunk:
            result = engine.search(query, HITS_PER_QUERY)
            assert result.ok and len(result.hits) == HITS_PER_QUERY
        single.append(len(chunk) / (time.perf_counter() - started))
    for chunk in chunks:
        started = time.perf_counter()
        for lo in range(0, len(chunk), BATCH):
            engine.search_many(chunk[lo : lo + BATCH], HITS_PER_QUERY)
        batch.append(len(chunk) / (time.perf_counter() - started))
    vectors = embed_texts(queries[:64])
    started = time.perf_counter()
    for query, vector in zip(queries, vectors, strict=False):
        engine.top_rows(query, vector, HITS_PER_QUERY)
    search_ms = (time.perf_counter() - started) * 1000 / len(vectors)
    return {
        "caption_index_qps": round(_common.median(single), 1),
        "caption_index_qps_runs": [round(r, 2) for r in single],
        "caption_index_batch_qps": round(_common.median(batch), 1),
        "caption_index_rows": len(rows),
        "caption_index_search_ms": round(search_ms, 2),
        "caption_index_queries": len(queries),
        "caption_index_threads": threads,
    }


def measure_caption_index_qps(quick: bool) -> float:
    """Distinct queries per second of ``CaptionIndexEngine.search`` (query embedding included)."""
    return run(quick)["caption_index_qps"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and write the JSON file when asked."""
    parser = _common.parser(__doc__, quick_help="5,000-row table, 300 queries (about a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)  # a benchmark process of its own: it owns the thread count
    return _common.finish(run(args.quick, args.threads), args.json)


if __name__ == "__main__":
    sys.exit(main())
