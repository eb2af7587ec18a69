"""The environment's configuration: one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ie_env.concepts.descriptors import DescriptorConfig
from ie_env.download.executor import ExecutorConfig
from ie_env.learn.config import REWARDS
from ie_env.validate import check_bool, check_choice, check_int, check_ints, fail

ENGINES = ("local", "openverse", "wikimedia", "flickr")


@dataclass(frozen=True)
class EnvConfig:
    """Everything an :class:`~ie_env.env.InternetExplorerEnv` needs; defaults fit 2 CPU cores.

    Attributes:
        target: a target preset (``ocp-10``, ``ocp-30``, ``fmnist``, ``gen-4`` ...), a folder of images, or
            web categories as a list or a comma-separated string
            (``"openclipart/animals/birds,openclipart/food/fruit"``; stored as a tuple).
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
        target_only: the no-download baseline (full env only): every step searches and downloads
            nothing (reward 0, status ``target_only``), and each iteration's training phase runs on the
            target-train set alone, on the same schedule, so a run shows what training without the web
            gives.
        frozen_encoder: frozen variant's encoder: ``warmup`` (the cached warm-up), ``pretrained``
            (ImageNet EfficientNet-Lite0), or the path of a saved learner checkpoint.
        threads: torch CPU threads for this whole process (None, the default: leave the process's
            setting alone, e.g. what an entry point set with ``ie_env.runtime.use_threads``). An explicit
            value is applied once, process-wide, when the env is made.
        record_seconds: put wall-clock seconds per stage in ``info["seconds"]`` (None: yes for the full
            env, no for the frozen one, whose steps must be deterministic, info included).
        run_dir: where the full env stores downloaded images (None: a fresh folder under the cache dir);
            an existing folder that is not empty is refused unless ``resume``.
        resume: reopen the image stores already in ``run_dir`` (to continue a checkpointed run whose
            later state the caller restores) instead of refusing a non-empty folder.
        progress: print what the env is building (target, web index, warm-up, corpus embeddings) and
            draw progress bars on stderr while it builds; False for silence.
        descriptors: query descriptors (the paper's "Ours++"): ``none``, ``wordnet`` (offline, adjectives
            WordNet links to the concept or its hypernyms, plus generic visual ones) or ``llm`` (an
            OpenAI-compatible chat endpoint; ``$IE_ENV_LLM_URL``, ``$IE_ENV_LLM_MODEL``,
            ``$IE_ENV_LLM_API_KEY``), a dict of :class:`~ie_env.concepts.descriptors.DescriptorConfig`
            fields, or such a config. The query sent is ``descriptor + " " + concept query``.
        executor: the full env's search-and-download back end: ``local`` (asyncio in this process)
            or ``ray`` (workers on a Ray cluster; the ``ray`` extra).
        ray_address: an existing Ray cluster's address (None: start a local one) for ``executor="ray"``.
        executor_overrides: extra :class:`~ie_env.download.executor.ExecutorConfig` fields.
        learn_overrides: extra :class:`~ie_env.learn.config.LearnConfig` fields.
        download_overrides: extra download config fields.
    """

    target: str | tuple[str, ...] = "ocp-10"
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
    target_only: bool = False
    frozen_encoder: str = "warmup"
    threads: int | None = None
    record_seconds: bool | None = None
    run_dir: str | None = None
    resume: bool = False
    progress: bool = True
    descriptors: Any = "none"
    executor: str = "local"
    ray_address: str | None = None
    executor_overrides: dict[str, Any] = field(default_factory=dict)
    learn_overrides: dict[str, Any] = field(default_factory=dict)
    download_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", _normalise_target(self.target))
        object.__setattr__(self, "descriptors", DescriptorConfig.parse(self.descriptors))
        self.executor_config()  # validates executor, ray_address and executor_overrides
        check_ints(
            self,
            (
                "budget",
                "queries_per_iteration",
                "results_per_query",
                "n_clusters",
                "image_size",
                "train_steps_per_query",
            ),
            1,
        )
        check_int(self, "threads", 1, optional=True)
        check_int(self, "results_per_query", 1, 500)
        check_int(self, "eval_every", 0)
        check_int(self, "train_steps_per_iteration", 0, optional=True)
        check_choice(self, "engine", ENGINES)
        check_choice(self, "reward", REWARDS)
        for name in ("frozen", "per_step_training", "warmup", "progress", "resume", "target_only"):
            check_bool(self, name)
        if self.target_only and self.frozen:
            fail(self, "target_only", "be False for the frozen env (its encoder never trains)", True)
        if self.resume and self.run_dir is None and not self.frozen:
            fail(self, "resume", "come with the run_dir to reopen")
        if self.frozen and self.engine != "local":
            fail(
                self,
                "engine",
                "be 'local' when frozen=True (the frozen env searches the offline web in process)",
            )

    def executor_config(self) -> ExecutorConfig:
        """The :class:`~ie_env.download.executor.ExecutorConfig` these fields describe."""
        return ExecutorConfig(kind=self.executor, address=self.ray_address, **self.executor_overrides)

    @property
    def target_spec(self) -> str | list[str]:
        """The target as :func:`ie_env.web.targets.load_target` takes it (a category tuple becomes a list)."""
        return list(self.target) if isinstance(self.target, tuple) else self.target

    @property
    def target_label(self) -> str:
        """The target as one line of text (categories joined by commas)."""
        return ",".join(self.target) if isinstance(self.target, tuple) else self.target

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
        """The fields as a JSON-serialisable dict."""
        out = dataclasses.asdict(self)
        out["descriptors"] = dataclasses.asdict(self.descriptors)
        if isinstance(self.target, tuple):
            out["target"] = list(self.target)
        return out


def _normalise_target(target: Any) -> str | tuple[str, ...]:
    """A preset or folder stays a string; categories (a list, or ``a/b,c/d``) become a tuple."""
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if isinstance(target, str):
        if "," in target:
            target = [part for part in target.split(",")]
        else:
            if not target.strip():
                fail(EnvConfig, "target", "be a preset, a folder or category paths", target)
            return target.strip()
    if not isinstance(target, Sequence) or isinstance(target, str | bytes):
        fail(EnvConfig, "target", "be a preset name, a folder, or a list of category paths", target)
    parts = tuple(str(part).strip() for part in target)
    if not parts or not all(parts) or not all(isinstance(p, str) for p in target):
        fail(EnvConfig, "target", "list non-empty category paths such as 'openclipart/animals/birds'", target)
    return parts
