"""Baselines that learn nothing: uniform random, and the paper's label-set search.

The label-set baseline (paper §4, "search with the target's class names only") queries the concepts
that match the target's class names; its half-and-half variant fills half of every iteration with
class-name concepts and half with uniformly random ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ie_env.agents.base import Agent, ConceptSpace


class RandomAgent(Agent):
    """Uniform i.i.d. concepts (the paper's random-exploration baseline)."""

    name = "random"

    def propose(self, k: int) -> list[int]:
        """``k`` positions drawn uniformly with replacement."""
        space, rng = self._require_reset()
        return [int(i) for i in rng.integers(space.n, size=self._check_k(k))]


def concept_lemma(text: str) -> str:
    """The lemma of a concept text ``"{lemma} ({hypernym}): {gloss}."`` (or ``"{lemma}: ..."``)."""
    head = text.split(": ", 1)[0]
    if head.endswith(")") and " (" in head:
        head = head[: head.rindex(" (")]
    return head


def _normal(word: str) -> str:
    return " ".join(word.replace("_", " ").lower().split())


def label_positions(
    space: ConceptSpace, class_names: Sequence[str], name_embeddings: np.ndarray | None = None
) -> list[list[int]]:
    """The concept positions of each class name.

    A class name maps to every concept whose lemma equals it (case, spaces and underscores ignored);
    a name with no such concept maps to the concept whose text embedding is nearest to the name's
    embedding (``name_embeddings``, one L2-normalised row per name; computed with the env's sentence
    model when omitted).
    """
    by_lemma: dict[str, list[int]] = {}
    for position, text in enumerate(space.texts):
        by_lemma.setdefault(_normal(concept_lemma(text)), []).append(position)
    groups: list[list[int]] = []
    missing = [i for i, name in enumerate(class_names) if _normal(name) not in by_lemma]
    if missing and name_embeddings is None:
        from ie_env.concepts.textembed import embed_texts

        name_embeddings = np.zeros((len(class_names), space.embeddings.shape[1]), dtype=np.float32)
        name_embeddings[missing] = embed_texts([class_names[i] for i in missing])
    for i, name in enumerate(class_names):
        matched = by_lemma.get(_normal(name))
        if matched is None:
            matched = [int(np.argmax(space.embeddings @ np.asarray(name_embeddings[i], dtype=np.float32)))]
        groups.append(matched)
    return groups


def target_class_names(env: Any) -> tuple[str, ...]:
    """The target's class names of an Internet Explorer env (labels are known to this baseline)."""
    base = env.unwrapped
    names = getattr(base, "target_class_names", None)
    if names is not None:
        return tuple(names() if callable(names) else names)
    return tuple(base._world.target.class_names)


class LabelsAgent(Agent):
    """Query only concepts named like the target's classes (``label_share`` = 1), or a mix.

    Args:
        groups: concept positions per class name (see :func:`label_positions`).
        label_share: share of each iteration's queries taken from the class names (1.0: label set
            only; 0.5: half class names, half uniform random).

    A class-name query picks a class uniformly, then one of its concepts uniformly.
    """

    name = "labels"

    def __init__(self, groups: Sequence[Sequence[int]], label_share: float = 1.0) -> None:
        super().__init__()
        self.groups = [list(map(int, g)) for g in groups if len(g)]
        if not self.groups:
            raise ValueError("LabelsAgent needs at least one class-name concept")
        self.label_share = float(label_share)

    def propose(self, k: int) -> list[int]:
        """``round(k * label_share)`` class-name concepts and the rest uniform, in shuffled order."""
        space, rng = self._require_reset()
        k = self._check_k(k)
        n_labels = round(k * self.label_share)
        picks = []
        for _ in range(n_labels):
            group = self.groups[int(rng.integers(len(self.groups)))]
            picks.append(group[int(rng.integers(len(group)))])
        picks += [int(i) for i in rng.integers(space.n, size=k - n_labels)]
        if 0 < n_labels < k:
            picks = [picks[i] for i in rng.permutation(k)]
        return picks
