"""Action wrappers that give RL agents smaller action spaces than one action per concept.

All three read three attributes of the unwrapped :class:`~ie_env.env.InternetExplorerEnv`:
``concept_embeddings`` ((n_concepts, 384) float32), ``cluster_labels`` ((n_concepts,) int) and
``queried`` ((n_concepts,) bool, concepts already queried this episode), and draw randomness from
the env's ``np_random`` so a seeded reset makes them reproducible. They work inside
``gymnasium.vector`` sync and async envs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def _pick_unqueried(candidates: np.ndarray, queried: np.ndarray, rng: np.random.Generator) -> int | None:
    fresh = candidates[~queried[candidates]]
    if len(fresh) == 0:
        return None
    return int(fresh[rng.integers(len(fresh))])


class ClusterActions(gym.ActionWrapper):
    """Action ``Discrete(K)``: a cluster of concepts; the env queries a not-yet-queried concept in it.

    The concept is drawn uniformly from the cluster's unqueried concepts with the env's generator; a
    cluster with none left falls back to any unqueried concept, then to any concept of the cluster.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        labels = np.asarray(self.env.unwrapped.cluster_labels)
        self.n_clusters = int(labels.max()) + 1
        self._members = [np.flatnonzero(labels == c) for c in range(self.n_clusters)]
        self.action_space = spaces.Discrete(self.n_clusters)

    def action(self, action: Any) -> int:
        """Map the wrapper's action to a concept position of the wrapped env."""
        cluster = int(action)
        if not 0 <= cluster < self.n_clusters:
            raise ValueError(f"cluster action {action!r} is out of range [0, {self.n_clusters})")
        base = self.env.unwrapped
        rng = base.np_random
        members = self._members[cluster]
        pick = _pick_unqueried(members, base.queried, rng)
        if pick is None:
            pick = _pick_unqueried(np.arange(len(base.queried)), base.queried, rng)
        if pick is None:
            pick = int(members[rng.integers(len(members))])
        return pick


class EmbeddingActions(gym.ActionWrapper):
    """Action ``Box(-1, 1, (384,))``: a point in text-embedding space.

    The nearest unqueried concept (by cosine similarity) is queried. A zero vector is refused with
    ``ValueError``.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._embeddings = np.asarray(self.env.unwrapped.concept_embeddings, dtype=np.float32)
        dim = self._embeddings.shape[1]
        self.action_space = spaces.Box(-1.0, 1.0, shape=(dim,), dtype=np.float32)

    def action(self, action: Any) -> int:
        """Map the wrapper's action to a concept position of the wrapped env."""
        vector = np.asarray(action, dtype=np.float32).reshape(-1)
        if vector.shape != self.action_space.shape or not np.isfinite(vector).all():
            raise ValueError(f"embedding action must be a finite vector of shape {self.action_space.shape}")
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            raise ValueError("embedding action is the zero vector; it points at no concept")
        scores = self._embeddings @ (vector / norm)
        scores[self.env.unwrapped.queried] = -np.inf
        best = int(np.argmax(scores))
        if not np.isfinite(scores[best]):  # everything queried: nearest of all
            best = int(np.argmax(self._embeddings @ (vector / norm)))
        return best


class BatchActions(gym.Wrapper):
    """Action ``MultiDiscrete([n_concepts] * batch_size)``: several concepts per step.

    The wrapped env is stepped once per concept; the reward is the mean of their rewards, the
    observation the last one, ``info["batch"]`` holds each concept's info and ``info["batch_rewards"]``
    each concept's reward. The episode ends as
    soon as any inner step ends it (remaining concepts are not queried).
    """

    def __init__(self, env: gym.Env, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(env)
        n = int(env.action_space.n)
        self.batch_size = batch_size
        self.action_space = spaces.MultiDiscrete([n] * batch_size)

    def step(self, action: Any):
        """Step every concept of the batch; the reward is their mean, ``info['batch']`` holds each step's info."""
        actions = np.asarray(action).reshape(-1)
        if actions.shape != (self.batch_size,):
            raise ValueError(f"batch action must hold {self.batch_size} concepts, got shape {actions.shape}")
        rewards, infos = [], []
        obs, terminated, truncated = None, False, False
        for concept in actions:
            obs, reward, terminated, truncated, info = self.env.step(int(concept))
            rewards.append(float(reward))
            infos.append(info)
            if terminated or truncated:
                break
        info = dict(infos[-1])
        info["batch"] = infos
        info["batch_rewards"] = rewards
        return obs, float(np.mean(rewards)), terminated, truncated, info
