"""The frozen world's precomputed tables: every concept's search results, cached on disk.

:func:`concept_results` ranks every concept's query with the same :class:`~ie_env.web.index.CaptionIndex`
the HTTP server uses (caption-embedding cosine + exact-token boost + hash tie-break, target images
excluded), so the frozen env returns what the full env's search returns. :func:`rank_table` is that
ranking vectorised over a chunk of queries (one matrix product, one row-wise top-k); it returns
exactly the rows ``CaptionIndex.rank`` returns, query by query.
"""

from __future__ import annotations

import functools
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


# Depth of the web-wide table (every concept's results on the whole web, no target excluded), which
# is built once per vocabulary and web and shared by every target: a target's table is that table
# with the target's images dropped, as long as ``n`` of its rows remain; rows with fewer are ranked
# again on the target's index.
WEB_DEPTH = 64


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
    called only when something must be ranked, and the queries are embedded here when it is None.
    The table is cached on disk (keyed by the model, the queries, ``n``, the corpus and the
    exclusions); invalid queries get no results. For ``n`` up to ``WEB_DEPTH`` it is derived from
    :func:`web_concept_results` (shared by every target set on the same web), so a new target's
    table costs a filter instead of a ranking of every query.
    """
    keys, distinct = _query_keys(queries)
    precision = "query-fp32" if vectors is None else query_precision()
    digest = _table_digest(index, distinct, n, precision)
    path = cache_subdir("frozen") / f"results-{cache_name}-{digest}.npy"
    distinct_vectors = _distinct_vectors(keys, distinct, vectors, progress)

    def build() -> np.ndarray:
        if n > WEB_DEPTH:
            table = rank_table(index, distinct, distinct_vectors(), n, progress)
        else:
            web = _web_table(index, distinct, cache_name, precision, distinct_vectors, progress)
            table, short = drop_excluded(web, index.excluded_rows, n)
            redo = np.flatnonzero(short)
            if len(redo):
                table[redo] = rank_table(index, [distinct[i] for i in redo], distinct_vectors()[redo], n)
        position = {k: i for i, k in enumerate(distinct)}
        rows = np.full((len(keys), n), -1, dtype=np.int32)
        for i, key in enumerate(keys):
            if key:
                rows[i] = table[position[key]]
        return rows

    return load_or_build(path, build, (len(queries), n))


def web_concept_results(
    index: CaptionIndex,
    queries: list[str],
    cache_name: str,
    progress: bool = True,
    vectors: Callable[[], np.ndarray | None] | None = None,
) -> np.ndarray:
    """Build (or load) the web-wide table of ``queries``: their top ``WEB_DEPTH`` rows, nothing excluded.

    ``ie-web build --vocabulary NAME`` calls this so that later frozen worlds of any target on this
    web find it cached. Returns (distinct valid queries, ``WEB_DEPTH``) int32.
    """
    keys, distinct = _query_keys(queries)
    precision = "query-fp32" if vectors is None else query_precision()
    distinct_vectors = _distinct_vectors(keys, distinct, vectors, progress)
    return _web_table(index, distinct, cache_name, precision, distinct_vectors, progress)


def drop_excluded(table: np.ndarray, excluded_rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first ``n`` entries that are not in ``excluded_rows``, and where that may be wrong.

    Args:
        table: ranked corpus rows (Q, depth), -1 past the results, from an index that excludes nothing.
        excluded_rows: corpus rows to drop.
        n: entries to keep, at most ``depth``.

    Returns:
        ``(kept, short)``: kept (Q, n) int32, -1 past the results; ``short`` marks the rows that kept
        fewer than ``n`` although ``table`` was cut at its depth (rows further down might belong there).
    """
    valid = table >= 0
    if len(excluded_rows):
        valid &= ~np.isin(table, excluded_rows)
    rank = np.cumsum(valid, axis=1) - 1
    query, column = np.nonzero(valid & (rank < n))
    kept = np.full((len(table), n), -1, dtype=np.int32)
    kept[query, rank[query, column]] = table[query, column]
    short = (valid.sum(axis=1) < n) & (table[:, -1] >= 0)
    return kept, short


def _query_keys(queries: list[str]) -> tuple[list[str], list[str]]:
    """Each query's normalised key ("" for an invalid query), and the sorted distinct valid keys."""
    keys = []
    for query in queries:
        try:
            keys.append(normalize_query(validate_query(query)))
        except InvalidQuery:
            keys.append("")
    return keys, sorted({k for k in keys if k})


def _table_digest(
    index: CaptionIndex, distinct: list[str], n: int, precision: str, excluded_rows: np.ndarray | None = None
) -> str:
    """Cache key of a results table; ``excluded_rows`` defaults to the index's own."""
    excluded = index.excluded_rows if excluded_rows is None else excluded_rows
    digest = hashlib.sha256(f"{model_id()}|{precision}|ties-by-index|{n}|{index.corpus.key}|".encode())
    for key in distinct:
        digest.update(key.encode("utf-8", "surrogatepass") + b"\x00")
    digest.update(np.asarray(excluded).tobytes())
    digest.update(f"{index.boost}|{len(index.doc_texts)}".encode())
    return digest.hexdigest()[:20]


def _web_table(
    index: CaptionIndex,
    distinct: list[str],
    cache_name: str,
    precision: str,
    distinct_vectors: Callable[[], np.ndarray],
    progress: bool,
) -> np.ndarray:
    """The web-wide table of ``distinct`` (cached with the web); the unexcluded index is made only to rank."""
    nothing = np.zeros(0, dtype=np.int64)
    digest = _table_digest(index, distinct, WEB_DEPTH, precision, excluded_rows=nothing)
    path = cache_subdir("web") / "concept-results" / f"{cache_name}-{digest}.npy"
    path.parent.mkdir(exist_ok=True)

    def build() -> np.ndarray:
        return rank_table(index.without_exclusions(), distinct, distinct_vectors(), WEB_DEPTH, progress)

    return load_or_build(path, build, (len(distinct), WEB_DEPTH))


def _distinct_vectors(
    keys: list[str], distinct: list[str], vectors: Callable[[], np.ndarray | None] | None, progress: bool
) -> Callable[[], np.ndarray]:
    """A function returning the distinct queries' embeddings, computed (or fetched) on its first call only."""

    @functools.cache
    def get() -> np.ndarray:
        given = vectors() if vectors is not None else None
        if given is None:
            return _embed_queries(distinct, progress)
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key:
                first.setdefault(key, i)
        return np.asarray(given, dtype=np.float32)[[first[k] for k in distinct]]

    return get


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
