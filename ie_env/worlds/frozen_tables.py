"""The frozen world's precomputed tables: every concept's search results, cached on disk.

:func:`concept_results` ranks every concept's query with the same :class:`~ie_env.web.index.CaptionIndex`
the HTTP server uses (caption-embedding cosine + exact-token boost + hash tie-break, target images
excluded), so the frozen env returns what the full env's search returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ie_env.concepts.textembed import EMBED_DIM, model_id, query_embedder
from ie_env.paths import atomic_path, cache_subdir
from ie_env.search.base import InvalidQuery, validate_query
from ie_env.web.index import CaptionIndex, normalize_query

RANK_CHUNK = 2048


def load_or_build(
    path: Path, build: Callable[[], np.ndarray], expected_shape: tuple | None = None
) -> np.ndarray:
    """Load a cached ``.npy`` (of ``expected_shape`` if given), else build it and cache it atomically."""
    if path.exists():
        try:
            array = np.load(path, allow_pickle=False)
            if expected_shape is None or array.shape == expected_shape:
                return array
        except (OSError, ValueError):
            pass
        path.unlink(missing_ok=True)
    array = build()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)
    return array


QUERY_BATCH = 256


def _embed_queries(queries: list[str], progress: bool) -> np.ndarray:
    """The server's own query embedding (float32, so batching cannot change the ranking)."""
    embed = query_embedder()
    out = np.zeros((len(queries), EMBED_DIM), dtype=np.float32)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(queries), desc="embedding concept queries", unit="query")
    for lo in range(0, len(queries), QUERY_BATCH):
        out[lo : lo + QUERY_BATCH] = embed(queries[lo : lo + QUERY_BATCH])
        if bar is not None:
            bar.update(min(QUERY_BATCH, len(queries) - lo))
    if bar is not None:
        bar.close()
    return out


def concept_results(
    index: CaptionIndex,
    queries: list[str],
    n: int,
    cache_name: str,
    progress: bool = True,
    vectors: Callable[[], np.ndarray | None] | None = None,
) -> np.ndarray:
    """Top-``n`` corpus rows for every query, (len(queries), n) int32, -1 where fewer came back.

    ``vectors`` returns the queries' embeddings (e.g. :meth:`Vocabulary.query_embeddings`); it is
    called only when the table is not cached, and the queries are embedded here when it is None. The table is cached on disk (keyed by the model, the queries, ``n``, the corpus and the
    exclusions); invalid queries get no results.
    """
    keys = []
    for query in queries:
        try:
            keys.append(normalize_query(validate_query(query)))
        except InvalidQuery:
            keys.append("")
    distinct = sorted({k for k in keys if k})
    digest = hashlib.sha256(f"{model_id()}|query-fp32|{n}|{index.corpus.key}|".encode())
    for key in distinct:
        digest.update(key.encode("utf-8", "surrogatepass") + b"\x00")
    digest.update(np.asarray(index.excluded_rows).tobytes())
    digest.update(f"{index.boost}|{len(index.doc_texts)}".encode())
    path = cache_subdir("frozen") / f"results-{cache_name}-{digest.hexdigest()[:20]}.npy"

    def build() -> np.ndarray:
        given = vectors() if vectors is not None else None
        if given is None:
            query_vectors = _embed_queries(distinct, progress)
        else:
            first = {}
            for i, key in enumerate(keys):
                if key:
                    first.setdefault(key, i)
            query_vectors = np.asarray(given, dtype=np.float32)[[first[k] for k in distinct]]
        position = {k: i for i, k in enumerate(distinct)}
        table = np.full((len(distinct), n), -1, dtype=np.int32)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(distinct), desc="ranking concept queries", unit="query")
        for lo in range(0, len(distinct), RANK_CHUNK):
            chunk = query_vectors[lo : lo + RANK_CHUNK]
            scores = index.doc_scores(chunk)
            for j in range(len(chunk)):
                ranked = index.rank(distinct[lo + j], chunk[j], n, scores=scores[j])
                table[lo + j, : len(ranked)] = [r.row for r in ranked]
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        rows = np.full((len(keys), n), -1, dtype=np.int32)
        for i, key in enumerate(keys):
            if key:
                rows[i] = table[position[key]]
        return rows

    return load_or_build(path, build, (len(queries), n))
