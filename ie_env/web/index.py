"""The one caption ranking: used by the offline web's search server and the in-process caption index.

Score of a document for a query = cosine(query embedding, caption embedding) + ``boost`` x (share of the
query's tokens found among the caption's tokens). Documents with the same caption tie; ties are broken by
a hash of (normalised query, document key), so two queries that mean the same class reach different
documents, as on a real engine. Every valid query returns results (top-k of everything not excluded),
best first.

:class:`CaptionRanking` ranks any list of (caption, key) documents: the
:class:`~ie_env.search.caption_index.CaptionIndexEngine` ranks table rows keyed by URL with it.
:class:`CaptionIndex` is the ranking over a :class:`~ie_env.web.corpus.Corpus`, keyed by image id, with
a target set's images excluded. Captions are embedded once per *distinct* caption (the 60,000 shop
photos share a few dozen captions) with ``ie_env.concepts.textembed.cached_embeddings``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ie_env.search.base import validate_query
from ie_env.validate import check_number
from ie_env.web.embedder import BatchingEmbedder, QueryEmbedder, normalize_query

if TYPE_CHECKING:
    from ie_env.web.corpus import Corpus

__all__ = [
    "DEFAULT_BOOST",
    "BatchingEmbedder",
    "CaptionIndex",
    "CaptionRanking",
    "QueryEmbedder",
    "RankedImage",
    "normalize_query",
    "tokenize",
]

DEFAULT_BOOST = 0.15
STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it", "of", "on",
     "or", "the", "to", "with", "without", "this", "that", "its"}
)  # fmt: skip
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _stem(token: str) -> str:
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 4 and token.endswith(("ches", "shes", "sses", "xes")):
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Return lower-case word tokens with stop words dropped and plurals folded (``birds`` -> ``bird``)."""
    return [_stem(t) for t in _TOKEN_RE.findall(text.lower()) if t not in STOPWORDS and len(t) > 1]


def _hash64(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(values: np.ndarray) -> np.ndarray:
    """Apply the splitmix64 finaliser, vectorised over uint64."""
    x = values + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def top_documents(scores: np.ndarray, m: int) -> np.ndarray:
    """The ``m`` best documents of one query's ``scores``, best first; equal scores by document index.

    The tie rule is part of the ranking (the frozen world's vectorised ranking follows it too): among
    documents with the same score, the lower index ranks first, also at the cut.
    """
    if m < len(scores):
        threshold = scores[np.argpartition(-scores, m - 1)[m - 1]]
        candidates = np.flatnonzero(scores >= threshold)  # ascending index, ties at the cut included
    else:
        candidates = np.arange(len(scores))
    return candidates[np.argsort(-scores[candidates], kind="stable")[:m]]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads and restore the caller's count after (None: no change)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class RankedImage:
    """One search result: document row, its key (an image id or URL) and score (cosine + token boost)."""

    row: int
    id: str
    score: float


class CaptionRanking:
    """The ranking over documents that each have a caption and a key (see the module docstring).

    Args:
        captions: one caption per document (row).
        keys: one key per document, hashed to break ties (image ids, URLs).
        embed_captions: embeds the distinct captions (in first-seen order) to L2-normalised float32 rows.
        excluded_rows: rows never returned.
        boost: added to the cosine for a query whose tokens all occur in the caption (pro rata otherwise).
        embedder: query embedder (default: a new :class:`QueryEmbedder` on MiniLM).
    """

    def __init__(
        self,
        captions: Sequence[str],
        keys: Sequence[str],
        embed_captions: Callable[[list[str]], np.ndarray],
        *,
        excluded_rows: Iterable[int] = (),
        boost: float = DEFAULT_BOOST,
        embedder: QueryEmbedder | None = None,
    ) -> None:
        check_number(self, "boost", 0.0, 2.0, value=boost)
        if len(captions) != len(keys):
            raise ValueError(f"CaptionRanking: {len(captions)} captions but {len(keys)} keys")
        self.boost = float(boost)
        self.embedder = embedder or QueryEmbedder()
        self.keys = list(keys)
        doc_index: dict[str, int] = {}
        self.doc_of_row = np.fromiter(
            (doc_index.setdefault(caption, len(doc_index)) for caption in captions),
            dtype=np.int64,
            count=len(captions),
        )
        self.doc_texts: list[str] = list(doc_index)
        vectors = np.ascontiguousarray(embed_captions(self.doc_texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(self.doc_texts):
            raise ValueError(
                f"caption embeddings have shape {vectors.shape}, expected ({len(self.doc_texts)}, d)"
            )
        self.doc_vectors = vectors
        self.excluded_rows = np.asarray(sorted(set(excluded_rows)), dtype=np.int64)
        self._index_rows()

    def _index_rows(self) -> None:
        live = np.ones(len(self.keys), dtype=bool)
        live[self.excluded_rows] = False
        self.live_rows = int(live.sum())
        rows = np.nonzero(live)[0]
        self._doc_rows = rows[np.argsort(self.doc_of_row[rows], kind="stable")]
        counts = np.bincount(self.doc_of_row[rows], minlength=len(self.doc_texts))
        self._doc_ptr = np.concatenate([[0], np.cumsum(counts)])
        self._dead_docs = np.where(counts == 0, -np.inf, 0.0).astype(np.float32)
        self._live_docs = int((counts > 0).sum())
        self._row_hash = np.fromiter((_hash64(k) for k in self.keys), dtype=np.uint64, count=len(self.keys))
        postings: dict[str, list[int]] = {}
        for doc, text in enumerate(self.doc_texts):
            for token in set(tokenize(text)):
                postings.setdefault(token, []).append(doc)
        self._postings = {token: np.asarray(docs, dtype=np.int64) for token, docs in postings.items()}

    def without_exclusions(self) -> CaptionRanking:
        """This ranking with no row excluded (itself when none is); shares the caption embeddings."""
        if not len(self.excluded_rows):
            return self
        other = copy.copy(self)
        other.excluded_rows = np.zeros(0, dtype=np.int64)
        other._index_rows()
        return other

    def __len__(self) -> int:
        """Return the number of searchable (not excluded) rows."""
        return self.live_rows

    def search(self, query: str, n: int, offset: int = 0) -> list[RankedImage]:
        """Return the results ``offset .. offset+n`` for ``query``, best first (raises InvalidQuery)."""
        text = validate_query(query)
        vector = self.embedder.embed([text])[0]
        return self.rank(text, vector, n, offset)

    def search_many(self, queries: Sequence[str], n: int) -> list[list[RankedImage]]:
        """Return the top ``n`` for each query, embedding and scoring all of them in one batch."""
        texts = [validate_query(q) for q in queries]
        vectors = self.embedder.embed(texts)
        scores = self.doc_scores(vectors)
        return [self.rank(t, v, n, scores=s) for t, v, s in zip(texts, vectors, scores, strict=True)]

    def doc_scores(self, vectors: np.ndarray) -> np.ndarray:
        """Return cosines of query embeddings (B, d) to every distinct caption, (B, n_docs), in one product."""
        return np.asarray(vectors, dtype=np.float32) @ self.doc_vectors.T

    def rank(
        self, query: str, vector: np.ndarray, n: int, offset: int = 0, scores: np.ndarray | None = None
    ) -> list[RankedImage]:
        """Rank with an already computed query embedding; see the module docstring.

        Args:
            query: the (valid) query text; its normalised form seeds the tie-break hash.
            vector: the query's embedding.
            n: results wanted.
            offset: results skipped (pagination).
            scores: this query's row of :meth:`doc_scores` (batched callers); it is not modified.

        Returns:
            Up to ``n`` results, best first.
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
        top = top_documents(scores, min(need, self._live_docs))
        return self._expand(top, scores, np.uint64(_hash64(key)), need)[offset:need]

    def _expand(self, docs: np.ndarray, scores: np.ndarray, query_hash: np.uint64, need: int) -> list:
        """Turn ranked documents into ranked rows, ordering the rows of one caption by the tie-break hash."""
        results: list[RankedImage] = []
        for doc in docs:
            rows = self._doc_rows[self._doc_ptr[doc] : self._doc_ptr[doc + 1]]
            if len(rows) == 0:
                continue
            take = need - len(results)
            hashes = _mix(self._row_hash[rows] ^ query_hash)
            if len(rows) > take:
                part = np.argpartition(hashes, take - 1)[:take]
                chosen = rows[part[np.argsort(hashes[part], kind="stable")]]
            else:
                chosen = rows[np.argsort(hashes, kind="stable")]
            score = float(scores[doc])
            results.extend(RankedImage(int(r), self.keys[r], score) for r in chosen)
            if len(results) >= need:
                break
        return results


class CaptionIndex(CaptionRanking):
    """The caption ranking over a corpus, keyed by image id, with some images excluded (a target set's).

    Args:
        corpus: the corpus to search.
        exclude_ids: image ids never returned (ids not in the corpus are ignored).
        boost: see :class:`CaptionRanking`.
        embedder: query embedder (default: a new :class:`QueryEmbedder` on MiniLM).
        caption_embeddings: precomputed (distinct captions, 384) rows in :attr:`doc_texts` order
            (default: ``cached_embeddings``).
        progress: progress bar while embedding captions.
        threads: torch threads while embedding captions only; the caller's count is restored after.
    """

    def __init__(
        self,
        corpus: Corpus,
        exclude_ids: Iterable[str] = (),
        *,
        boost: float = DEFAULT_BOOST,
        embedder: QueryEmbedder | None = None,
        caption_embeddings: np.ndarray | None = None,
        progress: bool = True,
        threads: int | None = None,
    ) -> None:
        def embed_captions(texts: list[str]) -> np.ndarray:
            if caption_embeddings is not None:
                return caption_embeddings
            from ie_env.concepts.textembed import cached_embeddings

            with torch_threads(threads):
                return cached_embeddings(f"captions-{corpus.name}", texts, show_progress=progress)

        self.corpus = corpus
        excluded = sorted(corpus.row(i) for i in set(exclude_ids) if corpus.has(i))
        super().__init__(
            corpus.captions,
            corpus.ids,
            embed_captions,
            excluded_rows=excluded,
            boost=boost,
            embedder=embedder,
        )
        self._excluded_ids = frozenset(corpus.ids[r] for r in self.excluded_rows)

    def is_excluded(self, image_id: str) -> bool:
        """Return whether an image id is excluded from the results."""
        return image_id in self._excluded_ids
