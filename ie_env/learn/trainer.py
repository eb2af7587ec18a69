"""The Learner: a MoCo v3 encoder trained on target + downloaded images, and the judge of downloads.

One object per run. Typical use by the environment::

    learner = Learner(LearnConfig(), target_train, seed=0)      # uint8 (N, H, W, 3) RGB
    learner.warm_up()                                           # SSL on the target alone, cached on disk
    scores = learner.score(images)                              # per-image reward (PAPER.md §1.3)
    value, status = learner.concept_score(scores.rewards)       # mean of the top-10
    stats = learner.train(new_images, scores.rewards)           # new + PCR x sample(buffer U target)
    learner.save(path); learner = Learner.load(path)

Randomness comes from one seeded ``numpy.random.Generator`` (sampling) and one ``torch.Generator``
(augmentations) derived from it; model initialisation is seeded from the same source. CUDA is used
when available. Images are kept as uint8 ``(N, 3, S, S)`` CPU tensors and moved to the device one
batch at a time; augmentations run batched on the device (augment.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ie_env.learn.augment import TwoViewAugment, images_to_tensor, prepare_eval
from ie_env.learn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ie_env.learn.config import LearnConfig
from ie_env.learn.encoders import build_backbone
from ie_env.learn.evaluate import EvalResult, evaluate_features
from ie_env.learn.moco import MoCoV3, build_optimizer, lr_at
from ie_env.learn.reward import ConceptScore, concept_score, image_rewards
from ie_env.paths import cache_subdir

WARMUP_CACHE_VERSION = 1
# Fields that do not change what the warm-up computes (they act later), left out of its cache key.
_NOT_IN_WARMUP_KEY = {
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
    """

    loss: float
    steps: int
    images_per_s: float
    seconds: float
    images: int = 0
    cached: bool = False
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class ImageScores:
    """Per-image rewards and the embeddings they came from (float32, L2-normalised)."""

    rewards: np.ndarray
    embeddings: np.ndarray


class Learner:
    """MoCo v3 learner over a fixed target-train set.

    Args:
        config: the learner's configuration.
        target_train: unlabeled target images, uint8 ``(N, H, W, 3)`` RGB, N >= 2.
        target_labels: optional integer labels of ``target_train`` (evaluation only).
        background: optional uint8 images of a background sample of the web (``knn_centered`` reward).
        seed: seeds a new generator (ignored if ``generator`` is given).
        generator: the source of all randomness.
        device: torch device; default CUDA when available, else CPU.
        threads: if given, ``torch.set_num_threads(threads)`` (process-wide).
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
    ) -> None:
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads!r}")
            torch.set_num_threads(threads)
        self.config = config
        self.device = torch.device(
            device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self._rng = generator if generator is not None else np.random.default_rng(seed)
        init_seed = int(self._rng.integers(2**62))
        self._torch_gen = torch.Generator().manual_seed(int(self._rng.integers(2**62)))
        self._target = images_to_tensor(target_train, config.image_size)
        if len(self._target) < 2:
            raise ValueError(f"target_train needs at least 2 images, got {len(self._target)}")
        self._target_labels = None
        if target_labels is not None:
            self._target_labels = np.asarray(target_labels).astype(np.int64)
            if self._target_labels.shape != (len(self._target),):
                raise ValueError(
                    f"target_labels must have shape ({len(self._target)},), got {self._target_labels.shape}"
                )
        self._background = images_to_tensor(background, config.image_size) if background is not None else None
        self._augment = TwoViewAugment(config.image_size, config.min_crop_scale, config.augment_strength)
        self._build(init_seed)
        self._buffer = torch.zeros((0, 3, config.image_size, config.image_size), dtype=torch.uint8)
        self._buffer_rewards = np.zeros(0, dtype=np.float32)
        self.total_steps = 0
        self.phases = 0
        self._target_emb: np.ndarray | None = None
        self._background_emb: np.ndarray | None = None

    def _build(self, init_seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            backbone, dim = build_backbone(self.config)
            self.model = MoCoV3(backbone, dim, self.config).to(self.device)
        self.feature_dim = dim
        self.optimizer = build_optimizer(self.model, self.config)

    # ------------------------------------------------------------------ embeddings and rewards

    @property
    def target_size(self) -> int:
        """Number of target-train images."""
        return len(self._target)

    @property
    def buffer_size(self) -> int:
        """Number of images in the replay buffer."""
        return len(self._buffer)

    @property
    def buffer_rewards(self) -> np.ndarray:
        """Image rewards the buffer's images had when admitted (copy)."""
        return self._buffer_rewards.copy()

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Backbone features of uint8 images ``(N, H, W, 3)``: float32 ``(N, D)``, L2-normalised."""
        return self._embed_tensor(images_to_tensor(images, self.config.image_size))

    @torch.no_grad()
    def _embed_tensor(self, data: torch.Tensor) -> np.ndarray:
        out = np.zeros((len(data), self.feature_dim), dtype=np.float32)
        if len(data) == 0:
            return out
        backbone = self.model.backbone
        was_training = backbone.training
        backbone.eval()
        try:
            bs = self.config.embed_batch_size
            for start in range(0, len(data), bs):
                x = prepare_eval(data[start : start + bs].to(self.device, non_blocking=True))
                out[start : start + bs] = F.normalize(backbone(x).float(), dim=1).cpu().numpy()
        finally:
            backbone.train(was_training)
        return out

    @property
    def target_embeddings(self) -> np.ndarray:
        """Embeddings of the target-train set under the current encoder (recomputed after each phase)."""
        if self._target_emb is None:
            self._target_emb = self._embed_tensor(self._target)
        return self._target_emb

    @property
    def background_embeddings(self) -> np.ndarray | None:
        """Embeddings of the background sample (None when there is none)."""
        if self._background is None:
            return None
        if self._background_emb is None:
            self._background_emb = self._embed_tensor(self._background)
        return self._background_emb

    def set_background(self, images: np.ndarray) -> None:
        """Set the background sample of web images used by the ``knn_centered`` reward."""
        self._background = images_to_tensor(images, self.config.image_size)
        self._background_emb = None

    def score(self, images: np.ndarray) -> ImageScores:
        """Image rewards of uint8 images under the current encoder (the configured reward variant)."""
        emb = self.embed(images)
        return ImageScores(rewards=self.score_embeddings(emb), embeddings=emb)

    def score_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Image rewards of embeddings made by ``embed`` with the current encoder."""
        if len(embeddings) == 0:
            return np.zeros(0, dtype=np.float32)
        if self.config.reward == "knn_centered" and self._background is None:
            raise ValueError(
                "reward 'knn_centered' needs a background sample: pass background= or set_background()"
            )
        return image_rewards(
            embeddings,
            self.target_embeddings,
            k=self.config.reward_k,
            variant=self.config.reward,
            background=self.background_embeddings,
        )

    def concept_score(self, image_rewards: np.ndarray | list[float]) -> ConceptScore:
        """Mean of the top ``config.concept_top`` rewards; ``(0.0, "no_images")`` when there are none."""
        return concept_score(image_rewards, top=self.config.concept_top)

    # ------------------------------------------------------------------ training

    def train(
        self,
        new_images: np.ndarray,
        new_rewards: np.ndarray | None = None,
        *,
        steps: int | None = None,
        epochs: int | None = None,
    ) -> TrainStats:
        """One training phase on ``new + PCR x sample(buffer U target)``, then the replay-buffer update.

        Each epoch is all new images plus ``round(pcr * len(new))`` images drawn uniformly (without
        replacement while possible) from the union of buffer and target-train, resampled every epoch.
        With no new images an epoch is the whole union. Afterwards the top ``buffer_fraction`` of the
        new images by ``new_rewards`` join the buffer.

        Args:
            new_images: uint8 ``(N, H, W, 3)``; N may be 0.
            new_rewards: their image rewards (as given to the agent, i.e. under the encoder before this
                phase); computed with ``score`` when None.
            steps: exact number of optimiser steps; or
            epochs: exact number of epochs; neither: ``config.epochs_per_iteration`` epochs, capped at
                ``config.max_steps_per_iteration`` steps.

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
        stats = self._run_phase([new, self._target, self._buffer], n_new=len(new), steps=steps, epochs=epochs)
        self._admit(new, rewards)
        return stats

    def warm_up(
        self,
        steps: int | None = None,
        *,
        cache: bool = True,
        cache_key: str | None = None,
        warmup_seed: int = 0,
    ) -> TrainStats:
        """SSL on the target-train set alone, before the first query (cached on disk).

        The paper fine-tunes its pretrained model on the target first; a random-init encoder gives
        rewards with no signal (PROTOTYPE.md). The warm-up starts from an initialisation seeded by
        ``warmup_seed`` (not the learner's seed), so it is the same starting point whether or not the
        cache was hit. The cache file lives in ``cache_subdir("warmup")`` and is keyed by the target
        images' content, the encoder/optimiser configuration, ``steps``, ``warmup_seed`` and ``cache_key``.

        Args:
            steps: SSL steps (default ``config.warmup_steps``); 0 does nothing.
            cache: read/write the cache.
            cache_key: extra text mixed into the key (e.g. a target-set name).
            warmup_seed: seeds the initialisation and the warm-up's sampling/augmentations.
        """
        steps = self.config.warmup_steps if steps is None else steps
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps!r}")
        if steps == 0:
            return TrainStats(loss=float("nan"), steps=0, images_per_s=0.0, seconds=0.0)
        path = cache_subdir("warmup") / f"{self.warmup_key(steps, cache_key, warmup_seed)}.ckpt"
        if cache and path.exists():
            try:
                payload = load_checkpoint(path)
                self.model.load_state_dict(payload["model"])
                self.optimizer.load_state_dict(payload["optimizer"])
                self._after_phase(int(payload["steps"]))
                stats = payload["stats"]
                return TrainStats(**{**stats, "cached": True})
            except (CheckpointError, KeyError, RuntimeError, ValueError) as exc:
                warnings.warn(f"ignoring unusable warm-up cache {path}: {exc}", stacklevel=2)
        rng, gen = self._rng, self._torch_gen
        self._rng = np.random.default_rng(warmup_seed)
        self._torch_gen = torch.Generator().manual_seed(warmup_seed)
        try:
            self._build(warmup_seed)
            empty = self._target[:0]
            stats = self._run_phase([empty, self._target, empty], n_new=0, steps=steps, epochs=None)
        finally:
            self._rng, self._torch_gen = rng, gen
        if cache:
            save_checkpoint(
                path,
                {
                    "model": _cpu_state(self.model.state_dict()),
                    "optimizer": _cpu_state(self.optimizer.state_dict()),
                    "steps": stats.steps,
                    "stats": {
                        k: getattr(stats, k) for k in ("loss", "steps", "images_per_s", "seconds", "images")
                    },
                },
            )
        return stats

    def warmup_key(self, steps: int, cache_key: str | None = None, warmup_seed: int = 0) -> str:
        """The warm-up cache key (hex SHA-256) for this target and configuration."""
        cfg = {k: v for k, v in self.config.to_dict().items() if k not in _NOT_IN_WARMUP_KEY}
        h = hashlib.sha256()
        meta = {"v": WARMUP_CACHE_VERSION, "cfg": cfg, "steps": steps, "seed": warmup_seed, "key": cache_key}
        h.update(json.dumps(meta, sort_keys=True).encode())
        h.update(str(tuple(self._target.shape)).encode())
        h.update(self._target.numpy().tobytes())
        return h.hexdigest()

    def _phase_plan(self, n_new: int, n_past: int, steps: int | None, epochs: int | None) -> int:
        """Total steps of a phase."""
        if steps is not None and epochs is not None:
            raise ValueError("give steps or epochs, not both")
        epoch_len = n_new + (round(self.config.pcr * n_new) if n_new else n_past)
        per_epoch = max(1, epoch_len // self.config.batch_size)
        if steps is not None:
            if steps < 0:
                raise ValueError(f"steps must be >= 0, got {steps!r}")
            return steps
        if epochs is not None:
            if epochs < 0:
                raise ValueError(f"epochs must be >= 0, got {epochs!r}")
            return epochs * per_epoch
        total = self.config.epochs_per_iteration * per_epoch
        cap = self.config.max_steps_per_iteration
        return min(total, cap) if cap is not None else total

    def _epoch_indices(self, n_new: int, n_past: int) -> np.ndarray:
        """Global indices of one epoch: new ones are ``[0, n_new)``, past ones ``n_new + j``."""
        if n_new == 0:
            past = np.arange(n_past)
        else:
            want = round(self.config.pcr * n_new)
            if want <= n_past:
                past = self._rng.choice(n_past, size=want, replace=False)
            else:
                past = self._rng.integers(0, n_past, size=want)
        idx = np.concatenate([np.arange(n_new), n_new + past]).astype(np.int64)
        return self._rng.permutation(idx)

    def _batches(self, n_new: int, n_past: int):
        bs = self.config.batch_size
        while True:
            idx = self._epoch_indices(n_new, n_past)
            if len(idx) < 2:
                raise ValueError("a training epoch needs at least 2 images")
            if len(idx) <= bs:
                yield idx
                continue
            for start in range(0, len(idx) - bs + 1, bs):
                yield idx[start : start + bs]

    def _gather(self, pools: list[torch.Tensor], idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` of the virtual concatenation of ``pools`` (no full copy of the pools)."""
        parts = []
        offset = 0
        for pool in pools:
            sel = idx[(idx >= offset) & (idx < offset + len(pool))] - offset
            if len(sel):
                parts.append(pool[torch.from_numpy(sel)])
            offset += len(pool)
        batch = parts[0] if len(parts) == 1 else torch.cat(parts)
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)

    def _run_phase(
        self, pools: list[torch.Tensor], *, n_new: int, steps: int | None, epochs: int | None
    ) -> TrainStats:
        n_past = sum(len(p) for p in pools[1:])
        total = self._phase_plan(n_new, n_past, steps, epochs)
        if total == 0:
            return TrainStats(loss=float("nan"), steps=0, images_per_s=0.0, seconds=0.0)
        snapshot = self._snapshot()
        # Any use of the global torch RNG inside the model (e.g. EfficientNet drop-connect) is seeded from
        # the learner's own generator, so phases are reproducible and do not disturb the caller's RNG.
        devices = []
        if self.device.type == "cuda":
            devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=self._torch_gen)))
            return self._steps(pools, n_new, n_past, total, snapshot)

    def _steps(
        self, pools: list[torch.Tensor], n_new: int, n_past: int, total: int, snapshot: dict[str, Any]
    ) -> TrainStats:
        model, opt, cfg = self.model, self.optimizer, self.config
        model.train()
        batches = self._batches(n_new, n_past)
        losses = torch.zeros(total, dtype=torch.float64)
        images = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for step in range(total):
            batch = self._gather(pools, next(batches))
            images += len(batch)
            x1, x2 = self._augment(batch, self._torch_gen)
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step, total)
            model.update_momentum(cfg.momentum)
            loss = model(x1, x2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                self._restore(snapshot)
                raise NonFiniteLossError(
                    f"SSL loss became {value} at step {step + 1} of {total} (lr {cfg.lr:g}, batch {len(batch)}); "
                    "the learner was rolled back to its state before this training phase. Lower base_lr or "
                    "check the input images."
                )
            losses[step] = value
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        self._after_phase(total)
        return TrainStats(
            loss=float(losses.mean()),
            steps=total,
            images_per_s=images / seconds if seconds > 0 else float("inf"),
            seconds=seconds,
            images=images,
            cpu_seconds=cpu_seconds,
        )

    def _after_phase(self, steps: int) -> None:
        self.total_steps += steps
        self.phases += 1
        self._target_emb = None
        self._background_emb = None
        self.target_embeddings  # noqa: B018 - recompute now, as the contract says

    def _admit(self, new: torch.Tensor, rewards: np.ndarray) -> None:
        """Add the top ``buffer_fraction`` of ``new`` by reward to the buffer (ties: earlier image first)."""
        n_keep = math.floor(self.config.buffer_fraction * len(new) + 0.5)
        if n_keep == 0:
            return
        order = np.argsort(-rewards, kind="stable")[:n_keep]
        self._buffer = torch.cat([self._buffer, new[torch.from_numpy(order)]])
        self._buffer_rewards = np.concatenate([self._buffer_rewards, rewards[order]])
        cap = self.config.buffer_capacity
        if cap is not None and len(self._buffer) > cap:
            self._buffer = self._buffer[-cap:].clone()
            self._buffer_rewards = self._buffer_rewards[-cap:].copy()

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, test_images: np.ndarray, test_labels: np.ndarray, *, seed: int = 0) -> EvalResult:
        """k-NN (k = ``config.eval_knn_k``) and linear-probe accuracy; the labeled target-train set is the
        training side. Needs ``target_labels``."""
        if self._target_labels is None:
            raise ValueError("evaluate needs target_labels (pass them to Learner)")
        return evaluate_features(
            self.target_embeddings,
            self._target_labels,
            self.embed(test_images),
            np.asarray(test_labels),
            k=self.config.eval_knn_k,
            seed=seed,
        )

    # ------------------------------------------------------------------ state and checkpoints

    def _snapshot(self) -> dict[str, Any]:
        return {
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])

    def reseed(self, generator: np.random.Generator) -> None:
        """Draw all further sampling and augmentation randomness from ``generator`` (e.g. an env's
        ``np_random`` after a seeded reset); the model's weights are not touched."""
        self._rng = generator
        self._torch_gen = torch.Generator().manual_seed(int(generator.integers(2**62)))

    def state_dict(self) -> dict[str, Any]:
        """Everything that changes while the learner runs (model, momentum encoder, optimiser, buffer,
        counters, RNG states), as independent copies; ``load_state_dict`` restores it (reset-to-initial)."""
        return {
            "model": _cpu_state(self.model.state_dict()),
            "optimizer": _cpu_state(self.optimizer.state_dict()),
            "buffer": self._buffer.clone(),
            "buffer_rewards": torch.from_numpy(self._buffer_rewards.copy()),
            "total_steps": self.total_steps,
            "phases": self.phases,
            "rng": _rng_state_to_text(self._rng),
            "torch_generator": self._torch_gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict`` taken from a learner with the same config and target."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._buffer = state["buffer"].clone()
        self._buffer_rewards = state["buffer_rewards"].numpy().astype(np.float32).copy()
        self.total_steps = int(state["total_steps"])
        self.phases = int(state["phases"])
        self._rng = _rng_from_text(state["rng"])
        self._torch_gen = torch.Generator().manual_seed(0)
        self._torch_gen.set_state(state["torch_generator"].clone())
        self._target_emb = None
        self._background_emb = None

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
        cls, path: str | Path, *, device: str | torch.device | None = None, threads: int | None = None
    ) -> Learner:
        """Rebuild a learner from ``save``; a damaged or foreign file raises ``CheckpointError``."""
        payload = load_checkpoint(path)
        try:
            config = LearnConfig.from_dict(json.loads(payload["config"]))
            target = payload["target"].permute(0, 2, 3, 1).numpy()
            labels = payload["target_labels"]
            background = payload["background"]
            learner = cls(
                config,
                target,
                target_labels=None if labels is None else labels.numpy(),
                background=None if background is None else background.permute(0, 2, 3, 1).numpy(),
                seed=0,
                device=device,
                threads=threads,
            )
            learner.load_state_dict(payload["state"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not hold a usable learner: {exc}") from exc
        return learner


def _cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    """Deep copy of a (nested) state dict with every tensor on the CPU."""

    def conv(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.detach().to("cpu", copy=True)
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return type(v)(conv(x) for x in v)
        return copy.deepcopy(v)

    return conv(state)


def _rng_state_to_text(rng: np.random.Generator) -> str:
    state = rng.bit_generator.state
    return json.dumps(state)


def _rng_from_text(text: str) -> np.random.Generator:
    state = json.loads(text)
    bitgen = getattr(np.random, state["bit_generator"])()
    bitgen.state = state
    return np.random.Generator(bitgen)
