"""Pieces both worlds share: the target set, the learner, and the background sample."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ie_env.config import EnvConfig
from ie_env.learn.config import LearnConfig
from ie_env.learn.trainer import Learner
from ie_env.web.corpus.arrays import PREPROCESS_KEY
from ie_env.web.targets import PRESETS, TargetSet, load_target

BACKGROUND_SAMPLE = 1024


def announce(message: str) -> None:
    """Tell the user, on stderr, what long step starts now (progress bars follow it there)."""
    print(f"ie_env: {message} ...", file=sys.stderr, flush=True)


def target_spec(config: EnvConfig) -> str | list[str]:
    """What :func:`load_target` gets: a preset, a folder, or category paths (one path alone too)."""
    spec = config.target_spec
    if isinstance(spec, str) and spec not in PRESETS and "/" in spec and not Path(spec).exists():
        return [spec]
    return spec


def open_target(config: EnvConfig, progress: bool = True) -> TargetSet:
    """The configured target set (its web corpus is built on first use)."""
    if progress:
        announce(f"opening target {config.target_label!r} and its web corpus (built on first use)")
    return load_target(target_spec(config), corpus=config.corpus, progress=progress)


def learn_config(config: EnvConfig) -> LearnConfig:
    """The learner configuration implied by the env configuration."""
    fields = {"encoder": config.encoder, "image_size": config.image_size, "reward": config.reward}
    if config.encoder == "efficientnet_lite0" or (config.frozen and config.frozen_encoder == "pretrained"):
        fields.update(encoder="efficientnet_lite0", pretrained=True)
    fields.update(config.learn_overrides)
    return LearnConfig(**fields)


def background_sample(target: TargetSet, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform sample of searchable web images (for the hubness-corrected reward)."""
    corpus = target.corpus
    excluded = {corpus.row(i) for i in target.excluded_ids if corpus.has(i)}
    rows = np.asarray([r for r in range(len(corpus)) if r not in excluded])
    pick = np.sort(rng.choice(rows, size=min(BACKGROUND_SAMPLE, len(rows)), replace=False))
    return corpus.load_images([corpus.ids[r] for r in pick], size, progress=False)


def make_learner(config: EnvConfig, target: TargetSet, seed: int = 0, progress: bool = True) -> Learner:
    """A learner on the target-train images, warmed up (cached) or loaded as configured."""
    size = config.image_size
    if config.frozen and config.frozen_encoder not in ("warmup", "pretrained"):
        learner = Learner.load(config.frozen_encoder, threads=config.threads, progress=progress)
    else:
        learner = Learner(
            learn_config(config),
            target.train_images(size),
            target_labels=target.train_labels,
            seed=seed,
            threads=config.threads,
            progress=progress,
        )
        if config.warmup and not (config.frozen and config.frozen_encoder == "pretrained"):
            if progress:
                announce(
                    f"warming up the {learner.config.encoder} encoder on the target (cached after the first run)"
                )
            learner.warm_up(cache_key=f"{target.name}|{target.image_corpus.key}|{PREPROCESS_KEY}")
    if config.reward == "knn_centered":
        learner.set_background(background_sample(target, size, np.random.default_rng(seed)))
    return learner


def evaluate_learner(learner: Learner, test_images: np.ndarray, test_labels: np.ndarray) -> dict[str, float]:
    """k-NN and linear-probe accuracy on the labeled target-test split, with the seconds it took."""
    started = time.perf_counter()
    result = learner.evaluate(test_images, test_labels)
    return {
        "knn_accuracy": float(result.knn_accuracy),
        "linear_probe_accuracy": float(result.linear_probe_accuracy),
        "seconds": time.perf_counter() - started,
    }


def encoder_fingerprint(learner: Learner) -> str:
    """A hash of the backbone's weights and the image size: names caches of what the encoder computed."""
    digest = hashlib.sha256(str(learner.config.image_size).encode())
    for name, tensor in sorted(learner.model.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]
