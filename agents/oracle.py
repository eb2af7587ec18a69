"""PRIVILEGED agents: they read ground truth that no real agent can know. Research yardsticks only.

* :class:`RelevanceOracle` (registry name ``oracle``, reported as ``oracle (privileged)``): greedy on
  each concept's true relevance, the share of target-category images among its search results on the
  offline web, read through the env's explicitly privileged API
  ``env.unwrapped.privileged_concept_relevance()``. The upper bound of the relevant-image fraction.
* :class:`CeilingAgent` (``ceiling (privileged)``): greedy, step by step, on the true concept score
  of each concept's *new* images under the env's reward (a callable supplied by the caller, e.g. the
  benchmark, computed from the frozen world's tables). It measures how far the reward itself points
  at the target: the best any reward-maximiser could do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from ie_env.agents.base import Agent


def privileged_relevance(env: Any) -> np.ndarray:
    """PRIVILEGED: per-position relevance of the concepts' search results (frozen env only).

    Uses ``env.unwrapped.privileged_concept_relevance()``; where the env cannot answer yet, computes
    the same from the frozen world's tables (``results``: concept → corpus rows, -1 padded;
    ``relevant``: bool per corpus row).
    """
    base = env.unwrapped
    try:
        return np.asarray(base.privileged_concept_relevance(), dtype=np.float32)
    except (AttributeError, NotImplementedError):
        world = getattr(base, "_world", None)
        if world is None or not hasattr(world, "results"):
            raise NotImplementedError("the oracle needs the frozen env's tables") from None
        results = np.asarray(world.results)
        relevant = np.asarray(world.relevant, dtype=bool)
        valid = results >= 0
        hits = np.where(valid, relevant[np.where(valid, results, 0)], False).sum(1)
        return (hits / np.maximum(valid.sum(1), 1)).astype(np.float32)


class RelevanceOracle(Agent):
    """PRIVILEGED: the highest-relevance concepts first, each once (random order among ties).

    Args:
        relevance: ground-truth relevance per action position (see :func:`privileged_relevance`).
    """

    name = "oracle"
    privileged = True

    def __init__(self, relevance: np.ndarray) -> None:
        super().__init__()
        self.relevance = np.asarray(relevance, dtype=np.float64).reshape(-1)

    def _reset(self) -> None:
        if len(self.relevance) != self.space.n:
            raise ValueError(f"relevance has {len(self.relevance)} values for {self.space.n} concepts")
        tie_break = self.rng.random(self.space.n)
        self.order = np.lexsort((tie_break, -self.relevance))
        self.cursor = 0

    def propose(self, k: int) -> list[int]:
        """The next ``k`` concepts by relevance (wrapping around once all were proposed)."""
        self._require_reset()
        k = self._check_k(k)
        picks = [int(self.order[(self.cursor + i) % len(self.order)]) for i in range(k)]
        self.cursor += k
        return picks

    def _state(self) -> dict[str, Any]:
        return {"order": self.order.copy(), "cursor": self.cursor}

    def _load(self, state: dict[str, Any]) -> None:
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.cursor = int(state["cursor"])


class CeilingAgent(Agent):
    """PRIVILEGED: greedy on the true score of each concept's not-yet-obtained images, per step.

    Args:
        scores: returns the current true concept score of every action position (new images only).

    ``per_step = True`` tells the run loop to ask for one action at a time, after every step.
    """

    name = "ceiling"
    privileged = True
    per_step = True

    def __init__(self, scores: Callable[[], np.ndarray]) -> None:
        super().__init__()
        self.scores = scores

    def propose(self, k: int) -> list[int]:
        """The ``k`` best concepts by current true score (ties at random)."""
        space, rng = self._require_reset()
        k = self._check_k(k)
        values = np.asarray(self.scores(), dtype=np.float64)
        order = np.lexsort((rng.random(space.n), -values))
        return [int(i) for i in order[:k]]
