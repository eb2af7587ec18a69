"""One training phase: how many steps, which images each epoch, and the SSL step loop.

An epoch of a phase is all ``n_new`` new images plus ``round(pcr * n_new)`` images drawn uniformly
(without replacement while possible) from the past pool (replay buffer and target-train set), resampled
every epoch; with no new images an epoch is the whole past pool. Indices are global over the virtual
concatenation ``new + past`` (new images are ``[0, n_new)``), and :func:`gather` copies only the rows
a batch needs.

The forward pass runs under :func:`ie_env.runtime.autocast` (bfloat16 where the device runs it natively,
``IE_ENV_BF16=0`` turns it off) unless :func:`training_precision` says the encoder trains faster in
float32 there; the loss, the gradients, the optimiser and the weights stay float32.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ie_env.learn.augment import TwoViewAugment
from ie_env.learn.config import LearnConfig
from ie_env.learn.moco import MoCoV3, lr_at
from ie_env.runtime import autocast, bf16_enabled

# Encoders that train slower under CPU bf16 autocast than in float32 (2-core AMX CPU, EfficientNet-Lite0
# at 64 px, batch 64: 1.98 s per step in bf16 against 1.28 s in float32, its depthwise convolutions'
# backward). Their inference still runs in bf16 (2.5-3x faster than float32).
FP32_TRAINING_ON_CPU = frozenset({"efficientnet_lite0"})


def training_precision(encoder: str, device: torch.device | str) -> str:
    """``"bf16"`` or ``"fp32"``: the precision SSL training of ``encoder`` uses on ``device``."""
    device_type = getattr(device, "type", None) or str(device).split(":", 1)[0]
    if not bf16_enabled(device_type):
        return "fp32"
    return "fp32" if device_type == "cpu" and encoder in FP32_TRAINING_ON_CPU else "bf16"


class NonFiniteLossError(FloatingPointError):
    """The SSL loss became NaN/inf; the learner was rolled back to its state before the phase."""


@dataclass(frozen=True)
class TrainStats:
    """Summary of one training phase.

    Attributes:
        loss: mean loss over the phase's steps (nan if no step ran).
        steps: optimiser steps taken.
        images_per_s: training images (one image = both its views) per second of the step loop.
        seconds: wall time of the step loop (batch assembly, augmentation, forward, backward, step).
        images: training images seen (steps x batch size, the last batch of an epoch may be smaller).
        cached: True when the result was loaded from the warm-up cache instead of computed.
        cpu_seconds: process CPU time of the step loop (on a shared CPU machine a steadier measure than
            ``seconds``; meaningless for CUDA work).
        images_by_pool: training images drawn from each pool the phase was given, in the caller's order
            (the Learner's phases: new downloads, target-train, replay buffer).
    """

    loss: float
    steps: int
    images_per_s: float
    seconds: float
    images: int = 0
    cached: bool = False
    cpu_seconds: float = 0.0
    images_by_pool: tuple[int, ...] = ()


NO_STEPS = TrainStats(loss=float("nan"), steps=0, images_per_s=0.0, seconds=0.0)


def phase_length(config: LearnConfig, n_new: int, n_past: int, steps: int | None, epochs: int | None) -> int:
    """Return the number of optimiser steps of a phase.

    Args:
        config: gives the batch size, PCR and the default length.
        n_new: new images of the phase.
        n_past: images of the past pool (buffer and target-train).
        steps: exact number of steps; or
        epochs: exact number of epochs; neither: ``config.epochs_per_iteration`` epochs, capped at
            ``config.max_steps_per_iteration`` steps.

    Raises:
        ValueError: both ``steps`` and ``epochs`` are given, or one is negative.
    """
    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both")
    epoch_len = n_new + (round(config.pcr * n_new) if n_new else n_past)
    per_epoch = max(1, epoch_len // config.batch_size)
    if steps is not None:
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps!r}")
        return steps
    if epochs is not None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs!r}")
        return epochs * per_epoch
    total = config.epochs_per_iteration * per_epoch
    cap = config.max_steps_per_iteration
    return min(total, cap) if cap is not None else total


def epoch_indices(rng: np.random.Generator, n_new: int, n_past: int, pcr: float) -> np.ndarray:
    """Return the shuffled global indices of one epoch: new ones ``[0, n_new)``, past ones ``n_new + j``."""
    if n_new == 0:
        past = np.arange(n_past)
    else:
        want = round(pcr * n_new)
        if want <= n_past:
            past = rng.choice(n_past, size=want, replace=False)
        else:
            past = rng.integers(0, n_past, size=want)
    idx = np.concatenate([np.arange(n_new), n_new + past]).astype(np.int64)
    return rng.permutation(idx)


def batch_indices(
    rng: np.random.Generator, n_new: int, n_past: int, pcr: float, batch_size: int
) -> Iterator[np.ndarray]:
    """Yield batches of global indices forever, epoch after epoch (an epoch's short tail is dropped)."""
    while True:
        idx = epoch_indices(rng, n_new, n_past, pcr)
        if len(idx) < 2:
            raise ValueError("a training epoch needs at least 2 images")
        if len(idx) <= batch_size:
            yield idx
            continue
        for start in range(0, len(idx) - batch_size + 1, batch_size):
            yield idx[start : start + batch_size]


def gather(pools: list[torch.Tensor], idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """Return rows ``idx`` of the virtual concatenation of ``pools`` on ``device`` (no full copy)."""
    parts = []
    offset = 0
    for pool in pools:
        sel = idx[(idx >= offset) & (idx < offset + len(pool))] - offset
        if len(sel):
            parts.append(pool[torch.from_numpy(sel)])
        offset += len(pool)
    batch = parts[0] if len(parts) == 1 else torch.cat(parts)
    if device.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


@dataclass
class PhaseRunner:
    """What a phase trains and with which randomness.

    Attributes:
        model: the MoCo v3 model (trained in place).
        optimizer: its optimiser.
        augment: makes the two views.
        config: batch size, PCR, momentum, learning-rate schedule.
        rng: batch sampling.
        generator: augmentations, and the seed of the global torch RNG inside the phase.
        device: where batches go.
        low_res_augment: makes the views of the first ``low_res_steps`` steps (the warm-up's
            progressive-resizing schedule); None trains every step with ``augment``.
        low_res_steps: how many steps, from the first, use ``low_res_augment``.
    """

    model: MoCoV3
    optimizer: torch.optim.Optimizer
    augment: TwoViewAugment
    config: LearnConfig
    rng: np.random.Generator
    generator: torch.Generator
    device: torch.device
    low_res_augment: TwoViewAugment | None = None
    low_res_steps: int = 0

    def run(self, pools: list[torch.Tensor], n_new: int, total: int, *, progress: bool = False) -> TrainStats:
        """Run ``total`` SSL steps over ``pools`` (new images first, then the past pools).

        Any use of the global torch RNG inside the model (e.g. EfficientNet drop-connect) is seeded from
        ``generator``, so phases are reproducible and leave the caller's RNG alone.

        Raises:
            NonFiniteLossError: the loss became NaN/inf (the model is left as it was then).
        """
        devices = []
        if self.device.type == "cuda":
            devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=self.generator)))
            return self._loop(pools, n_new, total, progress)

    def _loop(self, pools: list[torch.Tensor], n_new: int, total: int, progress: bool) -> TrainStats:
        model, cfg = self.model, self.config
        model.train()
        n_past = sum(len(p) for p in pools[1:])
        batches = batch_indices(self.rng, n_new, n_past, cfg.pcr, cfg.batch_size)
        losses = torch.zeros(total, dtype=torch.float64)
        images = 0
        bounds = np.cumsum([0, *(len(p) for p in pools)])
        by_pool = np.zeros(len(pools), dtype=np.int64)
        start, cpu_start = time.perf_counter(), time.process_time()
        with tqdm(total=total, desc="SSL training", unit="step", disable=not progress) as bar:
            for step in range(total):
                idx = next(batches)
                batch = gather(pools, idx, self.device)
                images += len(batch)
                by_pool += np.histogram(idx, bins=bounds)[0]
                losses[step] = self._step(batch, step, total)
                bar.update(1)
        seconds = time.perf_counter() - start
        return TrainStats(
            loss=float(losses.mean()),
            steps=total,
            images_per_s=images / seconds if seconds > 0 else float("inf"),
            seconds=seconds,
            images=images,
            cpu_seconds=time.process_time() - cpu_start,
            images_by_pool=tuple(int(n) for n in by_pool),
        )

    def _step(self, batch: torch.Tensor, step: int, total: int) -> float:
        cfg, opt = self.config, self.optimizer
        low_res = self.low_res_augment is not None and step < self.low_res_steps
        augment = self.low_res_augment if low_res else self.augment
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in augment(batch, self.generator))
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, total)
        self.model.update_momentum(cfg.momentum)
        bf16 = training_precision(cfg.encoder, self.device) == "bf16"
        with autocast(self.device) if bf16 else contextlib.nullcontext():
            loss = self.model(x1, x2)
        loss = loss.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"SSL loss became {value} at step {step + 1} of {total} (lr {cfg.lr:g}, batch {len(batch)}); "
                "the learner was rolled back to its state before this training phase. Lower base_lr or "
                "check the input images."
            )
        return value
