"""The Learner: a MoCo v3 encoder trained on target + downloaded images, and the judge of downloads.

One object per run. Typical use by the environment::

    learner = Learner(LearnConfig(), target_train, seed=0)      # uint8 (N, H, W, 3) RGB
    learner.warm_up()                                           # SSL on the target alone, cached on disk
    scores = learner.score(images)                              # per-image reward: k-NN similarity to target
    value, status = learner.concept_score(scores.rewards)       # mean of the top-10
    stats = learner.train(new_images, scores.rewards)           # new + PCR x sample(buffer U target)
    learner.save(path); learner = Learner.load(path)

This module is the facade; the jobs live beside it: ``phase`` (steps, epoch sampling, the step loop),
``replay`` (the buffer and its admission rule), ``warmup`` (the warm-up cache) and ``checkpoint``;
the scoring side (embeddings, image rewards, evaluation) is the base class ``scoring.Scorer``.

Randomness comes from one seeded ``numpy.random.Generator`` (sampling) and one ``torch.Generator``
(augmentations) derived from it; model initialisation is seeded from the same source. CUDA is used
when available. Images are kept as uint8 ``(N, 3, S, S)`` CPU tensors and moved to the device one
batch at a time; augmentations run batched on the device (augment.py). With ``progress=True`` the
long steps (training phases, the warm-up, embedding, evaluation) draw tqdm progress bars on stderr;
with False they print nothing. The SSL forward passes and image embeddings run under bfloat16
autocast where the device runs it natively (``ie_env.runtime.bf16_enabled``; ``IE_ENV_BF16=0`` for
float32); weights, optimiser state and returned features are float32 either way. Nothing here changes
process-wide settings such as torch's thread count.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ie_env.learn.augment import TwoViewAugment, images_to_tensor
from ie_env.learn.checkpoint import (
    CheckpointError,
    cpu_state,
    load_checkpoint,
    rng_from_text,
    rng_to_text,
    save_checkpoint,
)
from ie_env.learn.config import LearnConfig
from ie_env.learn.moco import build_optimizer
from ie_env.learn.phase import (
    NO_STEPS,
    NonFiniteLossError,
    PhaseRunner,
    TrainStats,
    phase_length,
    training_precision,
)
from ie_env.learn.replay import ReplayBuffer
from ie_env.learn.reward import ImageScores
from ie_env.learn.scoring import Scorer
from ie_env.learn.warmup import load_warmup, save_warmup, warmup_key, warmup_path

__all__ = ["TRAIN_POOLS", "ImageScores", "Learner", "NonFiniteLossError", "TrainStats"]

# What a training phase draws from, in the order of ``TrainStats.images_by_pool`` of ``Learner.train``.
TRAIN_POOLS = ("new", "target", "buffer")


class Learner(Scorer):
    """MoCo v3 learner over a fixed target-train set: the scorer plus training, replay and checkpoints.

    Args:
        config: the learner's configuration.
        target_train: unlabeled target images, uint8 ``(N, H, W, 3)`` RGB, N >= 2.
        target_labels: optional integer labels of ``target_train`` (evaluation only).
        background: optional uint8 images of a background sample of the web (``knn_centered`` reward).
        seed: seeds a new generator (ignored if ``generator`` is given).
        generator: the source of all randomness.
        device: torch device; default CUDA when available, else CPU.
        threads: accepted for compatibility and checked (a positive integer or None), but not applied:
            the thread count is the process's, set by entry points (``ie_env.runtime.use_threads``).
        progress: default of the methods' ``progress`` argument (progress bars for long steps).
    """

    def __init__(
        self,
        config: LearnConfig,
        target_train: np.ndarray,
        *,
        target_labels: np.ndarray | None = None,
        background: np.ndarray | None = None,
        seed: int | None = None,
        generator: np.random.Generator | None = None,
        device: str | torch.device | None = None,
        threads: int | None = None,
        progress: bool = False,
    ) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self._rng = generator if generator is not None else np.random.default_rng(seed)
        init_seed = int(self._rng.integers(2**62))
        self._torch_gen = torch.Generator().manual_seed(int(self._rng.integers(2**62)))
        super().__init__(
            config,
            target_train,
            target_labels=target_labels,
            background=background,
            init_seed=init_seed,
            device=device,
            progress=progress,
        )
        self._augment = TwoViewAugment(config.image_size, config.min_crop_scale, config.augment_strength)
        self._replay = ReplayBuffer(config.image_size, config.buffer_capacity)
        self.total_steps = 0
        self.phases = 0

    def _build_model(self, init_seed: int) -> None:
        super()._build_model(init_seed)
        self.optimizer = build_optimizer(self.model, self.config)

    @property
    def buffer_size(self) -> int:
        """Number of images in the replay buffer."""
        return len(self._replay)

    @property
    def buffer_rewards(self) -> np.ndarray:
        """Image rewards the buffer's images had when admitted (copy)."""
        return self._replay.rewards.copy()

    # ------------------------------------------------------------------ training

    def train(
        self,
        new_images: np.ndarray,
        new_rewards: np.ndarray | None = None,
        *,
        steps: int | None = None,
        epochs: int | None = None,
        progress: bool | None = None,
    ) -> TrainStats:
        """One training phase on ``new + PCR x sample(buffer U target)``, then the replay-buffer update.

        Each epoch is all new images plus ``round(pcr * len(new))`` images drawn uniformly (without
        replacement while possible) from the union of buffer and target-train, resampled every epoch.
        With no new images an epoch is the whole union. Afterwards the top ``buffer_fraction`` of the
        new images by ``new_rewards`` join the buffer (``replay.admitted_indices``).

        Args:
            new_images: uint8 ``(N, H, W, 3)``; N may be 0.
            new_rewards: their image rewards (as given to the agent, i.e. under the encoder before this
                phase); computed with ``score`` when None.
            steps: exact number of optimiser steps; or
            epochs: exact number of epochs; neither: ``config.epochs_per_iteration`` epochs, capped at
                ``config.max_steps_per_iteration`` steps.
            progress: progress bar over the steps (default: the learner's ``progress``).

        Raises:
            NonFiniteLossError: the loss became NaN/inf; the learner is rolled back to its state before
                this call (the buffer is not updated) and files on disk are untouched.
        """
        new = images_to_tensor(new_images, self.config.image_size)
        if new_rewards is None:
            rewards = self.score_embeddings(self._embed_tensor(new))
        else:
            rewards = np.asarray(new_rewards, dtype=np.float32).ravel()
            if rewards.shape != (len(new),):
                raise ValueError(f"new_rewards must have shape ({len(new)},), got {rewards.shape}")
        pools = [new, self._target, self._replay.images]  # the order of TRAIN_POOLS
        stats = self._run_phase(pools, steps=steps, epochs=epochs, progress=self._show(progress))
        self._replay.admit(new, rewards, self.config.buffer_fraction)
        return stats

    def warm_up(
        self,
        steps: int | None = None,
        *,
        cache: bool = True,
        cache_key: str | None = None,
        warmup_seed: int = 0,
        progress: bool | None = None,
    ) -> TrainStats:
        """SSL on the target-train set alone, before the first query (cached on disk).

        A random-init encoder gives image rewards with no signal, so (as the paper fine-tunes its
        pretrained model on the target first) the encoder is trained on the target-train set before
        any query. Its first ``config.warmup_low_res_steps(steps)`` steps train on views at
        ``config.warmup_low_res_size`` px (progressive resizing: cheaper steps, the same accuracy at the
        end), the rest at ``image_size``. The warm-up starts from an initialisation seeded by ``warmup_seed`` (not the
        learner's seed), so it is the same starting point whether or not the cache was hit. The cache
        file lives in ``cache_subdir("warmup")`` and is keyed by the target images' content, the
        encoder/optimiser configuration, ``steps``, ``warmup_seed`` and ``cache_key`` (see ``warmup``).

        Args:
            steps: SSL steps (default ``config.warmup_steps``); 0 does nothing.
            cache: read/write the cache.
            cache_key: extra text mixed into the key (e.g. a target-set name).
            warmup_seed: seeds the initialisation and the warm-up's sampling/augmentations.
            progress: progress bar over the steps (default: the learner's ``progress``).
        """
        steps = self.config.warmup_steps if steps is None else steps
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps!r}")
        if steps == 0:
            return NO_STEPS
        path = warmup_path(self.warmup_key(steps, cache_key, warmup_seed))
        show = self._show(progress)
        cached = load_warmup(path, self.model, self.optimizer) if cache else None
        if cached is not None:
            self._after_phase(cached.steps, show)
            return cached
        rng, gen = self._rng, self._torch_gen
        self._rng = np.random.default_rng(warmup_seed)
        self._torch_gen = torch.Generator().manual_seed(warmup_seed)
        try:
            self._build_model(warmup_seed)
            empty = self._target[:0]
            stats = self._run_phase(
                [empty, self._target],
                steps=steps,
                epochs=None,
                progress=show,
                low_res_augment=self._low_res_augment(),
                low_res_steps=self.config.warmup_low_res_steps(steps),
            )
        finally:
            self._rng, self._torch_gen = rng, gen
        if cache:
            save_warmup(path, self.model, self.optimizer, stats)
        return stats

    def warmup_key(self, steps: int, cache_key: str | None = None, warmup_seed: int = 0) -> str:
        """The warm-up cache key (hex SHA-256) for this target, configuration and training precision.

        The training precision (``bf16`` or ``fp32``, :func:`ie_env.learn.phase.training_precision`) is
        part of the key, so a bfloat16 warm-up is never loaded by a float32 run or the other way round.
        """
        precision = training_precision(self.config.encoder, self.device)
        extra = precision if cache_key is None else f"{cache_key}|{precision}"
        return warmup_key(self.config, self._target, steps, extra, warmup_seed)

    def _low_res_augment(self) -> TwoViewAugment:
        """The augmentation of the warm-up's low-resolution steps (``config.warmup_low_res_size``)."""
        cfg = self.config
        return TwoViewAugment(cfg.warmup_low_res_size, cfg.min_crop_scale, cfg.augment_strength)

    def _run_phase(
        self,
        pools: list[torch.Tensor],
        *,
        steps: int | None,
        epochs: int | None,
        progress: bool,
        low_res_augment: TwoViewAugment | None = None,
        low_res_steps: int = 0,
    ) -> TrainStats:
        """Train on ``pools`` (new images first, then the past pools); roll back on a non-finite loss.

        The first ``low_res_steps`` steps train on ``low_res_augment``'s views (the warm-up's schedule).
        """
        n_new, n_past = len(pools[0]), sum(len(p) for p in pools[1:])
        total = phase_length(self.config, n_new, n_past, steps, epochs)
        if total == 0:
            return dataclasses.replace(NO_STEPS, images_by_pool=(0,) * len(pools))
        snapshot = {
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }
        runner = PhaseRunner(
            self.model,
            self.optimizer,
            self._augment,
            self.config,
            self._rng,
            self._torch_gen,
            self.device,
            low_res_augment=low_res_augment,
            low_res_steps=low_res_steps,
        )
        try:
            stats = runner.run(pools, n_new, total, progress=progress)
        except NonFiniteLossError:
            self.model.load_state_dict(snapshot["model"])
            self.optimizer.load_state_dict(snapshot["optimizer"])
            raise
        self._after_phase(total, progress)
        return stats

    def _after_phase(self, steps: int, progress: bool) -> None:
        """Count the phase and re-embed the target set now, as the ``target_embeddings`` contract says."""
        self.total_steps += steps
        self.phases += 1
        self._encoder_changed()
        self._target_emb = self._embed_tensor(self._target, progress, "embedding target images")

    # ------------------------------------------------------------------ state and checkpoints

    def reseed(self, generator: np.random.Generator) -> None:
        """Draw all further sampling and augmentation randomness from ``generator``.

        For example an env's ``np_random`` after a seeded reset; the model's weights are not touched.
        """
        self._rng = generator
        self._torch_gen = torch.Generator().manual_seed(int(generator.integers(2**62)))

    def state_dict(self) -> dict[str, Any]:
        """Return everything that changes while the learner runs, as independent copies.

        Model, momentum encoder, optimiser, buffer, counters and RNG states; ``load_state_dict``
        restores it (e.g. reset-to-initial).
        """
        return {
            "model": cpu_state(self.model.state_dict()),
            "optimizer": cpu_state(self.optimizer.state_dict()),
            **self._replay.state_dict(),
            "total_steps": self.total_steps,
            "phases": self.phases,
            "rng": rng_to_text(self._rng),
            "torch_generator": self._torch_gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict`` taken from a learner with the same config and target."""
        self.model.load_state_dict(state["model"])
        # A copy: torch keeps same-device tensors of the given dict as its live momentum buffers,
        # which training would then update in place (and so corrupt the caller's saved state).
        self.optimizer.load_state_dict(cpu_state(state["optimizer"]))
        self._replay.load_state_dict(state)
        self.total_steps = int(state["total_steps"])
        self.phases = int(state["phases"])
        self._rng = rng_from_text(state["rng"])
        self._torch_gen = torch.Generator().manual_seed(0)
        self._torch_gen.set_state(state["torch_generator"].clone())
        self._encoder_changed()

    def save(self, path: str | Path) -> Path:
        """Write a self-contained checkpoint (config, target, background, ``state_dict``) atomically."""
        payload = {
            "config": json.dumps(self.config.to_dict()),
            "target": self._target,
            "target_labels": None if self._target_labels is None else torch.from_numpy(self._target_labels),
            "background": self._background,
            "state": self.state_dict(),
        }
        return save_checkpoint(path, payload)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = None,
        threads: int | None = None,
        progress: bool = False,
    ) -> Learner:
        """Rebuild a learner from ``save``; a damaged or foreign file raises ``CheckpointError``."""
        payload = load_checkpoint(path)
        try:
            config = LearnConfig.from_dict(json.loads(payload["config"]))
            labels = payload["target_labels"]
            background = payload["background"]
            learner = cls(
                config,
                payload["target"].permute(0, 2, 3, 1).numpy(),
                target_labels=None if labels is None else labels.numpy(),
                background=None if background is None else background.permute(0, 2, 3, 1).numpy(),
                seed=0,
                device=device,
                threads=threads,
                progress=progress,
            )
            learner.load_state_dict(payload["state"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not hold a usable learner: {exc}") from exc
        return learner
