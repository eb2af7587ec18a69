"""The environment's configuration: one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ENGINES = ("local", "openverse", "wikimedia", "flickr")
REWARDS = ("knn", "knn_centered")


@dataclass(frozen=True)
class EnvConfig:
    """Everything an :class:`~ie_env.env.InternetExplorerEnv` needs; defaults fit 2 CPU cores.

    Attributes:
        target: a target preset (``ocp-10``, ``ocp-30``, ``fmnist``, ``gen-4`` ...) or a folder of images.
        vocabulary: vocabulary subset: ``full`` (146,347 concepts), ``small``, ``words:a,b`` or a file.
        frozen: fixed encoder, precomputed corpus embeddings, in-process search (milliseconds per step).
        corpus: the offline web to search (``web``: all Debian sites; ``generated``: tests); None: the
            target preset's own web.
        engine: ``local`` (the offline web over HTTP; started by the env when no ``web_url`` is given) or
            a live engine name (full env only).
        web_url: base URL of an already running local web server (``ie-web serve``), if any.
        budget: the episode's query budget; the env truncates the episode when it is spent. (Not called
            ``max_episode_steps``: ``gym.make`` keeps that argument for its own ``TimeLimit`` wrapper.)
        queries_per_iteration: queries between two training phases (the paper's iteration).
        results_per_query: images requested per query.
        n_clusters: k-means clusters of concept embeddings summarised in the observation.
        encoder: learner backbone (``convnet``, ``resnet18``, ``resnet50``, ``efficientnet_lite0``).
        image_size: training/scoring resolution in pixels.
        reward: ``knn`` (the paper's) or ``knn_centered`` (hubness-corrected).
        train_steps_per_iteration: SSL optimiser steps per training phase (None: the learner's default).
        per_step_training: train a few steps inside every ``step()`` instead of once per iteration.
        train_steps_per_query: optimiser steps per ``step()`` when ``per_step_training``.
        eval_every: evaluate k-NN accuracy on the target test split every this many iterations (0: never).
        warmup: run (or load the cached) SSL warm-up on the target-train set before the first query.
        frozen_encoder: frozen variant's encoder: ``warmup`` (the cached warm-up), ``pretrained``
            (ImageNet EfficientNet-Lite0), or the path of a saved learner checkpoint.
        threads: torch CPU threads.
        record_seconds: put wall-clock seconds per stage in ``info["seconds"]`` (None: yes for the full
            env, no for the frozen one, whose steps must be deterministic, info included).
        run_dir: where the full env stores downloaded images (None: a fresh folder under the cache dir).
        learn_overrides: extra :class:`~ie_env.learn.config.LearnConfig` fields.
        download_overrides: extra download config fields.
    """

    target: str = "ocp-10"
    vocabulary: str = "full"
    frozen: bool = False
    corpus: str | None = None
    engine: str = "local"
    web_url: str | None = None
    budget: int = 64
    queries_per_iteration: int = 16
    results_per_query: int = 20
    n_clusters: int = 32
    encoder: str = "convnet"
    image_size: int = 32
    reward: str = "knn"
    train_steps_per_iteration: int | None = None
    per_step_training: bool = False
    train_steps_per_query: int = 2
    eval_every: int = 1
    warmup: bool = True
    frozen_encoder: str = "warmup"
    threads: int = 1
    record_seconds: bool | None = None
    run_dir: str | None = None
    learn_overrides: dict[str, Any] = field(default_factory=dict)
    download_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = (
            "budget",
            "queries_per_iteration",
            "results_per_query",
            "n_clusters",
            "image_size",
            "threads",
            "train_steps_per_query",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EnvConfig.{name} must be a positive integer, got {value!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"EnvConfig.engine must be one of {ENGINES}, got {self.engine!r}")
        if self.frozen and self.engine != "local":
            raise ValueError(
                f"the frozen env searches the offline web in process; engine={self.engine!r} needs frozen=False"
            )
        if self.reward not in REWARDS:
            raise ValueError(f"EnvConfig.reward must be one of {REWARDS}, got {self.reward!r}")
        if self.eval_every < 0:
            raise ValueError(f"EnvConfig.eval_every must be >= 0, got {self.eval_every!r}")
        if self.train_steps_per_iteration is not None and self.train_steps_per_iteration < 0:
            raise ValueError(
                f"EnvConfig.train_steps_per_iteration must be >= 0, got {self.train_steps_per_iteration!r}"
            )
        if self.results_per_query > 500:
            raise ValueError(f"EnvConfig.results_per_query must be <= 500, got {self.results_per_query}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EnvConfig:
        """Build from keyword arguments, naming any unknown ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"unknown InternetExplorerEnv argument(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
