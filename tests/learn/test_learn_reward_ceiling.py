"""The ceiling simulation of benchmarks/reward.py on small hand-made frozen-world tables."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _reward_sim import (  # noqa: E402
    Tables,
    ceiling_gap,
    greedy_fraction,
    oracle_fraction,
    random_fraction,
    relevance,
)


def _tables(seed: int = 0, n_concepts: int = 400, n_rows: int = 2000, n: int = 5) -> Tables:
    """Concepts 0..39 return mostly relevant rows (rows 0..199), the rest return other rows."""
    rng = np.random.default_rng(seed)
    relevant = np.zeros(n_rows, dtype=bool)
    relevant[:200] = True
    results = rng.integers(200, n_rows, size=(n_concepts, n))
    results[:40] = rng.integers(0, 200, size=(40, n))
    results[:40, -1] = rng.integers(200, n_rows, size=40)  # one irrelevant result each
    results[-5:, 2:] = -1  # a few concepts with fewer results
    return Tables(
        results=results.astype(np.int32),
        relevant=relevant,
        searchable=np.ones(n_rows, dtype=bool),
        too_small=np.zeros(n_rows, dtype=bool),
        sha_codes=np.arange(n_rows),
        phash=rng.integers(0, 2**63, size=n_rows, dtype=np.int64).astype(np.uint64),
        threshold=4,
    )


def test_perfect_reward_reaches_the_oracle_and_noise_stays_near_random() -> None:
    tab = _tables()
    budget = 30
    low = np.mean([random_fraction(tab, budget, s) for s in range(5)])
    high = np.mean([oracle_fraction(tab, budget, s) for s in range(5)])
    assert high > 0.7 and low < 0.2
    perfect = greedy_fraction(tab, tab.relevant.astype(np.float32), budget, 0)
    noise = np.random.default_rng(1).random(len(tab.relevant)).astype(np.float32)
    assert ceiling_gap(perfect, (low, high)) > 0.9
    assert ceiling_gap(greedy_fraction(tab, noise, budget, 0), (low, high)) < 0.4


def test_greedy_counts_only_new_images() -> None:
    """Two concepts with the same results: after one is taken the other has nothing new (score 0)."""
    tab = _tables(n_concepts=50)
    tab.results[1] = tab.results[0]
    rewards = np.zeros(len(tab.relevant), dtype=np.float32)
    rewards[tab.results[0]] = 1.0  # concept 0 (and its copy 1) are the best
    rewards[tab.results[2]] = 0.5  # then concept 2
    assert set(tab.results[2].tolist()).isdisjoint(tab.results[0].tolist())
    tab.relevant[:] = False
    tab.relevant[tab.results[2]] = True
    # budget 2: take 0 (or its copy), then 2, never the copy (no new images)
    fraction = greedy_fraction(tab, rewards, 2, 0)
    assert fraction == pytest.approx(0.5)


def test_near_duplicates_are_not_new() -> None:
    """A row whose phash is 1 bit from an admitted one is a near-duplicate under the frozen world's rule."""
    tab = _tables(n_concepts=50)
    a, b = int(tab.results[0, 0]), int(tab.results[3, 0])
    tab.phash[b] = tab.phash[a] ^ np.uint64(1)
    tab.results[3, 1:] = -1
    rewards = np.zeros(len(tab.relevant), dtype=np.float32)
    rewards[tab.results[0]] = 1.0
    rewards[b] = 0.9
    tab.relevant[:] = False
    tab.relevant[b] = True
    assert greedy_fraction(tab, rewards, 2, 0) == 0.0  # b is never admitted
    assert relevance(tab)[3] == 1.0


def test_gap_is_nan_without_a_gap() -> None:
    assert np.isnan(ceiling_gap(0.5, (0.2, 0.2)))
    assert ceiling_gap(0.6, (0.2, 1.0)) == pytest.approx(0.5)
