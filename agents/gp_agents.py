"""Agents that predict every concept's reward with a GP over concept text embeddings.

All of them keep, per concept, the sum and count of its observed rewards, refit
:class:`~ie_env.agents.gp.GaussianProcess` on the averaged observations when an iteration closes
(:meth:`GPAgent.end_iteration`), and predict the posterior mean μ and std σ of every concept. They
differ in how an iteration's queries are chosen:

* ``softmax_gp`` (the paper's agent): unqueried concepts score μ + σ, queried ones their observed
  mean; the scores go through the SMR softmax and tiering (:func:`ie_env.agents.policy.calc_prob`)
  and the iteration's queries are drawn i.i.d. from that distribution. Raw rewards, ℓ = 1.
* ``ucb``: GP-UCB, the ``k`` unqueried concepts with the highest μ + β σ.
* ``thompson``: one draw μ + σ z (independent per concept: the marginal posteriors, since a joint
  draw over 146,347 concepts is out of reach) and the ``k`` best unqueried concepts.
* ``epsilon_greedy``: each query is, with probability ε, a uniform unqueried concept, else the next
  unqueried concept by μ.
* ``zucb`` (beyond the paper): GP-UCB on *standardised* rewards (the raw scores differ by ~0.02
  while the prior std is 1, so σ swamps μ), ℓ = 0.5 and β = 0.3 (what the prototypes found best),
  and steps that returned no new image (every hit a duplicate, or nothing found) are not fed to the
  GP as a reward of 0: an exhausted query says nothing about how relevant its neighbours are.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from ie_env.agents.base import Agent
from ie_env.agents.gp import GaussianProcess, GPConfig
from ie_env.agents.policy import SMR, calc_prob, sample


class GPAgent(Agent):
    """Shared machinery: observations, refit, posterior of every concept.

    Args:
        gp: the GP's hyperparameters.
        skip_empty: do not use steps with no new image as GP observations.
        refine: with the fast GP path, recompute σ exactly for this many top-scoring concepts.
    """

    name = "gp"

    def __init__(self, gp: GPConfig | None = None, skip_empty: bool = False, refine: int = 2000) -> None:
        super().__init__()
        self.gp_config = gp or GPConfig()
        self.skip_empty = skip_empty
        self.refine = refine

    def _reset(self) -> None:
        n = self.space.n
        self.reward_sum = np.zeros(n)
        self.reward_count = np.zeros(n, dtype=np.int64)
        self.exhausted = np.zeros(n, dtype=bool)
        self.mean = np.zeros(n)
        self.std = np.full(n, np.sqrt(self.gp_config.signal_variance))
        self.gp = GaussianProcess(self.gp_config)

    @property
    def queried(self) -> np.ndarray:
        """Concepts queried this episode (observed, or exhausted)."""
        return (self.reward_count > 0) | self.exhausted

    def observed_mean(self) -> np.ndarray:
        """Mean observed reward per concept (0 where none)."""
        return self.reward_sum / np.maximum(self.reward_count, 1)

    def update(self, action: int, reward: float, info: dict[str, Any]) -> None:
        """Record the step's reward (or, with ``skip_empty``, mark an empty step's concept as exhausted)."""
        self._require_reset()
        if self.skip_empty and int(info.get("images_kept", 1)) == 0:
            self.exhausted[action] = True
            return
        self.reward_sum[action] += float(reward)
        self.reward_count[action] += 1

    def end_iteration(self) -> None:
        """Refit the GP on every concept observed so far and predict all concepts."""
        space, _ = self._require_reset()
        seen = np.flatnonzero(self.reward_count > 0)
        if len(seen) == 0:
            return
        self.gp.fit(space.embeddings[seen], self.observed_mean()[seen], self.reward_count[seen])
        self.mean, self.std = self.gp.predict(space.embeddings)
        if len(seen) * space.n > self.gp_config.exact_limit and self.refine > 0:
            top = np.argsort(-self._refine_score())[: self.refine]
            self.mean[top], self.std[top] = self.gp.predict(space.embeddings[top], method="exact")

    def _refine_score(self) -> np.ndarray:
        return self.mean + self.std

    def _best_unqueried(self, scores: np.ndarray, k: int) -> list[int]:
        queried = self.queried
        ranked = np.where(queried, -np.inf, scores)
        order = np.argsort(-ranked, kind="stable")
        fresh = [int(i) for i in order[: min(k, int((~queried).sum()))]]
        if len(fresh) < k:  # everything queried: repeat the best observed ones
            best = np.argsort(-self.observed_mean(), kind="stable")
            fresh += [int(best[i % len(best)]) for i in range(k - len(fresh))]
        return fresh

    def _state(self) -> dict[str, Any]:
        return {
            "reward_sum": self.reward_sum.copy(),
            "reward_count": self.reward_count.copy(),
            "exhausted": self.exhausted.copy(),
            "mean": self.mean.copy(),
            "std": self.std.copy(),
        }

    def _load(self, state: dict[str, Any]) -> None:
        for key in ("reward_sum", "reward_count", "exhausted", "mean", "std"):
            value = np.asarray(state[key])
            if value.shape != (self.space.n,):
                raise ValueError(f"state {key!r} has shape {value.shape}, expected ({self.space.n},)")
            setattr(self, key, value.copy())
        seen = np.flatnonzero(self.reward_count > 0)
        if len(seen):  # the GP itself is a function of the observations
            self.gp.fit(self.space.embeddings[seen], self.observed_mean()[seen], self.reward_count[seen])

    def hyperparameters(self) -> dict[str, Any]:
        """The agent's settings, for logs."""
        return {**asdict(self.gp_config), "skip_empty": self.skip_empty, "refine": self.refine}


class SoftmaxGPAgent(GPAgent):
    """The paper's agent (§2.5–2.7): μ + σ for unqueried concepts, SMR softmax, tiering, i.i.d. draws."""

    name = "softmax_gp"

    def __init__(self, gp: GPConfig | None = None, smr: float = SMR, tiers: bool = True, **kwargs: Any):
        super().__init__(gp, **kwargs)
        self.smr = smr
        self.tiers = tiers

    def scores(self) -> np.ndarray:
        """Observed mean where queried, else μ + σ."""
        return np.where(self.reward_count > 0, self.observed_mean(), self.mean + self.std)

    def probabilities(self) -> np.ndarray:
        """The sampling distribution of the next iteration."""
        return calc_prob(self.scores(), self.smr, self.tiers)

    def propose(self, k: int) -> list[int]:
        """``k`` i.i.d. draws from :meth:`probabilities`."""
        _, rng = self._require_reset()
        return sample(self.probabilities(), self._check_k(k), rng)


class UCBAgent(GPAgent):
    """GP-UCB: the ``k`` unqueried concepts with the highest μ + β σ."""

    name = "ucb"

    def __init__(self, gp: GPConfig | None = None, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(gp, **kwargs)
        self.beta = beta

    def _refine_score(self) -> np.ndarray:
        return self.mean + self.beta * self.std

    def propose(self, k: int) -> list[int]:
        """The best ``k`` unqueried concepts by μ + β σ (ties by position)."""
        self._require_reset()
        return self._best_unqueried(self.mean + self.beta * self.std, self._check_k(k))


class ThompsonAgent(GPAgent):
    """Thompson sampling from the marginal posteriors: the best ``k`` unqueried of μ + σ z."""

    name = "thompson"

    def propose(self, k: int) -> list[int]:
        """One posterior draw per concept, then the best ``k`` unqueried."""
        space, rng = self._require_reset()
        draw = self.mean + self.std * rng.standard_normal(space.n)
        return self._best_unqueried(draw, self._check_k(k))


class EpsilonGreedyAgent(GPAgent):
    """ε-greedy over the GP mean: with probability ε a uniform unqueried concept, else the best by μ."""

    name = "epsilon_greedy"

    def __init__(self, gp: GPConfig | None = None, epsilon: float = 0.1, **kwargs: Any) -> None:
        super().__init__(gp, **kwargs)
        self.epsilon = epsilon

    def _refine_score(self) -> np.ndarray:
        return self.mean

    def propose(self, k: int) -> list[int]:
        """``k`` distinct concepts (while unqueried ones last)."""
        space, rng = self._require_reset()
        k = self._check_k(k)
        greedy = iter(self._best_unqueried(self.mean, k))
        free = np.flatnonzero(~self.queried)
        picks: list[int] = []
        for _ in range(k):
            if rng.random() < self.epsilon and len(free):
                pick = int(free[rng.integers(len(free))])
            else:
                pick = next(greedy)
                while pick in picks and len(picks) < space.n:
                    pick = next(greedy, int(rng.integers(space.n)))
            picks.append(pick)
        return picks
