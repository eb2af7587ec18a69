"""The one run loop for (non-SB3) agents, and the per-step records it returns.

Per iteration: ``agent.propose(queries_per_iteration)``, then ``env.step`` and ``agent.update`` for
each proposed action, then ``agent.end_iteration()``, until the env truncates the episode. Agents
with ``per_step = True`` are asked for one action before every step instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ie_env.agents.base import Agent, ConceptSpace


@dataclass(frozen=True)
class StepRecord:
    """One env step, as the loop saw it.

    Attributes:
        step: 0-based env step.
        iteration: 0-based iteration the step belongs to.
        action: the queried action position.
        query: the query text sent.
        reward: the step's reward.
        status: the env's step status.
        images_kept: new (non-duplicate) usable images.
        relevant_fraction: share of those images in a target category (None if unknown or none).
    """

    step: int
    iteration: int
    action: int
    query: str
    reward: float
    status: str
    images_kept: int
    relevant_fraction: float | None

    @classmethod
    def from_info(cls, step: int, iteration: int, action: int, reward: float, info: dict[str, Any]):
        """A record from the env's step ``info``."""
        fraction = info.get("relevant_fraction")
        return cls(
            step=step,
            iteration=iteration,
            action=int(action),
            query=str(info.get("query", "")),
            reward=float(reward),
            status=str(info.get("status", "")),
            images_kept=int(info.get("images_kept", 0)),
            relevant_fraction=None if fraction is None else float(fraction),
        )

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict."""
        return asdict(self)


def run_episode(
    agent: Agent,
    env: Any,
    *,
    agent_seed: int,
    env_seed: int | None = None,
    space: ConceptSpace | None = None,
    max_steps: int | None = None,
) -> list[StepRecord]:
    """Run one episode of ``agent`` on ``env``; return one record per step.

    Args:
        agent: the policy.
        env: an Internet Explorer env (``gym.make`` result or unwrapped).
        agent_seed: seed of the agent's own ``np.random.Generator``.
        env_seed: seed of ``env.reset`` (None: not reseeded).
        space: the concept space (default: read from the env).
        max_steps: stop after this many steps even if the env has not truncated.
    """
    space = space or ConceptSpace.from_env(env)
    per_iteration = int(env.unwrapped.config.queries_per_iteration)
    agent.reset(space, np.random.default_rng(agent_seed))
    env.reset(seed=env_seed)
    records: list[StepRecord] = []
    iteration = 0
    done = False
    while not done:
        actions = agent.propose(1 if getattr(agent, "per_step", False) else per_iteration)
        closed = False
        for action in actions:
            _, reward, terminated, truncated, info = env.step(int(action))
            records.append(StepRecord.from_info(len(records), iteration, action, reward, info))
            agent.update(int(action), float(reward), info)
            closed = "iteration_end" in info  # the env says when an iteration closes
            done = terminated or truncated or (max_steps is not None and len(records) >= max_steps)
            if done or closed:
                break
        if closed or done:
            agent.end_iteration()
            iteration += 1
    return records


def relevant_images(records: Sequence[StepRecord]) -> float:
    """Number of an episode's new images that are relevant.

    Read it with :func:`relevant_fraction`: a policy that keeps few images can have a high fraction and
    fewer relevant images than random.
    """
    return float(sum(r.relevant_fraction * r.images_kept for r in records if r.relevant_fraction is not None))


def relevant_fraction(records: Sequence[StepRecord]) -> float:
    """Share of all new images of an episode that are relevant (steps weighted by ``images_kept``)."""
    kept = sum(r.images_kept for r in records if r.relevant_fraction is not None)
    if kept == 0:
        return 0.0
    return relevant_images(records) / kept
