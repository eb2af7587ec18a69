"""The frozen world: a fixed encoder, precomputed image rewards and search results, no training.

Built once per (corpus, target, encoder, vocabulary, results per query) and cached on disk:

* every web image's embedding under the fixed encoder, hence its image reward against the target;
  images are preprocessed by the downloader's own decode of the served bytes (one pipeline for
  downloads, targets and corpus arrays);
* every concept's top ``results_per_query`` web images, ranked by the same caption index the HTTP
  server uses, with the target's images excluded, for the query text the full env sends
  (:attr:`ie_env.concepts.vocabulary.Vocabulary.query_texts`);
* every web image's sha256 and perceptual hash, as the downloader computes them.

A step is then a table lookup. The query's images go, in rank order, through the same
:class:`~ie_env.download.dedup.Deduplicator` rule the full env's store applies (exact sha256 or
perceptual-hash near-duplicates of anything this episode already has), images below the
downloader's ``min_size`` count as ``too_small``, and the reward is the mean of the top-10 rewards
of the new images. So with the same encoder, the frozen and the full env return the same hits, the
same dedup outcome and the same rewards (up to the float16 storage of the embeddings).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ie_env.concepts.descriptors import QueryRanker
from ie_env.concepts.vocabulary import Vocabulary
from ie_env.config import EnvConfig
from ie_env.download.config import DownloadConfig
from ie_env.download.dedup import Deduplicator
from ie_env.learn.reward import concept_score
from ie_env.web.index import CaptionIndex
from ie_env.worlds.base import QueryOutcome
from ie_env.worlds.common import announce, corpus_embeddings, evaluate_learner, make_learner, open_target
from ie_env.worlds.frozen_tables import concept_results


class FrozenWorld:
    """See the module docstring."""

    def __init__(self, config: EnvConfig, vocabulary: Vocabulary, progress: bool = True) -> None:
        self.config = config
        self.target = open_target(config, progress=progress)
        self.corpus = self.target.corpus
        if progress:
            announce(f"indexing the captions of {len(self.corpus):,} web images")
        self.index = CaptionIndex(
            self.corpus, self.target.excluded_ids, progress=progress, threads=config.threads
        )
        self.learner = make_learner(config, self.target, progress=progress)
        self.row_embeddings = corpus_embeddings(self.learner, self.corpus, progress)
        self.row_rewards = self.learner.score_embeddings(self.row_embeddings).astype(np.float32)
        self.relevant = self.target.relevant_mask
        if progress:
            announce(f"ranking the search results of {len(vocabulary):,} concept queries (cached)")
        self.results = concept_results(
            self.index,
            vocabulary.query_texts,
            config.results_per_query,
            vocabulary.cache_name(),
            progress,
            vectors=lambda: vocabulary.query_embeddings(show_progress=progress),
        )
        sha256, phashes = self.corpus.image_hashes(config.image_size, progress=progress)
        self.row_sha256 = sha256
        self.row_phash = phashes
        download = DownloadConfig(**{"image_size": config.image_size, **config.download_overrides})
        self.phash_threshold = download.phash_threshold
        self.too_small = np.minimum(self.corpus.widths, self.corpus.heights) < download.min_size
        self.titles = self.corpus.titles
        self.concept_top = self.learner.config.concept_top
        self._test: np.ndarray | None = None
        self.dedup = Deduplicator(self.phash_threshold)
        self._position = {int(cid): pos for pos, cid in enumerate(vocabulary.ids)}
        self._concept_queries = vocabulary.query_texts
        self._ranker = QueryRanker(self.index, config.results_per_query)

    def reset(self, rng: np.random.Generator) -> None:
        """Forget this episode's images (the encoder is fixed, so nothing else changes)."""
        self.dedup = Deduplicator(self.phash_threshold)

    def query(self, query: str, concept_id: int) -> QueryOutcome:
        """Look up the concept's results and "download" the ones this episode does not have yet."""
        position = self._position[concept_id]
        rows = self.results[position]
        if query != self._concept_queries[position]:
            rows = self._ranker(query)  # a descriptor query: ranked on the fly, as the server would
        rows = rows[rows >= 0]
        if len(rows) == 0:
            return QueryOutcome(0.0, "no_images")
        statuses = []
        new = []
        for row in rows:
            if self.too_small[row]:
                statuses.append("too_small")
            elif self.dedup.admit(self.row_sha256[row], int(self.row_phash[row])):
                statuses.append("ok")
                new.append(row)
            else:
                statuses.append("duplicate")
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        new_rows = np.asarray(new, dtype=np.int64)
        rewards = self.row_rewards[new_rows]
        reward, status = concept_score(rewards, top=self.concept_top)
        return QueryOutcome(
            reward=reward,
            status=status,
            image_rewards=rewards.tolist(),
            image_captions=[self.titles[r] for r in new],
            image_statuses=statuses,
            download_counts=counts,
            hits=len(rows),
            hit_ids=[self.corpus.ids[r] for r in rows],
            relevant_fraction=float(self.relevant[new_rows].mean()) if len(new_rows) else None,
        )

    def concept_relevance(self) -> np.ndarray:
        """PRIVILEGED: per action position, the share of target-category images among its results."""
        valid = self.results >= 0
        hits = np.where(valid, self.relevant[np.maximum(self.results, 0)], False)
        return (hits.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)).astype(np.float32)

    def train(self, steps: int | None) -> dict[str, Any]:
        """No training: the encoder is fixed."""
        return {}

    def end_iteration(self, evaluate: bool) -> dict[str, Any]:
        """Nothing to train or evaluate per iteration (the encoder is fixed)."""
        return {}

    def evaluate(self) -> dict[str, Any]:
        """k-NN and linear-probe accuracy of the fixed encoder on the target's test split."""
        if self._test is None:
            self._test = self.target.test_images(self.config.image_size)
        return evaluate_learner(self.learner, self._test, self.target.test_labels)

    def close(self) -> None:
        """Drop the caption index."""
        self.index = None  # type: ignore[assignment]
