"""The paper's sampling distribution over concepts: temperature softmax, then tiering (CalcProb).

``p(c) ∝ exp((r(c) − max r) / τ)`` with ``τ = (max r − min r) / SMR`` (SMR = 3, so the most likely
concept is ``e³`` times as likely as the least likely one; subtracting the maximum keeps ``exp`` from
overflowing). Then *tiering*: concepts are sorted by probability and each tier is renormalised to
carry a fixed mass. The paper's tiers for 146,347 concepts: the top 250 get 0.8, the next 750 get
0.1, all others 0.1. Smaller vocabularies (fewer than 2,000 concepts) shrink the boundaries in
proportion (``n/8`` and ``n/2``) so that every tier keeps concepts; empty tiers give their mass to
the others in proportion. Ties keep equal probabilities, so equal scores give a uniform draw.
"""

from __future__ import annotations

import numpy as np

SMR = 3.0
TIER_BOUNDARIES = (250, 1000)
TIER_MASSES = (0.8, 0.1, 0.1)


def softmax(scores: np.ndarray, smr: float = SMR) -> np.ndarray:
    """Temperature softmax with ``τ = (max − min) / smr``, max-subtracted; uniform if all equal."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0 or not np.isfinite(scores).all():
        raise ValueError("softmax needs a non-empty 1-d array of finite scores")
    spread = float(scores.max() - scores.min())
    if spread <= 0.0:
        return np.full(len(scores), 1.0 / len(scores))
    weights = np.exp((scores - scores.max()) * (smr / spread))
    return weights / weights.sum()


def tier_boundaries(n: int, boundaries: tuple[int, ...] = TIER_BOUNDARIES) -> tuple[int, ...]:
    """Tier ends for ``n`` concepts: the paper's (250, 1000, n), scaled down below 2,000 concepts."""
    limit = 2 * boundaries[-1]
    ends = list(boundaries) if n >= limit else [max(1, round(b * n / limit)) for b in boundaries]
    clipped: list[int] = []
    for end in ends:
        end = min(end, n)
        if not clipped or end > clipped[-1]:
            clipped.append(end)
    if clipped[-1] < n:
        clipped.append(n)
    return tuple(clipped)


def tiered(
    probabilities: np.ndarray,
    boundaries: tuple[int, ...] = TIER_BOUNDARIES,
    masses: tuple[float, ...] = TIER_MASSES,
) -> np.ndarray:
    """Renormalise ``probabilities`` so that each tier (by descending probability) has its mass.

    Concepts with equal probability keep equal probability: a group of ties that straddles a tier
    boundary shares the group's total mass evenly (so a uniform input stays uniform).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    n = len(p)
    ends = tier_boundaries(n, boundaries)
    if len(ends) > len(masses):  # only when n is tiny and shrinking merged nothing: one tier per mass
        ends = ends[: len(masses) - 1] + (n,)
    kept = np.asarray(masses[: len(ends)], dtype=np.float64)
    kept = kept / kept.sum()
    order = np.argsort(-p, kind="stable")
    out = np.empty(n)
    start = 0
    for end, mass in zip(ends, kept, strict=True):
        members = order[start:end]
        total = p[members].sum()
        out[members] = mass * (p[members] / total if total > 0 else 1.0 / len(members))
        start = end
    _, group = np.unique(p, return_inverse=True)
    if group.max() + 1 < n:  # ties: spread each tie group's mass evenly over its members
        out = (np.bincount(group, weights=out) / np.bincount(group))[group]
    return out / out.sum()


def calc_prob(scores: np.ndarray, smr: float = SMR, tiers: bool = True) -> np.ndarray:
    """The paper's CalcProb: softmax with the SMR temperature, then (by default) tiering."""
    p = softmax(scores, smr)
    return tiered(p) if tiers else p


def sample(probabilities: np.ndarray, k: int, rng: np.random.Generator) -> list[int]:
    """Draw ``k`` positions i.i.d. (with replacement) from ``probabilities``."""
    return [int(i) for i in rng.choice(len(probabilities), size=k, replace=True, p=probabilities)]
