"""How well the env's reward points at the target: measured on the frozen world's tables.

These read ground truth (which web images belong to the target), so they are for tests,
benchmarks and analysis, never for agents:

* :func:`fresh_concept_scores`: every concept's reward at the start of an episode (all its results
  new), from the precomputed image rewards;
* :func:`auc`: the probability that a random positive scores above a random negative (ties count
  half), the Mann-Whitney statistic;
* :func:`concept_reward_auc`: the AUC of the concept reward for "its results are mostly target
  images" against all other concepts with results.
"""

from __future__ import annotations

import numpy as np

MOSTLY_RELEVANT = 0.5


def fresh_concept_scores(results: np.ndarray, row_rewards: np.ndarray, top: int = 10) -> np.ndarray:
    """Return each concept's score with nothing downloaded yet: the mean of its top-``top`` image rewards.

    Args:
        results: (n_concepts, k) corpus rows, -1 where fewer results came back.
        row_rewards: image reward of every corpus row.
        top: how many of the best image rewards are averaged (the paper's 10).

    Returns:
        float32 (n_concepts,), 0.0 for a concept without results.
    """
    valid = results >= 0
    rewards = np.where(valid, row_rewards[np.maximum(results, 0)], -np.inf)
    top = min(top, rewards.shape[1])
    best = -np.sort(-rewards, axis=1)[:, :top]
    counted = np.isfinite(best)
    sums = np.where(counted, best, 0.0).sum(axis=1)
    return (sums / np.maximum(counted.sum(axis=1), 1)).astype(np.float32)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Return the ROC AUC of ``scores`` for the boolean labels ``positive`` (ties count half).

    Raises:
        ValueError: when there is no positive or no negative example.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs positives and negatives, got {n_pos} and {n_neg}")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for lo, hi in zip(starts, ends, strict=True):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def concept_reward_auc(
    results: np.ndarray, row_rewards: np.ndarray, relevant: np.ndarray, top: int = 10
) -> dict[str, float]:
    """AUC of the fresh concept reward for "at least half of its results are target images".

    Concepts without results are left out. Returns ``auc``, the counts of ``positives`` and
    ``negatives``, and the mean reward of each group.
    """
    valid = results >= 0
    has = valid.any(axis=1)
    share = np.where(valid, relevant[np.maximum(results, 0)], False).sum(axis=1) / np.maximum(
        valid.sum(axis=1), 1
    )
    scores = fresh_concept_scores(results, row_rewards, top)[has]
    positive = share[has] >= MOSTLY_RELEVANT
    return {
        "auc": auc(scores, positive),
        "positives": int(positive.sum()),
        "negatives": int((~positive).sum()),
        "mean_reward_positive": float(scores[positive].mean()) if positive.any() else float("nan"),
        "mean_reward_negative": float(scores[~positive].mean()) if (~positive).any() else float("nan"),
    }
