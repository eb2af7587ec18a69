"""The running totals of one env iteration, summarised in ``info["iteration_end"]``."""

from __future__ import annotations

from typing import Any


class IterationTotals:
    """Sums over the steps of the current iteration; :meth:`close` returns the summary and restarts.

    Attributes:
        queries: steps taken in this iteration.
        reward_sum: sum of their rewards.
        images_kept: new usable images they brought.
        relevant_kept: images kept whose relevance is known.
        relevant_sum: of those, the relevant ones (fractional sums of per-step fractions).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Start a new iteration's totals."""
        self.queries = 0
        self.reward_sum = 0.0
        self.images_kept = 0
        self.relevant_kept = 0
        self.relevant_sum = 0.0

    def add(self, reward: float, outcome: Any) -> None:
        """Count one step (``outcome``: the world's :class:`~ie_env.worlds.base.QueryOutcome`)."""
        kept = len(outcome.image_rewards)
        self.queries += 1
        self.reward_sum += float(reward)
        self.images_kept += kept
        if outcome.relevant_fraction is not None and kept:
            self.relevant_kept += kept
            self.relevant_sum += float(outcome.relevant_fraction) * kept

    def close(self, iteration: int, steps: int, info: dict[str, Any]) -> dict[str, Any]:
        """The summary of the iteration that just closed (``train``/``eval`` copied from ``info``)."""
        summary: dict[str, Any] = {
            "iteration": iteration,
            "steps": steps,
            "queries": self.queries,
            "images_kept": self.images_kept,
            "mean_reward": self.reward_sum / self.queries if self.queries else 0.0,
            "relevant_fraction": self.relevant_sum / self.relevant_kept if self.relevant_kept else None,
        }
        for key in ("train", "eval"):
            if key in info:
                summary[key] = info[key]
        self.clear()
        return summary

    def state_dict(self) -> dict[str, Any]:
        """The totals as a plain dict (for checkpoints)."""
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        for key in vars(self):
            setattr(self, key, type(getattr(self, key))(state[key]))
