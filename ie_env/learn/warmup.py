"""The warm-up cache: one file per target set and encoder configuration, so every run shares it.

Before the first query the learner trains on the target-train set alone (a random-init encoder gives
image rewards with no signal; the paper fine-tunes its pretrained model on the target first). That
phase depends only on the target images, the encoder/optimiser configuration, the number of steps and
the warm-up seed, so its result is stored in ``cache_subdir("warmup")`` under a SHA-256 of exactly
those inputs and reused by every later run with the same ones.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch

from ie_env.learn.checkpoint import CheckpointError, cpu_state, load_checkpoint, save_checkpoint
from ie_env.learn.config import LearnConfig
from ie_env.learn.phase import TrainStats
from ie_env.paths import cache_subdir

WARMUP_CACHE_VERSION = 1
# Fields that do not change what the warm-up computes (they act later), left out of its cache key.
NOT_IN_WARMUP_KEY = frozenset(
    {
        "pcr",
        "epochs_per_iteration",
        "max_steps_per_iteration",
        "buffer_fraction",
        "buffer_capacity",
        "reward",
        "reward_k",
        "concept_top",
        "eval_knn_k",
        "embed_batch_size",
    }
)
_STATS_FIELDS = ("loss", "steps", "images_per_s", "seconds", "images")


def warmup_key(
    config: LearnConfig, target: torch.Tensor, steps: int, cache_key: str | None = None, warmup_seed: int = 0
) -> str:
    """Return the cache key (hex SHA-256) of a warm-up.

    Args:
        config: the learner's configuration (fields in ``NOT_IN_WARMUP_KEY`` are left out).
        target: the prepared target-train images, uint8 ``(N, 3, S, S)``.
        steps: warm-up steps.
        cache_key: extra text mixed into the key (e.g. a target-set name).
        warmup_seed: the warm-up's seed.
    """
    cfg = {k: v for k, v in config.to_dict().items() if k not in NOT_IN_WARMUP_KEY}
    meta = {"v": WARMUP_CACHE_VERSION, "cfg": cfg, "steps": steps, "seed": warmup_seed, "key": cache_key}
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    digest.update(str(tuple(target.shape)).encode())
    digest.update(target.numpy().tobytes())
    return digest.hexdigest()


def warmup_path(key: str) -> Path:
    """Return the cache file of the warm-up with ``key``."""
    return cache_subdir("warmup") / f"{key}.ckpt"


def load_warmup(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainStats | None:
    """Load a cached warm-up into ``model`` and ``optimizer``; return its stats, or None when absent.

    An unusable file (damaged, foreign, another model) is ignored with a ``UserWarning`` and None is
    returned, so the warm-up is computed again and the file rewritten.
    """
    if not path.exists():
        return None
    try:
        payload = load_checkpoint(path)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        return TrainStats(**{**payload["stats"], "steps": int(payload["steps"]), "cached": True})
    except (CheckpointError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        warnings.warn(f"ignoring unusable warm-up cache {path}: {exc}", stacklevel=3)
        return None


def save_warmup(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, stats: TrainStats
) -> None:
    """Write a computed warm-up to its cache file (atomically)."""
    save_checkpoint(
        path,
        {
            "model": cpu_state(model.state_dict()),
            "optimizer": cpu_state(optimizer.state_dict()),
            "steps": stats.steps,
            "stats": {k: getattr(stats, k) for k in _STATS_FIELDS},
        },
    )
