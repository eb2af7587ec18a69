"""Episode simulation on the frozen world's tables, for ``benchmarks/reward.py`` (PRIVILEGED: reads ground truth).

An episode takes ``budget`` actions; each action's search results (``Tables.results``) go, in rank
order, through the frozen world's admission rule: ``too_small`` images are skipped and the rest pass
the one :class:`~ie_env.download.dedup.Deduplicator` (sha256 of the served bytes, perceptual-hash
near-duplicates). The metric is the relevant share of all admitted images.

* random: uniform i.i.d. actions;
* oracle: each concept once, by the ground-truth relevant share of its results (random tie-break);
* greedy (the ceiling): every step, the concept whose *not yet admitted* images have the highest
  concept score (mean of the top-10 image rewards, 0.0 without new images; random tie-break).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TOP = 10


@dataclass
class Tables:
    """A frozen world's tables for one target and results-per-query."""

    results: np.ndarray  # (n_concepts, n) corpus rows, -1 padded
    relevant: np.ndarray  # bool per corpus row
    searchable: np.ndarray  # bool per corpus row (not excluded from the index)
    too_small: np.ndarray  # bool per corpus row
    sha_codes: np.ndarray  # int per corpus row (equal codes = equal sha256)
    phash: np.ndarray  # uint64 per corpus row
    threshold: int
    baseline: tuple[float, float] = field(default=(0.0, 0.0))

    @classmethod
    def build(cls, target: str, n: int, image_size: int) -> Tables:
        """The frozen world's tables (cached on disk by the frozen world's own functions)."""
        from ie_env.concepts.vocabulary import Vocabulary
        from ie_env.config import EnvConfig
        from ie_env.download.config import DownloadConfig
        from ie_env.web.index import CaptionIndex
        from ie_env.worlds.common import open_target
        from ie_env.worlds.frozen_tables import concept_results

        config = EnvConfig(
            target=target, frozen=True, results_per_query=n, image_size=image_size, progress=False
        )
        opened = open_target(config, progress=False)
        corpus = opened.corpus
        vocabulary = Vocabulary("full")
        index = CaptionIndex(corpus, opened.excluded_ids, progress=False)
        results = concept_results(
            index,
            vocabulary.query_texts,
            n,
            vocabulary.cache_name(),
            progress=True,
            vectors=lambda: vocabulary.query_embeddings(show_progress=True),
        )
        sha, phash = corpus.image_hashes(image_size, progress=False)
        download = DownloadConfig(image_size=image_size)
        searchable = np.ones(len(corpus), dtype=bool)
        searchable[[corpus.row(i) for i in opened.excluded_ids if corpus.has(i)]] = False
        return cls(
            results=np.asarray(results),
            relevant=np.asarray(opened.relevant_mask, dtype=bool),
            searchable=searchable,
            too_small=np.minimum(corpus.widths, corpus.heights) < download.min_size,
            sha_codes=np.unique(np.asarray(sha), return_inverse=True)[1],
            phash=np.asarray(phash, dtype=np.uint64),
            threshold=download.phash_threshold,
        )


class _Episode:
    """Admissions of one episode (the frozen world's rule) and which rows are no longer new."""

    def __init__(self, tab: Tables, track: bool) -> None:
        from ie_env.download.dedup import Deduplicator

        self.tab = tab
        self.dedup = Deduplicator(tab.threshold)
        self.track = track
        self.blocked = tab.too_small.copy()
        self.new = 0
        self.relevant = 0

    def take(self, position: int) -> np.ndarray:
        """Query one concept; returns the rows that became "not new" (when tracking)."""
        from ie_env.download.dedup import hamming

        tab = self.tab
        rows = tab.results[position]
        changed = []
        for row in rows[rows >= 0]:
            if tab.too_small[row] or not self.dedup.admit(f"{tab.sha_codes[row]}", int(tab.phash[row])):
                continue
            self.new += 1
            self.relevant += int(tab.relevant[row])
            if self.track:
                hit = (tab.sha_codes == tab.sha_codes[row]) | (
                    hamming(tab.phash, int(tab.phash[row])) <= tab.threshold
                )
                hit &= ~self.blocked
                self.blocked |= hit
                changed.append(np.flatnonzero(hit))
        return np.concatenate(changed) if changed else np.zeros(0, dtype=np.int64)

    @property
    def fraction(self) -> float:
        return self.relevant / self.new if self.new else 0.0


def random_fraction(tab: Tables, budget: int, seed: int) -> float:
    """Relevant fraction of uniform i.i.d. actions."""
    episode = _Episode(tab, track=False)
    for position in np.random.default_rng(seed).integers(len(tab.results), size=budget):
        episode.take(int(position))
    return episode.fraction


def relevance(tab: Tables) -> np.ndarray:
    """PRIVILEGED: the ground-truth relevant share of every concept's results."""
    valid = tab.results >= 0
    hits = np.where(valid, tab.relevant[np.maximum(tab.results, 0)], False).sum(axis=1)
    return hits / np.maximum(valid.sum(axis=1), 1)


def oracle_fraction(tab: Tables, budget: int, seed: int) -> float:
    """Relevant fraction of the relevance oracle (each concept once, most relevant first)."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(tab.results)), -relevance(tab)))
    episode = _Episode(tab, track=False)
    for position in order[:budget]:
        episode.take(int(position))
    return episode.fraction


def _scores(values: np.ndarray) -> np.ndarray:
    """Mean of the top-``TOP`` finite values per row, 0.0 for a row without one."""
    best = -np.sort(-values, axis=1)[:, :TOP]
    kept = np.isfinite(best)
    return np.where(kept, best, 0.0).sum(axis=1) / np.maximum(kept.sum(axis=1), 1)


def greedy_fraction(tab: Tables, rewards: np.ndarray, budget: int, seed: int) -> float:
    """Relevant fraction of the greedy agent on the true score of every concept's new images."""
    rng = np.random.default_rng(seed)
    results = tab.results
    valid = results >= 0
    rows = np.maximum(results, 0)
    values = np.where(valid & ~tab.too_small[rows], rewards[rows].astype(np.float64), -np.inf)
    scores = _scores(values)
    flat = np.flatnonzero(valid.ravel())
    by_row = np.argsort(rows.ravel()[flat], kind="stable")
    cells = flat[by_row]
    starts = np.searchsorted(rows.ravel()[cells], np.arange(len(tab.relevant) + 1))
    episode = _Episode(tab, track=True)
    for _ in range(budget):
        best = np.flatnonzero(scores == scores.max())
        changed = episode.take(int(rng.choice(best)))
        if len(changed) == 0:
            continue
        hit = np.concatenate([cells[starts[r] : starts[r + 1]] for r in changed])
        values.ravel()[hit] = -np.inf
        concepts = np.unique(hit // results.shape[1])
        scores[concepts] = _scores(values[concepts])
    return episode.fraction


def ceiling_gap(fraction: float, baseline: tuple[float, float]) -> float:
    """(fraction - random) / (oracle - random); NaN when the oracle is no better than random."""
    low, high = baseline
    return float((fraction - low) / (high - low)) if high > low else float("nan")
