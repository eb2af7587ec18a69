"""The Internet Explorer environment: concept selection as a Gymnasium env."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ie_env import runtime
from ie_env.concepts.descriptors import make_descriptor_source
from ie_env.concepts.vocabulary import Vocabulary
from ie_env.config import EnvConfig
from ie_env.iteration import IterationTotals
from ie_env.observation import QueryStatistics, concept_clusters
from ie_env.worlds.base import QueryOutcome, World
from ie_env.worlds.common import announce


class InternetExplorerEnv(gym.Env):
    """Concept selection for targeted representation learning on the (offline) web.

    ## Description

    Internet Explorer (Li, Brown, Efros, Pathak, ICML 2023) as an environment. A self-supervised
    encoder should learn about an unlabeled *target* image set. Each step the agent picks one concept
    (a WordNet noun); the env searches the web for it, obtains the images, and rewards the agent by how
    similar those images are to the target set under the current encoder. Every
    ``queries_per_iteration`` steps an *iteration* closes: the encoder trains (MoCo v3) on the new images
    plus a replay buffer and the target set, the buffer keeps the best half of the new images, and
    k-NN accuracy on the labeled target-test split is measured.

    Two registered variants share this class, its spaces and its ``info`` keys:

    * ``ie_env/InternetExplorer-v0`` (``frozen=False``): real search over HTTP (the offline web on
      127.0.0.1 by default, started by the env), real downloads into a SQLite-backed image store, real
      SSL training. Seconds per step on a CPU. Registered ``nondeterministic=True``.
    * ``ie_env/InternetExplorerFrozen-v0`` (``frozen=True``): a fixed encoder (the cached target warm-up
      by default), corpus embeddings and image rewards precomputed, search in process over the same
      index as the server, no training. Well under a millisecond per step, for policy research.

    ## Action Space

    ``Discrete(len(vocabulary))``: the position of a concept in the configured vocabulary subset
    (146,347 concepts for ``full``). The query text is distinct for every concept: the lemma, and for
    the less frequent senses of an ambiguous lemma a disambiguating word from the hypernym (``bass``
    the pitch, ``bass fish``, ``bass voice``; see ``ie_env.concepts.queries``), the same in both
    variants. See ``ie_env.wrappers`` for smaller action spaces (cluster index, embedding point,
    batches of concepts).

    ## Observation Space

    ``Box(-1, 1, (2K + 2,), float32)`` with K = ``n_clusters`` k-means clusters of the concepts' text
    embeddings:

    | index | meaning |
    |---|---|
    | 0 .. K-1 | mean reward of the queries made in each cluster this episode (0 if none) |
    | K .. 2K-1 | queries made in each cluster / ``budget`` (clipped to 1) |
    | 2K | episode progress: steps / ``budget`` |
    | 2K+1 | the last step's reward (0 after reset) |

    ## Rewards

    The paper's concept score: each new image's reward is the mean cosine similarity between its
    encoder embedding and its k = 15 nearest target-train embeddings; the step's reward is the mean of
    the top-10 image rewards of the query (fewer images: the mean of those; none, or a failed search:
    0.0, with the reason in ``info["status"]``). No shaping. With ``reward="knn_centered"``, a
    hubness-corrected image reward is used instead.

    ## Starting State

    ``reset(seed=...)`` restores the initial encoder (after the cached target warm-up), an empty replay
    buffer, empty statistics and an all-zero observation. All randomness comes from ``self.np_random``.

    ## Episode End

    The episode is truncated when ``budget`` queries have been made (default 64); it never terminates.
    Set the length with ``budget=N``: ``gym.make(id, max_episode_steps=N)`` adds Gymnasium's ``TimeLimit``
    wrapper, which the env itself cannot see (its statistics would still be normalised by ``budget``).

    ## Info

    Every step: ``query`` (what was sent: ``descriptor + " " + concept_query`` with descriptors, else
    ``concept_query``), ``concept_query``, ``descriptor`` (``""`` without), ``concept_id``, ``action``, ``status``, ``error``, ``image_rewards`` and
    ``image_captions`` (of the new images), ``image_statuses`` and ``hit_ids`` (of every hit, in rank
    order), ``download_counts``, ``hits``, ``images_kept``, ``relevant_fraction``,
    ``iteration``, ``seconds`` (wall time per stage: search, download, store, score, step; empty in
    the frozen env unless ``record_seconds=True``, so that its steps are fully deterministic). At the end of an iteration also ``train`` (loss, steps,
    images/s) and, when computed, ``eval`` (k-NN accuracy).

    ``info["iteration_end"]`` is present exactly on the step that closes an iteration (in both
    variants and in per-step training mode; loops need not infer it from other keys): the
    iteration's summary ``{"iteration", "steps", "queries", "images_kept", "mean_reward",
    "relevant_fraction"}`` (the last weighted by images kept; None where unknown or no image was
    kept), plus ``train`` and ``eval`` when they were computed.

    ## Arguments

    Keyword arguments are the fields of :class:`ie_env.config.EnvConfig` (``target``, ``vocabulary``,
    ``frozen``, ``budget``, ``queries_per_iteration``, ``results_per_query``, ``n_clusters``,
    ``encoder``, ``image_size``, ``reward``, ``threads``, ...), or ``config=EnvConfig(...)``; plus
    ``render_mode`` (``None`` or ``"ansi"``).

    ```python
    import gymnasium as gym, ie_env
    env = gym.make("ie_env/InternetExplorerFrozen-v0", target="ocp-10")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    ```

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self, config: EnvConfig | None = None, render_mode: str | None = None, **kwargs: Any
    ) -> None:
        self.config = _resolve_config(config, kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        cfg = self.config
        if cfg.threads is not None:  # documented as process-wide: applied once, here
            runtime.use_threads(cfg.threads)
        self.vocabulary = Vocabulary(cfg.vocabulary)
        self.descriptors = make_descriptor_source(cfg.descriptors, self.vocabulary)
        self._descriptor_rng = np.random.default_rng(0)
        # The world first: it loads the target, so a bad target fails before the (long, first-time)
        # embedding of the vocabulary.
        self._world: World = self._make_world()
        try:
            if cfg.progress and not self.vocabulary.embeddings_cached():
                announce(f"embedding {len(self.vocabulary):,} concept texts (once; cached)")
            self.concept_embeddings = self.vocabulary.embeddings(show_progress=cfg.progress)
        except BaseException:
            self._world.close()
            raise
        self.cluster_labels = concept_clusters(self.concept_embeddings, cfg.n_clusters)
        n_clusters = int(self.cluster_labels.max()) + 1
        self._stats = QueryStatistics(self.cluster_labels, n_clusters, cfg.budget)
        self.action_space = spaces.Discrete(len(self.vocabulary))
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(self._stats.size,), dtype=np.float32)
        self.queried = np.zeros(len(self.vocabulary), dtype=bool)
        self.iteration = 0
        self._concept_rewards: dict[int, float] = {}
        self._iteration_totals = IterationTotals()
        self._record_seconds = cfg.record_seconds if cfg.record_seconds is not None else not cfg.frozen

    def _make_world(self) -> World:
        if self.config.frozen:
            from ie_env.worlds.frozen import FrozenWorld

            return FrozenWorld(self.config, self.vocabulary, progress=self.config.progress)
        from ie_env.worlds.full import FullWorld

        return FullWorld(self.config, self.vocabulary, progress=self.config.progress)

    # -- Gymnasium API ------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode: initial encoder, empty buffer and statistics, all-zero observation."""
        super().reset(seed=seed)
        self._stats.reset()
        self.queried[:] = False
        self.iteration = 0
        self._concept_rewards = {}
        self._iteration_totals = IterationTotals()
        # The descriptor stream is drawn first, so both variants (whose worlds draw differently
        # from the env's RNG) pick the same descriptors under the same seed.
        self._descriptor_rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        self._world.reset(self.np_random)
        return self._stats.observation(), {"iteration": 0, "target": self.config.target_label}

    def step(self, action: Any):
        """Query the concept at position ``action``; see the class docstring for what comes back."""
        position = self._validate_action(action)
        started = time.perf_counter()
        concept_query = self.vocabulary.query_text(position)
        descriptor, query = self.descriptors.query_for(
            concept_query, self._descriptor_rng, self.vocabulary[position]
        )
        concept_id = int(self.vocabulary.ids[position])
        outcome: QueryOutcome = self._world.query(query, concept_id)
        reward = float(outcome.reward)
        self._stats.record(position, reward)
        self.queried[position] = True
        self._concept_rewards[position] = reward
        info = self._step_info(position, query, concept_id, outcome)
        info["descriptor"] = descriptor
        info["concept_query"] = concept_query
        if self.config.per_step_training:
            info["train"] = self._world.train(self.config.train_steps_per_query)
        self._iteration_totals.add(reward, outcome)
        if self._stats.steps % self.config.queries_per_iteration == 0:
            self.iteration += 1
            evaluate = self.config.eval_every > 0 and self.iteration % self.config.eval_every == 0
            info.update(self._world.end_iteration(evaluate=evaluate))
            info["iteration_end"] = self._iteration_totals.close(self.iteration, self._stats.steps, info)
        info["iteration"] = self.iteration
        if self._record_seconds:
            info["seconds"]["step"] = time.perf_counter() - started
        else:
            info["seconds"] = {}
        truncated = self._stats.steps >= self._stats.budget
        return self._stats.observation(), reward, False, truncated, info

    def evaluate(self) -> dict[str, float]:
        """k-NN and linear-probe accuracy of the current encoder on the target's labeled test split."""
        if self._world is None:
            raise RuntimeError("evaluate() called on a closed env")
        return self._world.evaluate()

    @property
    def target_class_names(self) -> tuple[str, ...]:
        """The target's class names (the label-set setting and the labels baseline may use them)."""
        if self._world is None:
            raise RuntimeError("target_class_names read on a closed env")
        return tuple(self._world.target.class_names)

    def privileged_concept_relevance(self) -> np.ndarray:
        """PRIVILEGED ground truth, for oracle baselines and analysis only (no agent may use it).

        Returns, per action position, the share of target-category images among the concept's search
        results on the offline web (float32). Only the frozen env has these tables.

        Raises:
            NotImplementedError: on the full env.
        """
        if self._world is None:
            raise RuntimeError("privileged_concept_relevance() called on a closed env")
        relevance = getattr(self._world, "concept_relevance", None)
        if relevance is None:
            raise NotImplementedError("privileged_concept_relevance() needs the frozen env's tables")
        return relevance()

    def render(self) -> str | None:
        """With ``render_mode='ansi'``, the episode so far and its ten best concepts as text."""
        if self.render_mode != "ansi":
            return None
        best = sorted(self._concept_rewards.items(), key=lambda item: -item[1])[:10]
        lines = [f"step {self._stats.steps}/{self._stats.budget}, iteration {self.iteration}"]
        lines += [f"  {reward:+.3f}  {self.vocabulary.query_text(pos)}" for pos, reward in best]
        return "\n".join(lines)

    def close(self) -> None:
        """Stop the world's server, pools and files (closing twice is fine)."""
        descriptors = getattr(self, "descriptors", None)
        if descriptors is not None:
            descriptors.close()
        world = getattr(self, "_world", None)
        if world is not None:
            world.close()
            self._world = None  # type: ignore[assignment]
        super().close()

    # -- helpers ------------------------------------------------------------------------------

    def _validate_action(self, action: Any) -> int:
        value = np.asarray(action)
        if value.shape != () or not np.issubdtype(value.dtype, np.integer):
            raise ValueError(f"action must be a single integer concept index, got {action!r}")
        position = int(value)
        if not 0 <= position < self.action_space.n:
            raise ValueError(
                f"action {position} is out of range: the vocabulary has {self.action_space.n} concepts"
            )
        if self._world is None:
            raise RuntimeError("step() called on a closed env")
        return position

    def _step_info(self, position: int, query: str, concept_id: int, outcome: QueryOutcome) -> dict[str, Any]:
        return {
            "query": query,
            "concept_id": concept_id,
            "action": position,
            "status": outcome.status,
            "error": outcome.error,
            "image_rewards": list(outcome.image_rewards),
            "image_captions": list(outcome.image_captions),
            "image_statuses": list(outcome.image_statuses),
            "download_counts": dict(outcome.download_counts),
            "hits": outcome.hits,
            "hit_ids": list(outcome.hit_ids),
            "images_kept": len(outcome.image_rewards),
            "relevant_fraction": outcome.relevant_fraction,
            "seconds": dict(outcome.seconds),
        }


def _resolve_config(config: EnvConfig | None, kwargs: dict[str, Any]) -> EnvConfig:
    """The env's config from ``config=`` or keyword arguments.

    ``gym.make`` passes the registered variant as ``frozen=``; with ``config=`` the env id decides the
    variant, so ``gym.make(FROZEN_ENV_ID, config=EnvConfig(target=...))`` is the frozen env.
    """
    if config is None:
        return EnvConfig.from_kwargs(**kwargs)
    if not isinstance(config, EnvConfig):
        raise TypeError(f"config must be an ie_env.config.EnvConfig, got {type(config).__name__}")
    frozen = kwargs.pop("frozen", None)
    if kwargs:
        raise TypeError(
            f"pass either config=EnvConfig(...) or keyword arguments, not both (got {', '.join(sorted(kwargs))})"
        )
    if frozen is not None and bool(frozen) != config.frozen:
        config = dataclasses.replace(config, frozen=bool(frozen))
    return config
