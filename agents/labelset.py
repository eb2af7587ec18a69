"""The label-set setting for any agent: a reduced vocabulary plus a share of class-name queries.

When the target's class names are known (not its labelled images), the paper reduces the vocabulary
to the concepts nearest the class names and spends half of the queries on the class names
themselves. :class:`LabelSetAgent` does that around any concept-space agent: the inner agent sees
only the reduced vocabulary (:func:`ie_env.concepts.labelset.build_label_set`: the top 10 % of
concepts by their mean top-``k`` text similarity to the class names, plus the class names' own
WordNet senses) and proposes ``k - round(k * class_query_share)`` of every iteration's queries; the
rest are class-name queries (a class uniformly, then one of its senses uniformly). Every step whose
concept lies in the reduced vocabulary (class-name senses do) is passed to the inner agent, so a GP
learns from the class-name queries too.

A class name with no WordNet sense is queried through the reduced vocabulary's concept whose text
embedding is nearest to the class text (the action space holds WordNet concepts only).

Build it by name: ``make_agent("softmax_gp", env, label_set={"class_query_share": 0.5})``; the class
names default to the env target's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ie_env.agents.base import Agent, ConceptSpace

from ie_env.concepts.labelset import LabelSet, LabelSetConfig, build_label_set, class_text


def sub_space(space: ConceptSpace, positions: np.ndarray) -> ConceptSpace:
    """The concepts of ``space`` at ``positions`` (ascending), cluster labels renumbered 0..c-1."""
    positions = np.asarray(positions, dtype=np.int64)
    _, labels = np.unique(space.cluster_labels[positions], return_inverse=True)
    return ConceptSpace(
        n=len(positions),
        ids=space.ids[positions],
        texts=tuple(space.texts[p] for p in positions),
        query_texts=tuple(space.query_texts[p] for p in positions),
        embeddings=space.embeddings[positions],
        cluster_labels=labels.astype(np.int64),
        query_embeddings=None if space.query_embeddings is None else space.query_embeddings[positions],
    )


class LabelSetAgent(Agent):
    """Run ``inner`` on the label set's reduced vocabulary and mix in class-name queries.

    Args:
        inner: an agent that sees only its :class:`ConceptSpace` (random, the GP agents, ...).
        label_set: the reduced vocabulary (full-vocabulary concept ids) and the class names.
        class_vectors: the class texts' embeddings, L2-normalised rows, one per class name (for the
            class names with no WordNet sense).
        class_query_share: share of every iteration's queries spent on class names.
    """

    def __init__(
        self,
        inner: Agent,
        label_set: LabelSet,
        class_vectors: np.ndarray,
        class_query_share: float = 0.5,
    ) -> None:
        super().__init__()
        if not isinstance(inner, Agent):
            raise TypeError(f"the label-set setting wraps an Agent, got {type(inner).__name__}")
        if inner.privileged:
            raise ValueError(f"the label-set setting is for real agents, not {inner.name} (privileged)")
        self.inner = inner
        self.label_set = label_set
        self.class_vectors = np.asarray(class_vectors, dtype=np.float32)
        if self.class_vectors.shape[0] != len(label_set.class_names):
            raise ValueError(
                f"class_vectors has {self.class_vectors.shape[0]} rows for {len(label_set.class_names)} class names"
            )
        self.class_query_share = float(class_query_share)
        self.name = inner.name
        # an inner agent that asks before every step: the class names take their share step by step
        self.per_step = bool(getattr(inner, "per_step", False))
        self.kept: np.ndarray = np.zeros(0, dtype=np.int64)
        self.groups: list[list[int]] = []
        self._sub_of: dict[int, int] = {}

    def _reset(self) -> None:
        space = self.space
        position_of = {int(i): p for p, i in enumerate(space.ids)}
        missing = [int(i) for i in self.label_set.concept_ids if int(i) not in position_of]
        if missing:
            raise ValueError(
                f"the label set names {len(missing)} concepts that are not actions of this env "
                f"(first: id {missing[0]}); build it from the env's vocabulary"
            )
        self.kept = np.asarray(
            sorted(position_of[int(i)] for i in self.label_set.concept_ids), dtype=np.int64
        )
        self._sub_of = {int(p): s for s, p in enumerate(self.kept)}
        self.proposed = 0  # steps proposed one at a time (per-step inner agents)
        self.groups = []
        for c, ids in enumerate(self.label_set.class_concept_ids):
            if ids:
                self.groups.append(sorted(position_of[int(i)] for i in ids))
            else:  # no WordNet sense: the reduced vocabulary's nearest concept to the class text
                nearest = int(np.argmax(space.embeddings[self.kept] @ self.class_vectors[c]))
                self.groups.append([int(self.kept[nearest])])
        self.inner.reset(sub_space(space, self.kept), self.rng)

    def propose(self, k: int) -> list[int]:
        """``round(k * class_query_share)`` class-name queries, the rest from the inner agent, shuffled.

        Around a per-step inner agent, one step at a time on a running schedule (:meth:`_propose_one`).
        """
        space, rng = self._require_reset()
        k = self._check_k(k)
        if self.per_step:
            return [self._propose_one(rng) for _ in range(k)]
        n_class = round(k * self.class_query_share)
        picks = []
        for _ in range(n_class):
            group = self.groups[int(rng.integers(len(self.groups)))]
            picks.append(group[int(rng.integers(len(group)))])
        if n_class < k:
            picks += [int(self.kept[p]) for p in self.inner.propose(k - n_class)]
        if 0 < n_class < k:
            picks = [picks[i] for i in rng.permutation(k)]
        return picks

    def _propose_one(self, rng: np.random.Generator) -> int:
        """Step ``t`` is a class name when ``floor((t + 1) * share)`` passes ``floor(t * share)``."""
        t, share = self.proposed, self.class_query_share
        self.proposed += 1
        if np.floor((t + 1) * share) > np.floor(t * share):
            group = self.groups[int(rng.integers(len(self.groups)))]
            return group[int(rng.integers(len(group)))]
        return int(self.kept[self.inner.propose(1)[0]])

    def update(self, action: int, reward: float, info: dict[str, Any]) -> None:
        """Pass the step to the inner agent when its concept is in the reduced vocabulary."""
        sub = self._sub_of.get(int(action))
        if sub is not None:
            self.inner.update(sub, reward, info)

    def end_iteration(self) -> None:
        """Close the inner agent's iteration."""
        self.inner.end_iteration()

    def _state(self) -> dict[str, Any]:
        inner = {f"inner.{key}": value for key, value in self.inner._state().items()}
        return {**inner, "proposed": np.asarray(self.proposed)}

    def _load(self, state: dict[str, Any]) -> None:
        inner = {
            key.removeprefix("inner."): value for key, value in state.items() if key.startswith("inner.")
        }
        self.proposed = int(state.get("proposed", 0))
        unknown = sorted(set(state) - {f"inner.{key}" for key in inner} - {"proposed"})
        if unknown:
            raise ValueError(f"LabelSetAgent has no state keys {unknown}")
        self.inner._load(inner)


def label_set_config(value: Any, class_names: Sequence[str]) -> LabelSetConfig:
    """A :class:`LabelSetConfig` from ``True``, a dict of its fields, or a config (class names filled in)."""
    if isinstance(value, LabelSetConfig):
        return value
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(
            f"label_set must be True, a dict of LabelSetConfig fields or a LabelSetConfig, got {value!r}"
        )
    fields = dict(value)
    fields.setdefault("class_names", tuple(class_names))
    return LabelSetConfig(**fields)


def wrap_in_label_set(inner: Agent, env: Any, value: Any) -> LabelSetAgent:
    """Wrap ``inner`` in the label-set setting of ``env``'s vocabulary and target (see the module)."""
    from ie_env.agents.baselines import target_class_names

    from ie_env.concepts.textembed import embed_texts

    config = label_set_config(value, () if _names_given(value) else target_class_names(env))
    vocabulary = env.unwrapped.vocabulary
    texts = [class_text(name, vocabulary, config.category) for name in config.class_names]
    vectors = np.asarray(embed_texts(texts), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    label_set = build_label_set(config, vocabulary, class_vectors=vectors)
    return LabelSetAgent(inner, label_set, vectors, config.class_query_share)


def _names_given(value: Any) -> bool:
    return isinstance(value, LabelSetConfig) or (isinstance(value, dict) and "class_names" in value)
