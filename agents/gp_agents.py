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
* ``caption_zucb`` (beyond the paper): ``zucb`` that also learns from what came back. Every new image's
  search-engine caption (``info["image_captions"]``) with its image reward becomes a GP observation
  at the caption's text embedding (mean reward per distinct caption, weighted by its count), so one
  query informs the GP at several places of the text space, and concepts whose text is close to the
  captions of high-reward images rise even before anything near them was queried. Any GP agent can
  do this with ``captions=True``. It also spreads each iteration's picks (``max_similarity`` 0.8:
  no two picks with cosine >= 0.8; near-synonyms return the same images), with ℓ = 0.7, β = 1, and
  its GP lives in query-embedding space (``features="query"``, below).

Where the GP lives: ``features="concept"`` (the paper's, and the default of every agent but
``caption_zucb``) places each concept at its concept-text embedding ("lemma (hypernym): gloss");
``features="query"`` at the embedding of the query the env sends for it
(:attr:`ConceptSpace.query_embeddings`). The second is the space the search engine ranks captions in,
and the one where the captions' own embeddings lie (short texts, not glosses), so caption
observations inform the concepts whose queries would find such captions. Measured for caption_zucb
on the frozen env (10 x 16 queries x 5 results), relevant fraction with concept / query features:
fmnist 0.328 / 0.421 (16 seeds), shop-3 0.124 / 0.284, ocp-10 0.062 / 0.076 (8 seeds each). The
offline web's search engine ranks by the same text model, so on a live engine the gain may be
smaller.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from ie_env.agents.base import Agent, ConceptSpace
from ie_env.agents.gp import GaussianProcess, GPConfig
from ie_env.agents.policy import SMR, calc_prob, sample

FEATURES = ("concept", "query")


class GPAgent(Agent):
    """Shared machinery: observations, refit, posterior of every concept.

    Args:
        gp: the GP's hyperparameters.
        skip_empty: do not use steps with no new image as GP observations.
        refine: with the fast GP path, recompute σ exactly for this many top-scoring concepts.
        captions: also fit the GP on the returned images' captions at their text embeddings.
        max_similarity: UCB-style agents: an iteration's picks keep their feature cosine below this.
        explore: UCB-style agents: share of an iteration's picks drawn uniformly among unqueried ones.
        features: ``"concept"`` (concept-text embeddings) or ``"query"`` (query embeddings; embedded
            here, once per space, where the space does not carry them).
    """

    name = "gp"

    def __init__(
        self,
        gp: GPConfig | None = None,
        skip_empty: bool = False,
        refine: int = 2000,
        captions: bool = False,
        max_similarity: float = 1.0,
        explore: float = 0.0,
        features: str = "concept",
    ) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        self.features = features
        self.max_similarity = max_similarity
        self.explore = explore
        self.gp_config = gp or GPConfig()
        self.skip_empty = skip_empty
        self.refine = refine
        self.captions = captions
        self._caption_vectors: dict[str, np.ndarray] = {}  # text -> embedding, kept across episodes
        self._embedded_queries: tuple[ConceptSpace, np.ndarray] | None = None

    def _reset(self) -> None:
        n = self.space.n
        self.vectors = self._feature_vectors(self.space)
        self.reward_sum = np.zeros(n)
        self.reward_count = np.zeros(n, dtype=np.int64)
        self.exhausted = np.zeros(n, dtype=bool)
        self.mean = np.zeros(n)
        self.std = np.full(n, np.sqrt(self.gp_config.signal_variance))
        self.gp = GaussianProcess(self.gp_config)
        self.caption_sum: dict[str, float] = {}
        self.caption_count: dict[str, int] = {}

    def _feature_vectors(self, space: ConceptSpace) -> np.ndarray:
        """Where the GP places each concept: (n, d) unit rows (see the module's docstring)."""
        if self.features == "concept":
            return space.embeddings
        if space.query_embeddings is not None:
            return space.query_embeddings
        if self._embedded_queries is None or self._embedded_queries[0] is not space:
            from ie_env.concepts.textembed import embed_texts

            texts = list(space.query_texts)  # float32 unit rows, as the captions' vectors
            vectors = embed_texts(texts, show_progress=len(texts) > 10_000, bf16=False)
            self._embedded_queries = (space, vectors)
        return self._embedded_queries[1]

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
        if self.captions:
            for caption, image_reward in zip(
                info.get("image_captions", ()), info.get("image_rewards", ()), strict=False
            ):
                text = " ".join(str(caption).split())
                if text:
                    self.caption_sum[text] = self.caption_sum.get(text, 0.0) + float(image_reward)
                    self.caption_count[text] = self.caption_count.get(text, 0) + 1

    def observations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The GP's training set: observed concepts, then (with ``captions``) distinct captions.

        Returns:
            ``(x, y, counts)``: embeddings (m, d), mean rewards (m,) and observation counts (m,).
        """
        space, _ = self._require_reset()
        seen = np.flatnonzero(self.reward_count > 0)
        x, y, counts = self.vectors[seen], self.observed_mean()[seen], self.reward_count[seen]
        texts = sorted(self.caption_sum)
        if not texts:
            return x, y, counts
        missing = [t for t in texts if t not in self._caption_vectors]
        if missing:
            from ie_env.concepts.textembed import embed_texts

            # float32: a bfloat16 embedding depends on the batch it shares, and a resumed run
            # embeds its captions in other batches than the uninterrupted one
            for text, vector in zip(missing, embed_texts(missing, bf16=False), strict=True):
                self._caption_vectors[text] = np.asarray(vector, dtype=np.float32)
        n = np.asarray([self.caption_count[t] for t in texts])
        return (
            np.concatenate([x, np.stack([self._caption_vectors[t] for t in texts])]),
            np.concatenate([y, np.asarray([self.caption_sum[t] for t in texts]) / n]),
            np.concatenate([counts, n]),
        )

    def end_iteration(self) -> None:
        """Refit the GP on everything observed so far and predict all concepts."""
        space, _ = self._require_reset()
        x, y, counts = self.observations()
        if len(y) == 0:
            return
        self.gp.fit(x, y, counts)
        self.mean, self.std = self.gp.predict(self.vectors)
        if len(y) * space.n > self.gp_config.exact_limit and self.refine > 0:
            top = np.argsort(-self._refine_score())[: self.refine]
            self.mean[top], self.std[top] = self.gp.predict(self.vectors[top], method="exact")

    def _refine_score(self) -> np.ndarray:
        return self.mean + self.std

    def _best_unqueried(self, scores: np.ndarray, k: int) -> list[int]:
        queried = self.queried
        if not self.gp.fitted:
            # Nothing observed yet: every score ties, and ties by position would always query the
            # vocabulary's first concepts ("entity", "physical entity", ...). Draw uniformly instead.
            scores = self.rng.random(len(scores))
        ranked = np.where(queried, -np.inf, scores)
        order = np.argsort(-ranked, kind="stable")
        unqueried = int((~queried).sum())
        available = min(k, unqueried)
        wander = int(round(self.explore * available)) if self.gp.fitted else 0
        ranked_k = available - wander
        if self.max_similarity < 1.0:  # the spread looks at the best 64 k unqueried concepts
            fresh = self._spread(order[: min(unqueried, 64 * k)], ranked_k)
        else:
            fresh = [int(i) for i in order[:ranked_k]]
        if wander:  # uniform unqueried concepts, so that one found region cannot hold every query
            pool = np.flatnonzero(~queried)
            pool = pool[~np.isin(pool, fresh)]
            fresh += [int(i) for i in self.rng.choice(pool, min(wander, len(pool)), replace=False)]
        if len(fresh) < k:  # everything queried: repeat the best observed ones
            best = np.argsort(-self.observed_mean(), kind="stable")
            fresh += [int(best[i % len(best)]) for i in range(k - len(fresh))]
        return fresh

    def _spread(self, candidates: np.ndarray, k: int) -> list[int]:
        """The first ``k`` candidates (best first) below ``max_similarity`` to every earlier pick.

        Candidates too close to a pick fill up the batch only when too few others are left.
        """
        vectors = self.vectors
        picks: list[int] = []
        skipped: list[int] = []
        for i in candidates:
            if len(picks) == k:
                break
            if picks and float(np.max(vectors[picks] @ vectors[int(i)])) >= self.max_similarity:
                skipped.append(int(i))
            else:
                picks.append(int(i))
        return picks + skipped[: k - len(picks)]

    def _state(self) -> dict[str, Any]:
        return {
            "reward_sum": self.reward_sum.copy(),
            "reward_count": self.reward_count.copy(),
            "exhausted": self.exhausted.copy(),
            "mean": self.mean.copy(),
            "std": self.std.copy(),
            "caption_texts": np.asarray(sorted(self.caption_sum), dtype=str),
            "caption_sum": np.asarray(
                [self.caption_sum[t] for t in sorted(self.caption_sum)], dtype=np.float64
            ),
            "caption_count": np.asarray(
                [self.caption_count[t] for t in sorted(self.caption_sum)], dtype=np.int64
            ),
        }

    def _load(self, state: dict[str, Any]) -> None:
        for key in ("reward_sum", "reward_count", "exhausted", "mean", "std"):
            value = np.asarray(state[key])
            if value.shape != (self.space.n,):
                raise ValueError(f"state {key!r} has shape {value.shape}, expected ({self.space.n},)")
            setattr(self, key, value.copy())
        texts = [str(t) for t in np.asarray(state.get("caption_texts", []), dtype=str)]
        sums = np.asarray(state.get("caption_sum", []), dtype=np.float64)
        counts = np.asarray(state.get("caption_count", []), dtype=np.int64)
        self.caption_sum = dict(zip(texts, sums.tolist(), strict=True))
        self.caption_count = dict(zip(texts, counts.tolist(), strict=True))
        x, y, n = self.observations()
        if len(y):  # the GP itself is a function of the observations
            self.gp.fit(x, y, n)

    def hyperparameters(self) -> dict[str, Any]:
        """The agent's settings, for logs."""
        return {**asdict(self.gp_config), "skip_empty": self.skip_empty, "refine": self.refine,
                "captions": self.captions, "explore": self.explore,
                "max_similarity": self.max_similarity, "features": self.features}  # fmt: skip


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
        """The best ``k`` unqueried concepts by μ + β σ (ties by position; uniform before any observation)."""
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
