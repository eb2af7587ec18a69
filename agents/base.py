"""The agent contract: what a query policy may know (:class:`ConceptSpace`) and do (:class:`Agent`).

An agent chooses concepts (action positions of ``Discrete(n)``) for the Internet Explorer env. It sees
only the concept space (ids, texts, query texts, text embeddings, cluster labels) and what the env
returns per step (reward and ``info``), never the downloader, the learner or the world's tables.
Privileged agents (the relevance oracle) are the one exception, and say so in their names.

The agent's randomness is its own: :meth:`Agent.reset` receives a seeded ``np.random.Generator``
separate from the env's seed, so the same agent seed gives the same queries under any env seed
(given the same rewards).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class ConceptSpace:
    """Everything an agent may know about the action space.

    Attributes:
        n: number of concepts (the env's ``action_space.n``).
        ids: full-vocabulary concept id of each action position, int64 (n,).
        texts: concept text of each position (``"{lemma} ({hypernym}): {gloss}."``).
        query_texts: the search query the env sends for each position.
        embeddings: concept-text embeddings, float32 (n, d), rows L2-normalised.
        cluster_labels: k-means cluster of each position, int64 (n,).
        query_embeddings: embeddings of ``query_texts`` (the vectors the offline search engine ranks
            them with), float32 (n, d'), rows L2-normalised; None where the vocabulary has not cached
            them.
    """

    n: int
    ids: np.ndarray
    texts: tuple[str, ...]
    query_texts: tuple[str, ...]
    embeddings: np.ndarray
    cluster_labels: np.ndarray
    query_embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.n
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"ConceptSpace.n must be an integer >= 1, got {n!r}")
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        embeddings = _unit_rows("embeddings", self.embeddings, n)
        queries = None
        if self.query_embeddings is not None:
            queries = _unit_rows("query_embeddings", self.query_embeddings, n)
        labels = np.asarray(self.cluster_labels, dtype=np.int64).reshape(-1)
        for name, value in (("ids", ids), ("cluster_labels", labels)):
            if value.shape != (n,):
                raise ValueError(f"ConceptSpace.{name} must have shape ({n},), got {value.shape}")
        for name in ("texts", "query_texts"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ConceptSpace.{name} must hold {n} strings")
        for array in (ids, embeddings, labels, queries):
            if array is not None:
                array.setflags(write=False)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "embeddings", embeddings)
        object.__setattr__(self, "query_embeddings", queries)
        object.__setattr__(self, "cluster_labels", labels)
        object.__setattr__(self, "texts", tuple(self.texts))
        object.__setattr__(self, "query_texts", tuple(self.query_texts))

    @classmethod
    def from_env(cls, env: Any) -> ConceptSpace:
        """Read the concept space of an Internet Explorer env (wrapped or not).

        Uses ``env.unwrapped.vocabulary`` (``ids``, ``texts``, ``query_texts`` and, where cached,
        ``query_embeddings``), ``env.unwrapped.concept_embeddings`` and ``env.unwrapped.cluster_labels``.
        """
        base = env.unwrapped
        vocabulary = base.vocabulary
        queries = vocabulary.query_embeddings(build=False, show_progress=False)
        return cls(
            n=len(vocabulary.ids),
            ids=np.asarray(vocabulary.ids),
            texts=tuple(vocabulary.texts),
            query_texts=tuple(vocabulary.query_texts),
            embeddings=np.asarray(base.concept_embeddings),
            cluster_labels=np.asarray(base.cluster_labels),
            query_embeddings=queries,
        )

    @property
    def n_clusters(self) -> int:
        """Number of clusters (largest label + 1)."""
        return int(self.cluster_labels.max()) + 1


def _unit_rows(name: str, value: Any, n: int) -> np.ndarray:
    array = np.ascontiguousarray(value, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"ConceptSpace.{name} must have shape ({n}, d), got {array.shape}")
    if not np.allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-3):
        raise ValueError(f"ConceptSpace.{name} rows must be L2-normalised")
    return array


class Agent(abc.ABC):
    """A query policy: proposes an iteration's concepts, learns from each step's reward.

    The run loop (:func:`ie_env.agents.loop.run_episode`) calls, per iteration,
    ``propose(k)``, then for every proposed action ``env.step`` and ``update``, then
    ``end_iteration()``. Subclasses keep all state in plain attributes that
    :meth:`state_dict` can return as numpy arrays and numbers.

    Attributes:
        name: the registry name; privileged agents' names start with ``privileged_`` or end with
            ``(privileged)`` in reports.
        privileged: True when the agent reads ground truth no real agent could know.
    """

    name: str = "agent"
    privileged: bool = False

    def __init__(self) -> None:
        self.space: ConceptSpace | None = None
        self.rng: np.random.Generator | None = None

    def reset(self, space: ConceptSpace, rng: np.random.Generator) -> None:
        """Start a new episode over ``space`` with the agent's own generator ``rng``."""
        if not isinstance(space, ConceptSpace):
            raise TypeError(f"space must be a ConceptSpace, got {type(space).__name__}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self.space = space
        self.rng = rng
        self._reset()

    def _reset(self) -> None:  # noqa: B027 - optional hook
        """Subclass hook: clear per-episode state (``self.space`` and ``self.rng`` are set)."""

    @abc.abstractmethod
    def propose(self, k: int) -> list[int]:
        """Return ``k`` action positions to query next (one iteration's queries)."""

    def update(self, action: int, reward: float, info: dict[str, Any]) -> None:  # noqa: B027
        """Record one step's outcome (``info`` is the env's step info)."""

    def end_iteration(self) -> None:  # noqa: B027
        """Called when an iteration closes (e.g. refit a model)."""

    def state_dict(self) -> dict[str, Any]:
        """The agent's learnable state (numpy arrays and numbers), plus its generator's state."""
        state = self._state()
        if self.rng is not None:
            state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (after :meth:`reset` on the same space)."""
        self._require_reset()
        state = dict(state)
        rng_state = state.pop("rng", None)
        if rng_state is not None:
            self.rng.bit_generator.state = rng_state
        self._load(state)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state keys {sorted(state)}")

    def _require_reset(self) -> tuple[ConceptSpace, np.random.Generator]:
        if self.space is None or self.rng is None:
            raise RuntimeError(f"{type(self).__name__}.reset(space, rng) must be called first")
        return self.space, self.rng

    @staticmethod
    def _check_k(k: int) -> int:
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise ValueError(f"propose(k) needs an integer k >= 1, got {k!r}")
        return int(k)
