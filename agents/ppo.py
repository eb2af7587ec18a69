"""PPO (stable-baselines3) on the Internet Explorer env, through a small action wrapper.

A 146,347-way ``Discrete`` head is possible but learns slowly from a few hundred steps, so the
policy acts through :class:`ie_env.wrappers.ClusterActions` (pick one of the env's k-means clusters
of concept embeddings; the env queries an unqueried concept in it) or
:class:`ie_env.wrappers.EmbeddingActions` (a point in text-embedding space; the nearest unqueried
concept is queried). ``n_steps`` is small because a step of the full env takes seconds. Needs the
``rl`` extra (``stable-baselines3``). SB3 logs under the usual ``rollout/`` and ``train/`` tags; the
callback adds ``rollout/relevant_fraction`` (the same quantity the run loop reports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ie_env.agents.loop import StepRecord, relevant_fraction
from ie_env.agents.registry import PPOConfig


def _wrap(env: Any, actions: str) -> Any:
    from ie_env.wrappers import ClusterActions, EmbeddingActions

    return ClusterActions(env) if actions == "cluster" else EmbeddingActions(env)


def _callback(history: list[StepRecord]) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class RelevantFraction(BaseCallback):
        """Keeps every training step's record and logs the rollout's relevant fraction."""

        def _on_step(self) -> bool:
            for info, reward in zip(self.locals["infos"], self.locals["rewards"], strict=True):
                history.append(StepRecord.from_info(len(history), -1, info.get("action", -1), reward, info))
            return True

        def _on_rollout_end(self) -> None:
            recent = history[-self.model.n_steps :]
            self.logger.record("rollout/relevant_fraction", relevant_fraction(recent))

    return RelevantFraction()


class PPOAgent:
    """stable-baselines3 PPO over wrapped actions.

    Args:
        env: the Internet Explorer env (its ``budget`` is PPO's episode length).
        config: the settings (:class:`ie_env.agents.registry.PPOConfig`).

    Attributes:
        model: the ``stable_baselines3.PPO`` instance.
        history: a :class:`~ie_env.agents.loop.StepRecord` for every training step.
    """

    name = "ppo"
    privileged = False

    def __init__(self, env: Any, config: PPOConfig | None = None, model: Any = None) -> None:
        from stable_baselines3 import PPO

        self.config = config or PPOConfig()
        self.env = _wrap(env, self.config.actions)
        self.history: list[StepRecord] = []
        cfg = self.config
        self.model = model or PPO(
            "MlpPolicy",
            self.env,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            learning_rate=cfg.learning_rate,
            ent_coef=cfg.ent_coef,
            gamma=cfg.gamma,
            policy_kwargs={"net_arch": [cfg.hidden, cfg.hidden]},
            seed=cfg.seed,
            device="cpu",
            tensorboard_log=cfg.tensorboard_log,
            verbose=0,
        )

    def learn(self, total_timesteps: int, env_seed: int | None = None) -> PPOAgent:
        """Train for ``total_timesteps`` env steps (records land in :attr:`history`)."""
        if env_seed is not None:
            self.model.get_env().seed(env_seed)
        self.model.learn(total_timesteps, callback=_callback(self.history), reset_num_timesteps=False)
        return self

    def run_episode(self, env_seed: int | None = None, deterministic: bool = False) -> list[StepRecord]:
        """One evaluation episode with the current policy (no learning)."""
        obs, _ = self.env.reset(seed=env_seed)
        records: list[StepRecord] = []
        done = False
        while not done:
            action, _ = self.model.predict(obs, deterministic=deterministic)
            obs, reward, terminated, truncated, info = self.env.step(action)
            per_iteration = int(self.env.unwrapped.config.queries_per_iteration)
            iteration = len(records) // per_iteration
            records.append(StepRecord.from_info(len(records), iteration, info["action"], reward, info))
            done = terminated or truncated
        return records

    def save(self, path: str | Path) -> Path:
        """Save the SB3 model (zip) to ``path``."""
        path = Path(path)
        self.model.save(path)
        return path if path.suffix == ".zip" else path.with_suffix(path.suffix + ".zip")

    @classmethod
    def load(cls, path: str | Path, env: Any, config: PPOConfig | None = None) -> PPOAgent:
        """Load a model saved by :meth:`save` onto ``env`` (wrapped the same way)."""
        from stable_baselines3 import PPO

        config = config or PPOConfig()
        wrapped = _wrap(env, config.actions)
        agent = cls.__new__(cls)
        agent.config = config
        agent.env = wrapped
        agent.history = []
        agent.model = PPO.load(Path(path), env=wrapped, device="cpu")
        return agent

    def action_probabilities(self, obs: np.ndarray) -> np.ndarray:
        """The policy's action distribution at ``obs`` (cluster actions only)."""
        import torch

        tensor, _ = self.model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            dist = self.model.policy.get_distribution(tensor)
        return dist.distribution.probs.cpu().numpy()[0]
