"""Pieces both worlds share: the target set, the learner, the background sample, corpus embeddings."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ie_env.config import EnvConfig
from ie_env.learn.config import BACKGROUND_REWARDS, LearnConfig
from ie_env.learn.trainer import Learner
from ie_env.paths import cache_subdir
from ie_env.runtime import precision_tag
from ie_env.web.corpus.arrays import PREPROCESS_KEY
from ie_env.web.targets import PRESETS, TargetSet, load_target
from ie_env.worlds.frozen_tables import load_or_build

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


# The fine-tuned pretrained start (frozen_encoder="finetuned"): the paper fine-tunes its pretrained
# model on the target before the first query; these are that warm-up's CPU-sized settings (a short
# phase at the paper's LARS rate, all at full resolution: the random-init defaults would move
# pretrained weights too far).
FINETUNE = {"warmup_steps": 100, "warmup_low_res_fraction": 0.0, "batch_size": 64, "base_lr": 0.8}


def learn_config(config: EnvConfig) -> LearnConfig:
    """The learner configuration implied by the env configuration.

    ``encoder="efficientnet_lite0"`` and the frozen encoders ``pretrained`` and ``finetuned`` use the
    bundled ImageNet weights; whatever fine-tunes them (the full env's learner, ``finetuned``) also
    gets the :data:`FINETUNE` warm-up settings (``learn_overrides`` still win).
    """
    fields = {"encoder": config.encoder, "image_size": config.image_size, "reward": config.reward}
    frozen_pretrained = config.frozen and config.frozen_encoder in ("pretrained", "finetuned")
    if config.encoder == "efficientnet_lite0" or frozen_pretrained:
        fields.update(encoder="efficientnet_lite0", pretrained=True)
    trains_pretrained = not config.frozen and config.encoder == "efficientnet_lite0"
    if trains_pretrained or (config.frozen and config.frozen_encoder == "finetuned"):
        fields.update(FINETUNE)
    fields.update(config.learn_overrides)
    return LearnConfig(**fields)


def background_rows(target: TargetSet, rng: np.random.Generator, size: int = BACKGROUND_SAMPLE) -> np.ndarray:
    """Sorted corpus rows of a uniform sample of searchable web images (the background rewards' sample)."""
    corpus = target.corpus
    excluded = {corpus.row(i) for i in target.excluded_ids if corpus.has(i)}
    rows = np.asarray([r for r in range(len(corpus)) if r not in excluded])
    return np.sort(rng.choice(rows, size=min(size, len(rows)), replace=False))


def background_sample(target: TargetSet, size: int, rng: np.random.Generator) -> np.ndarray:
    """The images of :func:`background_rows` at ``size`` px (for the background reward variants)."""
    corpus = target.corpus
    return corpus.load_images([corpus.ids[r] for r in background_rows(target, rng)], size, progress=False)


def make_learner(config: EnvConfig, target: TargetSet, seed: int = 0, progress: bool = True) -> Learner:
    """A learner on the target-train images, warmed up (cached) or loaded as configured."""
    size = config.image_size
    if config.frozen and config.frozen_encoder not in ("warmup", "pretrained", "finetuned"):
        learner = Learner.load(config.frozen_encoder, progress=progress)
    else:
        learner = Learner(
            learn_config(config),
            target.train_images(size),
            target_labels=target.train_labels,
            seed=seed,
            progress=progress,
        )
        if config.warmup and not (config.frozen and config.frozen_encoder == "pretrained"):
            if progress:
                announce(
                    f"warming up the {learner.config.encoder} encoder on the target (cached after the first run)"
                )
            learner.warm_up(cache_key=f"{target.name}|{target.image_corpus.key}|{PREPROCESS_KEY}")
    if learner.config.reward in BACKGROUND_REWARDS:
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


EMBED_CHUNK = 2048


def corpus_embeddings(learner: Learner, corpus, progress: bool = True) -> np.ndarray:
    """Every web image's embedding under the learner's (fixed) encoder, float32, cached on disk.

    Cached as float16 in ``cache_subdir("frozen")``, keyed by the corpus, the preprocessing and
    :func:`encoder_fingerprint`, so every target and reward variant with the same encoder shares one
    file. Images are embedded in chunks of the memory-mapped corpus array (bounded memory).
    """
    size = learner.config.image_size
    precision = precision_tag(learner.device)  # bf16 and fp32 embeddings never share a file
    name = f"embeddings-{corpus.name}-{corpus.key}-{PREPROCESS_KEY}-{encoder_fingerprint(learner)}-{precision}.npy"

    def embed_corpus() -> np.ndarray:
        if progress:
            announce(f"embedding the {len(corpus):,} web images with the fixed encoder (cached)")
        images = corpus.load_images(None, size, progress=progress)
        out = np.zeros((len(images), learner.feature_dim), dtype=np.float16)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), desc="embedding web images", unit="img")
        for lo in range(0, len(images), EMBED_CHUNK):
            chunk = np.ascontiguousarray(images[lo : lo + EMBED_CHUNK])
            out[lo : lo + len(chunk)] = learner.embed(chunk, progress=False)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return out

    return load_or_build(cache_subdir("frozen") / name, embed_corpus).astype(np.float32)
