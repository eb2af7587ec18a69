"""Query embeddings for the search server and the caption ranking: an LRU cache and a micro-batcher.

:class:`QueryEmbedder` maps query texts to L2-normalised MiniLM embeddings, keeping recent queries in
an in-memory LRU cache keyed by :func:`normalize_query` and embedding all misses of a call in one model
pass. :class:`BatchingEmbedder` groups requests from many server threads into batched model calls on
one worker thread. The default model call, :func:`query_embedder`, skips sentence-transformers'
per-call overhead and always runs in float32: query embeddings decide the ranking, and bfloat16
results change with the batch a query happens to share (measured: it reorders near-ties). A table
of known queries (:meth:`QueryEmbedder.preload`, e.g. the vocabulary's concept queries, embedded
once in batches) is consulted first and never evicted, so the server ranks those queries with the
very vectors the frozen world's tables were built from, whatever their precision.

Nothing here changes process-wide torch settings: the caller's thread count is used as it is.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from queue import Empty, SimpleQueue

import numpy as np

from ie_env.concepts.queries import normalize_text as normalize_query
from ie_env.concepts.textembed import EMBED_DIM, query_embedder
from ie_env.validate import check_int

EmbedFn = Callable[[Sequence[str]], np.ndarray]


class QueryEmbedder:
    """Query embeddings with an in-memory LRU cache; thread-safe; one model call per batch of misses.

    Args:
        capacity: cached queries.
        embed: function from texts to L2-normalised float32 (n, 384) rows (default: the MiniLM model).
    """

    def __init__(self, capacity: int = 100_000, embed: EmbedFn | None = None) -> None:
        check_int(self, "capacity", 1, value=capacity)
        self.capacity = capacity
        self._embed = embed
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._known: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def preload(self, queries: Sequence[str], vectors: np.ndarray) -> None:
        """Fix the embeddings of known queries (kept apart from the LRU cache, never evicted).

        Args:
            queries: query texts (normalised with :func:`normalize_query`; the first of equal keys wins).
            vectors: (len(queries), 384) L2-normalised rows, used as they are.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(queries), EMBED_DIM):
            raise ValueError(
                f"QueryEmbedder.preload: {len(queries)} queries but vectors of shape {vectors.shape}"
            )
        table: dict[str, np.ndarray] = {}
        for query, vector in zip(queries, vectors, strict=True):
            table.setdefault(normalize_query(query), vector)
        with self._lock:
            self._known.update(table)

    @property
    def known(self) -> int:
        """The number of preloaded queries."""
        return len(self._known)

    def _lookup(self, key: str) -> np.ndarray | None:
        """A preloaded or cached vector (caller holds the lock; moves a cached key to the LRU end)."""
        vector = self._known.get(key)
        if vector is None:
            vector = self._cache.get(key)
            if vector is not None:
                self._cache.move_to_end(key)
        return vector

    def cached(self, query: str) -> np.ndarray | None:
        """Return the preloaded or cached embedding of a query, or None (counts a hit when found)."""
        key = normalize_query(query)
        with self._lock:
            vector = self._lookup(key)
            if vector is not None:
                self.hits += 1
            return vector

    def embed(self, queries: Sequence[str]) -> np.ndarray:
        """Return embeddings for ``queries`` (float32, (n, d)), computing all cache misses in one batch."""
        keys = [normalize_query(q) for q in queries]
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        with self._lock:
            for key in dict.fromkeys(keys):
                vector = self._lookup(key)
                if vector is None:
                    missing.append(key)
                else:
                    found[key] = vector
            self.hits += sum(1 for key in keys if key in found)
            self.misses += len(missing)
        if missing:
            with self._model_lock:
                if self._embed is None:
                    self._embed = query_embedder()
                vectors = np.asarray(self._embed(missing), dtype=np.float32)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    self._cache[text] = found[text] = vector
                    self._cache.move_to_end(text)
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
        if not keys:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)


class BatchingEmbedder:
    """Groups embedding requests from many threads into batched model calls on one worker thread.

    While the model embeds one batch, new requests queue up and form the next batch, so throughput
    grows with load without any artificial waiting.
    """

    def __init__(
        self,
        embedder: QueryEmbedder,
        max_batch: int = 64,
        timeout_s: float = 30.0,
        scorer: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        check_int(self, "max_batch", 1, value=max_batch)
        self.embedder = embedder
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.scorer = scorer
        self._queue: SimpleQueue = SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="query-embedder", daemon=True)
        self._closed = False
        self.batches = 0
        self._thread.start()

    def embed_one(self, query: str) -> np.ndarray:
        """The query's embedding (from the cache, or from the next batch)."""
        if self.scorer is None:
            vector = self.embedder.cached(query)
            if vector is not None:
                return vector
        return self.request(query)[0]

    def request(self, query: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (embedding, scorer row or None) for one query.

        With a scorer, every request joins a batch, so the scorer's matrix product (e.g. against all
        caption embeddings) is shared by the whole batch.
        """
        if self._closed:
            raise RuntimeError("BatchingEmbedder is closed")
        future: Future = Future()
        self._queue.put((query, future))
        return future.result(timeout=self.timeout_s)

    def close(self) -> None:
        """Stop the worker and release what it holds."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                vectors = self.embedder.embed([query for query, _ in batch])
                scores = self.scorer(vectors) if self.scorer is not None else [None] * len(batch)
                self.batches += 1
                for (_, future), vector, row in zip(batch, vectors, scores, strict=True):
                    future.set_result((vector, row))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            if stop:
                return
