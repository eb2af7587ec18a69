"""The learner: MoCo v3 encoder, target-similarity reward, evaluation (see trainer.Learner)."""

from ie_env.learn.checkpoint import CheckpointError
from ie_env.learn.config import LearnConfig
from ie_env.learn.evaluate import EvalResult
from ie_env.learn.reward import ConceptScore, concept_score, image_rewards
from ie_env.learn.trainer import ImageScores, Learner, NonFiniteLossError, TrainStats

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
