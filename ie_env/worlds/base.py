"""What an env step does to the world, behind one small interface shared by the full and frozen envs.

The env (``env.py``) owns spaces, statistics and episode bookkeeping; a :class:`World` owns the
search engine, the images and the encoder. The full world searches over HTTP, downloads, stores
and trains; the frozen world looks up precomputed search results and rewards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class QueryOutcome:
    """The result of one query.

    Attributes:
        reward: the concept score (mean of the top-10 image rewards; 0.0 when nothing usable came back).
        status: ``ok``, ``few_images`` (fewer than 10 scored), ``no_images``, ``search_error``, or
            ``target_only`` (the no-download baseline, ``EnvConfig.target_only``).
        image_rewards: reward of every new usable image, in search-rank order.
        image_captions: the search engine's title of each of those images (same order).
        image_statuses: download status of every hit, in rank order (``ok``, ``duplicate``, ...).
        download_counts: hits per download status.
        hits: results the engine returned.
        hit_ids: the engine's id of every hit, in rank order.
        relevant_fraction: share of usable images whose ground-truth category belongs to the target
            (None when the engine has no ground truth, e.g. a live engine).
        error: the engine's error value, if the search failed.
        seconds: wall time per stage (``search``, ``download``, ``store``, ``score``).
    """

    reward: float
    status: str
    image_rewards: list[float] = field(default_factory=list)
    image_captions: list[str] = field(default_factory=list)
    image_statuses: list[str] = field(default_factory=list)
    download_counts: dict[str, int] = field(default_factory=dict)
    hits: int = 0
    hit_ids: list[str] = field(default_factory=list)
    relevant_fraction: float | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


class World(Protocol):
    """The part of the env that touches search, images and the encoder."""

    def reset(self, rng: np.random.Generator) -> None:
        """Restore the initial encoder, an empty buffer and empty per-episode state."""

    def query(self, query: str, concept_id: int) -> QueryOutcome:
        """Search for ``query``, obtain and score the images; never raises for engine failures."""

    def train(self, steps: int | None) -> dict[str, Any]:
        """Train on what was gathered since the last call (a few steps in per-step mode)."""

    def end_iteration(self, evaluate: bool) -> dict[str, Any]:
        """Close an iteration: train, update the buffer, recompute target embeddings, maybe evaluate."""

    def evaluate(self) -> dict[str, Any]:
        """k-NN and linear-probe accuracy of the current encoder on the target's labeled test split."""

    def close(self) -> None:
        """Release servers, pools and files."""
