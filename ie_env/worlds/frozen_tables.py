"""The frozen world's precomputed tables: every concept's search results, cached on disk.

:func:`concept_results` ranks every concept's query with the same :class:`~ie_env.web.index.CaptionIndex`
the HTTP server uses (caption-embedding cosine + exact-token boost + hash tie-break, target images
excluded), so the frozen env returns what the full env's search returns. :func:`rank_table` is that
ranking vectorised over a chunk of queries (one matrix product, one row-wise top-k); it returns
exactly the rows ``CaptionIndex.rank`` returns, query by query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ie_env.concepts.textembed import EMBED_DIM, model_id, query_embedder, query_precision
from ie_env.paths import atomic_path, cache_subdir
from ie_env.search.base import InvalidQuery, validate_query
from ie_env.web.index import CaptionIndex, _hash64, _mix, normalize_query, tokenize, top_documents

RANK_CHUNK = 2048
# Extra candidates of the row-wise top-k, so that score ties at the cut are seen whole (else that
# row is redone alone).
TIE_SLACK = 8


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
    """The server's live query embedding (float32, so batching cannot change the ranking)."""
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
    precision = "query-fp32" if vectors is None else query_precision()
    digest = hashlib.sha256(f"{model_id()}|{precision}|ties-by-index|{n}|{index.corpus.key}|".encode())
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
        table = rank_table(index, distinct, query_vectors, n, progress)
        rows = np.full((len(keys), n), -1, dtype=np.int32)
        for i, key in enumerate(keys):
            if key:
                rows[i] = table[position[key]]
        return rows

    return load_or_build(path, build, (len(queries), n))


def rank_table(
    index: CaptionIndex, queries: list[str], vectors: np.ndarray, n: int, progress: bool = False
) -> np.ndarray:
    """The rows of ``index.rank(q, v, n)`` for every query, (len(queries), n) int32, -1 past the results.

    Same scores (float32 cosine, then the token boost added token by token, then the excluded-document
    mask), the same choice of documents (:func:`~ie_env.web.index.top_documents`: ties by document
    index) and the same tie-break hash as :meth:`CaptionIndex.rank`, computed a chunk of
    ``RANK_CHUNK`` queries at a time.

    Args:
        index: the caption index.
        queries: valid query texts.
        vectors: their embeddings, float32 (len(queries), d).
        n: results per query.
        progress: progress bar over the queries.
    """
    table = np.full((len(queries), n), -1, dtype=np.int32)
    need = min(n, index.live_rows)
    m = min(need, index._live_docs)
    if m <= 0:
        return table
    from tqdm.auto import tqdm

    with tqdm(total=len(queries), desc="ranking concept queries", unit="query", disable=not progress) as bar:
        for lo in range(0, len(queries), RANK_CHUNK):
            keys = [normalize_query(q) for q in queries[lo : lo + RANK_CHUNK]]
            scores = index.doc_scores(vectors[lo : lo + RANK_CHUNK])
            _add_boosts(index, keys, scores)
            scores += index._dead_docs
            top = _top_documents(scores, m)
            hashes = np.fromiter((_hash64(key) for key in keys), dtype=np.uint64, count=len(keys))
            _expand_rows(index, top, hashes, need, table[lo : lo + len(keys)])
            bar.update(len(keys))
    return table


def _top_documents(scores: np.ndarray, m: int) -> np.ndarray:
    """:func:`~ie_env.web.index.top_documents` of every row of ``scores`` (B, n_docs): (B, m)."""
    import torch

    k = min(m + TIE_SLACK, scores.shape[1])
    values, candidates = torch.topk(torch.from_numpy(scores), k, dim=1)
    values, candidates = values.numpy(), candidates.numpy()
    order = np.lexsort((candidates, -values), axis=1)  # by score, then by document index
    top = np.take_along_axis(candidates, order[:, :m], axis=1)
    if k < scores.shape[1]:  # a tie at the cut that may reach past the candidates: redo that row
        for row in np.flatnonzero(values[:, m - 1] == values[:, k - 1]):
            top[row] = top_documents(scores[row], m)
    return top


def _add_boosts(index: CaptionIndex, keys: list[str], scores: np.ndarray) -> None:
    """Add each query's exact-token boost to its row of ``scores`` in place (as ``rank`` adds it)."""
    if not index.boost:
        return
    postings = index._postings
    for j, key in enumerate(keys):
        tokens = set(tokenize(key))
        if not tokens:
            continue
        bonus = np.float32(index.boost / len(tokens))
        row = scores[j]
        for token in tokens:
            docs = postings.get(token)
            if docs is not None:
                row[docs] += bonus


def _expand_rows(
    index: CaptionIndex, top: np.ndarray, query_hashes: np.ndarray, need: int, out: np.ndarray
) -> None:
    """Fill ``out`` (B, n) with each query's first ``need`` rows of its ranked documents ``top`` (B, m).

    A document's rows come in the order of the tie-break hash of (query, row key), as in ``rank``; only
    the documents that contribute a row are expanded.
    """
    ptr = index._doc_ptr
    counts = ptr[top + 1] - ptr[top]
    before = np.cumsum(counts, axis=1) - counts
    query, position = np.nonzero((before < need) & (counts > 0))  # by query, then by rank
    docs = top[query, position]
    lengths = counts[query, position]
    segment = np.repeat(np.arange(len(docs)), lengths)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = index._doc_rows[ptr[docs][segment] + within]
    row_query = query[segment]
    order = np.lexsort((_mix(index._row_hash[rows] ^ query_hashes[row_query]), segment))
    rows, row_query = rows[order], row_query[order]
    first = np.searchsorted(row_query, np.arange(len(out)))
    rank = np.arange(len(rows)) - first[row_query]
    keep = rank < need
    out[row_query[keep], rank[keep]] = rows[keep]
