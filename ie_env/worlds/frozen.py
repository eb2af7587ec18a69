"""The frozen world: a fixed encoder, precomputed image rewards and search results, no training.

Built once per (corpus, target, encoder, vocabulary, results per query) and cached on disk:

* every web image's embedding under the fixed encoder, hence its image reward against the target;
* every concept's top ``results_per_query`` web images, ranked by the same :class:`CaptionIndex`
  (caption-embedding cosine + token boost, hash tie-break) the HTTP server uses, with the target's
  images excluded, for the query text the full env would send (the lemma).

A step is then a table lookup: the query's images not yet obtained this episode are "downloaded"
(the full env's store deduplicates the same way), and the reward is the mean of their top-10 rewards.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from ie_env.concepts.textembed import cached_embeddings, texts_key
from ie_env.concepts.vocabulary import Vocabulary
from ie_env.config import EnvConfig
from ie_env.learn.reward import concept_score
from ie_env.paths import atomic_path, cache_subdir
from ie_env.web.index import CaptionIndex, InvalidQuery, normalize_query, validate_query
from ie_env.worlds.base import QueryOutcome
from ie_env.worlds.common import encoder_fingerprint, evaluate_learner, make_learner, open_target

RANK_CHUNK = 2048


def _load_or_build(path, build, expected_shape=None):
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


def concept_results(
    index: CaptionIndex, queries: list[str], n: int, cache_name: str, progress: bool = True
) -> np.ndarray:
    """Top-``n`` corpus rows for every query, (len(queries), n) int32, -1 where fewer came back.

    Query embeddings and the table are cached on disk; invalid queries get no results.
    """
    keys = []
    for query in queries:
        try:
            keys.append(normalize_query(validate_query(query)))
        except InvalidQuery:
            keys.append("")
    distinct = sorted({k for k in keys if k})
    digest = hashlib.sha256(f"{texts_key(distinct)}|{n}|{index.corpus.key}|".encode())
    digest.update(np.asarray(index.excluded_rows).tobytes())
    digest.update(f"{index.boost}|{len(index.doc_texts)}".encode())
    path = cache_subdir("frozen") / f"results-{cache_name}-{digest.hexdigest()[:20]}.npy"

    def build() -> np.ndarray:
        vectors = cached_embeddings(f"queries-{cache_name}", distinct, show_progress=progress)
        position = {k: i for i, k in enumerate(distinct)}
        table = np.full((len(distinct), n), -1, dtype=np.int32)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(distinct), desc="ranking concept queries", unit="query")
        for lo in range(0, len(distinct), RANK_CHUNK):
            chunk = vectors[lo : lo + RANK_CHUNK]
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

    return _load_or_build(path, build, (len(queries), n))


class FrozenWorld:
    """See the module docstring."""

    def __init__(self, config: EnvConfig, vocabulary: Vocabulary, progress: bool = True) -> None:
        started = time.perf_counter()
        self.config = config
        self.target = open_target(config, progress=progress)
        self.corpus = self.target.corpus
        self.index = CaptionIndex(
            self.corpus, self.target.excluded_ids, progress=progress, threads=config.threads
        )
        self.learner = make_learner(config, self.target)
        fingerprint = encoder_fingerprint(self.learner)
        size = config.image_size

        def embed_corpus() -> np.ndarray:
            return self.learner.embed(self.corpus.load_images(None, size, progress=progress)).astype(
                np.float16
            )

        path = cache_subdir("frozen") / f"embeddings-{self.corpus.name}-{self.corpus.key}-{fingerprint}.npy"
        self.row_embeddings = _load_or_build(path, embed_corpus).astype(np.float32)
        self.row_rewards = self.learner.score_embeddings(self.row_embeddings).astype(np.float32)
        self.relevant = self.target.relevant_mask
        self.results = concept_results(
            self.index, vocabulary.lemmas, config.results_per_query, vocabulary.cache_name(), progress
        )
        self.concept_top = self.learner.config.concept_top
        self._test: np.ndarray | None = None
        self.seen = np.zeros(len(self.corpus), dtype=bool)
        self._position = {int(cid): pos for pos, cid in enumerate(vocabulary.ids)}
        self.build_seconds = time.perf_counter() - started

    def reset(self, rng: np.random.Generator) -> None:
        self.seen[:] = False

    def query(self, query: str, concept_id: int) -> QueryOutcome:
        started = time.perf_counter()
        rows = self.results[self._position[concept_id]]
        rows = rows[rows >= 0]
        if len(rows) == 0:
            return QueryOutcome(0.0, "no_images", seconds={"search": time.perf_counter() - started})
        fresh = ~self.seen[rows]
        new = rows[fresh]
        self.seen[new] = True
        rewards = self.row_rewards[new]
        reward, status = concept_score(rewards, top=self.concept_top)
        statuses = ["ok" if f else "duplicate" for f in fresh]
        return QueryOutcome(
            reward=reward,
            status=status,
            image_rewards=rewards.tolist(),
            image_statuses=statuses,
            download_counts={"ok": int(fresh.sum()), "duplicate": int((~fresh).sum())},
            hits=len(rows),
            relevant_fraction=float(self.relevant[new].mean()) if len(new) else None,
            seconds={"search": time.perf_counter() - started},
        )

    def train(self, steps: int | None) -> dict[str, Any]:
        return {}

    def end_iteration(self, evaluate: bool) -> dict[str, Any]:
        return {}

    def evaluate(self) -> dict[str, Any]:
        if self._test is None:
            self._test = self.target.test_images(self.config.image_size)
        return evaluate_learner(self.learner, self._test, self.target.test_labels)

    def close(self) -> None:
        self.index = None  # type: ignore[assignment]
