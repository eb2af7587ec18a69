"""Semantic search over a corpus' captions: the ranking shared by the HTTP server and in-process search.

Score of an image for a query = cosine(query embedding, caption embedding) + ``boost`` x (share of the
query's tokens found among the caption's tokens). Images with the same caption tie; ties are broken by a
hash of (query, image id), so two queries that mean the same class reach different images, as on a real
engine. Every valid query returns results (top-k of everything not excluded), best first.

Captions are embedded once per *distinct* caption (the 60,000 shop photos share a few dozen captions) with
``ie_env.concepts.textembed.cached_embeddings``. Query embeddings are kept in an in-memory LRU cache, and
:class:`BatchingEmbedder` groups concurrent queries into one model call.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from queue import Empty, SimpleQueue

import numpy as np

from ie_env.concepts.textembed import EMBED_DIM, cached_embeddings, embed_texts
from ie_env.web.corpus import Corpus

MAX_QUERY_CHARS = 1000
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "with",
        "without",
        "this",
        "that",
        "its",
    ]
)
_TOKEN_RE = re.compile(r"[a-z0-9]+")


class InvalidQuery(ValueError):
    """A query no engine should accept: empty, too long, or containing control characters."""


def validate_query(query: object, max_chars: int = MAX_QUERY_CHARS) -> str:
    """Return the query with surrounding whitespace removed, or raise :class:`InvalidQuery` saying why."""
    if not isinstance(query, str):
        raise InvalidQuery(f"query must be a string, got {type(query).__name__}")
    if len(query) > max_chars:
        raise InvalidQuery(f"query is {len(query)} characters long; the limit is {max_chars}")
    for position, char in enumerate(query):
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\u2028\u2029":
            raise InvalidQuery(f"query contains control character U+{ord(char):04X} at position {position}")
    text = query.strip()
    if not text:
        raise InvalidQuery("query is empty")
    return text


def normalize_query(query: str) -> str:
    """Whitespace-collapsed lower-case form (the sentence model is uncased): the cache and hash key."""
    return " ".join(query.split()).lower()


def _stem(token: str) -> str:
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 4 and token.endswith(("ches", "shes", "sses", "xes")):
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens with stop words dropped and plurals folded (``birds`` -> ``bird``)."""
    return [_stem(t) for t in _TOKEN_RE.findall(text.lower()) if t not in STOPWORDS and len(t) > 1]


def _hash64(text: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised over uint64."""
    x = values + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


# --------------------------------------------------------------------------- query embeddings


BF16_ENV_VAR = "IE_ENV_QUERY_BF16"


def _bf16_is_fast() -> bool:
    """Whether this CPU runs bfloat16 matmuls natively (AVX512-BF16 or AMX); ``IE_ENV_QUERY_BF16=0`` opts out."""
    if os.environ.get(BF16_ENV_VAR, "1") == "0":
        return False
    try:
        import torch

        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:  # noqa: BLE001 - private torch helpers may move; then plain float32
        return False


def _direct_embedder() -> Callable[[Sequence[str]], np.ndarray]:
    """MiniLM forward pass without sentence-transformers' per-call overhead (about 20% less CPU for
    short queries), in bfloat16 autocast where the CPU has native bfloat16 (about 2.5x faster; cosine
    to the float32 embedding > 0.9999 on WordNet lemmas). Falls back to :func:`embed_texts` unless it
    reproduces its output on a probe (cosine > 0.999)."""
    try:
        import contextlib

        import torch

        from ie_env.concepts.textembed import load_text_model

        model = load_text_model()
        tokenizer, bert = model.tokenizer, model[0].auto_model
        max_length = int(getattr(model, "max_seq_length", 256) or 256)

        def make(bf16: bool) -> Callable[[Sequence[str]], np.ndarray]:
            def direct(texts: Sequence[str]) -> np.ndarray:
                autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
                with torch.inference_mode(), autocast:
                    encoded = tokenizer(
                        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
                    )
                    hidden = bert(**encoded).last_hidden_state.float()
                    mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    return torch.nn.functional.normalize(pooled, dim=1).float().numpy()

            return direct

        probe = ["owl", "a red bicycle leaning on a wall", "Canis familiaris", "screech owl"]
        reference = embed_texts(probe)
        for bf16 in (True, False) if _bf16_is_fast() else (False,):
            direct = make(bf16)
            if float((direct(probe) * reference).sum(axis=1).min()) > 0.999:
                return direct
    except Exception:  # noqa: BLE001 - any mismatch in the model's layout means: use the public path
        pass
    return lambda texts: embed_texts(texts, batch_size=128)


class QueryEmbedder:
    """Query embeddings with an in-memory LRU cache; thread-safe; one model call per batch of misses.

    Args:
        capacity: cached queries.
        embed: function from texts to L2-normalised float32 (n, 384) rows (default: the MiniLM model).
    """

    def __init__(
        self, capacity: int = 100_000, embed: Callable[[Sequence[str]], np.ndarray] | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError(f"QueryEmbedder.capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._embed = embed
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def cached(self, query: str) -> np.ndarray | None:
        key = normalize_query(query)
        with self._lock:
            vector = self._cache.get(key)
            if vector is not None:
                self._cache.move_to_end(key)
                self.hits += 1
            return vector

    def embed(self, queries: Sequence[str]) -> np.ndarray:
        """Embeddings for ``queries`` (float32, (n, 384)), computing all cache misses in one batch."""
        keys = [normalize_query(q) for q in queries]
        out = np.empty((len(keys), EMBED_DIM), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                vector = self._cache.get(key)
                if vector is None:
                    missing.setdefault(key, []).append(i)
                else:
                    self._cache.move_to_end(key)
                    out[i] = vector
            self.hits += len(keys) - sum(len(v) for v in missing.values())
            self.misses += len(missing)
        if missing:
            texts = list(missing)
            with self._model_lock:
                if self._embed is None:
                    self._embed = _direct_embedder()
                vectors = np.asarray(self._embed(texts), dtype=np.float32)
            with self._lock:
                for text, vector in zip(texts, vectors, strict=True):
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
                    for i in missing[text]:
                        out[i] = vector
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
        return out


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
        if max_batch < 1:
            raise ValueError(f"BatchingEmbedder.max_batch must be >= 1, got {max_batch}")
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
        """(embedding, scorer row or None). With a scorer, every request joins a batch, so the scorer's
        matrix product (e.g. against all caption embeddings) is shared by the whole batch."""
        if self._closed:
            raise RuntimeError("BatchingEmbedder is closed")
        future: Future = Future()
        self._queue.put((query, future))
        return future.result(timeout=self.timeout_s)

    def close(self) -> None:
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


# --------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class RankedImage:
    """One search result: corpus row, image id and score (cosine + token boost)."""

    row: int
    id: str
    score: float


class CaptionIndex:
    """Caption-embedding search over a corpus, with some images excluded (e.g. a target set's).

    Args:
        corpus: the corpus to search.
        exclude_ids: image ids never returned (ids not in the corpus are ignored).
        boost: added to the cosine for a query whose tokens all occur in the caption (pro rata otherwise).
        embedder: query embedder (default: a new :class:`QueryEmbedder` on MiniLM).
        caption_embeddings: precomputed (distinct captions, 384) rows in :attr:`doc_texts` order
            (default: ``cached_embeddings``).
        progress: progress bar while embedding captions.
        threads: torch threads while embedding captions.
    """

    def __init__(
        self,
        corpus: Corpus,
        exclude_ids: Iterable[str] = (),
        *,
        boost: float = 0.15,
        embedder: QueryEmbedder | None = None,
        caption_embeddings: np.ndarray | None = None,
        progress: bool = True,
        threads: int | None = None,
    ) -> None:
        if not 0.0 <= boost <= 2.0:
            raise ValueError(f"CaptionIndex.boost must be in [0, 2], got {boost}")
        self.corpus = corpus
        self.boost = float(boost)
        self.embedder = embedder or QueryEmbedder()
        doc_index: dict[str, int] = {}
        self.doc_of_row = np.fromiter(
            (doc_index.setdefault(caption, len(doc_index)) for caption in corpus.captions),
            dtype=np.int64,
            count=len(corpus),
        )
        self.doc_texts: list[str] = list(doc_index)
        if caption_embeddings is None:
            caption_embeddings = cached_embeddings(
                f"captions-{corpus.name}", self.doc_texts, show_progress=progress, threads=threads
            )
        if caption_embeddings.shape != (len(self.doc_texts), EMBED_DIM):
            raise ValueError(
                f"caption_embeddings has shape {caption_embeddings.shape}, expected {(len(self.doc_texts), EMBED_DIM)}"
            )
        self.doc_vectors = np.ascontiguousarray(caption_embeddings, dtype=np.float32)
        self.excluded_rows = np.asarray(
            sorted(corpus.row(i) for i in set(exclude_ids) if corpus.has(i)), dtype=np.int64
        )
        self._excluded_ids = frozenset(corpus.ids[r] for r in self.excluded_rows)
        live = np.ones(len(corpus), dtype=bool)
        live[self.excluded_rows] = False
        self.live_rows = int(live.sum())
        rows = np.nonzero(live)[0]
        order = np.argsort(self.doc_of_row[rows], kind="stable")
        self._doc_rows = rows[order]
        counts = np.bincount(self.doc_of_row[rows], minlength=len(self.doc_texts))
        self._doc_ptr = np.concatenate([[0], np.cumsum(counts)])
        self._dead_docs = np.where(counts == 0, -np.inf, 0.0).astype(np.float32)
        self._live_docs = int((counts > 0).sum())
        self._row_hash = np.fromiter((_hash64(i) for i in corpus.ids), dtype=np.uint64, count=len(corpus))
        postings: dict[str, list[int]] = {}
        for doc, text in enumerate(self.doc_texts):
            for token in set(tokenize(text)):
                postings.setdefault(token, []).append(doc)
        self._postings = {token: np.asarray(docs, dtype=np.int64) for token, docs in postings.items()}

    def __len__(self) -> int:
        """Number of searchable (not excluded) images."""
        return self.live_rows

    def is_excluded(self, image_id: str) -> bool:
        return image_id in self._excluded_ids

    def search(self, query: str, n: int, offset: int = 0) -> list[RankedImage]:
        """Top results ``offset .. offset+n`` for ``query``, best first (raises InvalidQuery)."""
        text = validate_query(query)
        vector = self.embedder.embed([text])[0]
        return self.rank(text, vector, n, offset)

    def search_many(self, queries: Sequence[str], n: int) -> list[list[RankedImage]]:
        """Top ``n`` for each query, embedding and scoring all of them in one batch."""
        texts = [validate_query(q) for q in queries]
        vectors = self.embedder.embed(texts)
        scores = self.doc_scores(vectors)
        return [self.rank(t, v, n, scores=s) for t, v, s in zip(texts, vectors, scores, strict=True)]

    def doc_scores(self, vectors: np.ndarray) -> np.ndarray:
        """Cosines of query embeddings (B, 384) to every distinct caption: (B, n_docs), one matrix product."""
        return np.asarray(vectors, dtype=np.float32) @ self.doc_vectors.T

    def rank(
        self, query: str, vector: np.ndarray, n: int, offset: int = 0, scores: np.ndarray | None = None
    ) -> list[RankedImage]:
        """Rank with an already computed query embedding; see the module docstring.

        ``scores`` may carry this query's row of :meth:`doc_scores` (batched callers); it is not modified.
        """
        if n < 0 or offset < 0:
            raise ValueError(f"n and offset must be >= 0, got n={n}, offset={offset}")
        need = min(offset + n, self.live_rows)
        if need <= offset:
            return []
        key = normalize_query(query)
        if scores is None:
            scores = self.doc_vectors @ np.asarray(vector, dtype=np.float32)
        else:
            scores = np.array(scores, dtype=np.float32)
        tokens = set(tokenize(key))
        if tokens and self.boost:
            bonus = np.float32(self.boost / len(tokens))
            for token in tokens:
                docs = self._postings.get(token)
                if docs is not None:
                    scores[docs] += bonus
        scores += self._dead_docs
        m = min(need, self._live_docs)
        top = np.argpartition(-scores, m - 1)[:m] if m < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        query_hash = np.uint64(_hash64(key))
        results: list[RankedImage] = []
        for doc in top:
            rows = self._doc_rows[self._doc_ptr[doc] : self._doc_ptr[doc + 1]]
            if len(rows) == 0:
                continue
            take = need - len(results)
            keys = _mix(self._row_hash[rows] ^ query_hash)
            if len(rows) > take:
                part = np.argpartition(keys, take - 1)[:take]
                chosen = rows[part[np.argsort(keys[part], kind="stable")]]
            else:
                chosen = rows[np.argsort(keys, kind="stable")]
            score = float(scores[doc])
            results.extend(RankedImage(int(r), self.corpus.ids[r], score) for r in chosen)
            if len(results) >= need:
                break
        return results[offset:need]
