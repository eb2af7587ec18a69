"""The learner layer: MoCo v3 encoder, target-similarity reward, replay buffer, warm-up, evaluation.

Modules, one job each: ``config`` (``LearnConfig``, the reward variants ``REWARDS``), ``encoders``
(backbones), ``moco`` (MoCo v3 model, loss, LARS), ``augment`` (image preparation and the two views),
``embed`` (batched embedding), ``reward`` (image reward and concept score), ``scoring`` (the encoder and
its target set), ``phase`` (one training phase), ``replay`` (the replay buffer and its admission rule),
``warmup`` (the warm-up cache), ``trainer`` (the ``Learner`` facade), ``evaluate`` (k-NN and linear
probe) and ``checkpoint`` (verified checkpoint files).

The names below are imported on first use, so ``import ie_env.learn.config`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ie_env.learn.checkpoint import CheckpointError
    from ie_env.learn.config import LearnConfig
    from ie_env.learn.evaluate import EvalResult
    from ie_env.learn.phase import NonFiniteLossError, TrainStats
    from ie_env.learn.reward import ConceptScore, ImageScores, concept_score, image_rewards
    from ie_env.learn.trainer import Learner

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "ConceptScore": "reward",
    "EvalResult": "evaluate",
    "ImageScores": "reward",
    "LearnConfig": "config",
    "Learner": "trainer",
    "NonFiniteLossError": "phase",
    "TrainStats": "phase",
    "concept_score": "reward",
    "image_rewards": "reward",
}

__all__ = [
    "CheckpointError",
    "ConceptScore",
    "EvalResult",
    "ImageScores",
    "LearnConfig",
    "Learner",
    "NonFiniteLossError",
    "TrainStats",
    "concept_score",
    "image_rewards",
]


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
