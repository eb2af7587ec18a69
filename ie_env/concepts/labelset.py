"""The label-set setting: the target's class names are known (but no labelled images).

As in the paper (§3.2, Appendix C.4), the vocabulary is reduced to the concepts whose text
embeddings are closest to the class names: a concept's score is the mean of its ``k`` highest cosine
similarities to the class names, ``k = max(1, floor(len(labels) / 3))``, and the top ``fraction``
(10 %: 14,635 of WordNet's 146,347 concepts, rounding up) are kept. The class names are added as
concepts: every WordNet sense whose query is the class name itself joins the subset, and the class
names are returned as their own search queries, which agents spend a share of their queries on
(paper: 50 %; :attr:`LabelSetConfig.class_query_share`).

A class name's text for the sentence model follows the paper's class-side template
``"{label} ({category}): {summary}."``; without Wikipedia the summary is the WordNet gloss of the
label's main sense where WordNet has the label (else just ``"{label} ({category})"``, or the label).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ie_env.concepts.queries import normalize_text
from ie_env.concepts.vocabulary import Vocabulary, concept_text
from ie_env.search.base import InvalidQuery, validate_query
from ie_env.validate import check_number

CHUNK_ROWS = 8192


@dataclass(frozen=True)
class LabelSetConfig:
    """The label-set setting's settings.

    Attributes:
        class_names: the target's class names (at least one, distinct after normalisation).
        category: an optional category word for the class texts (``"bird"``, ``"flower"``).
        fraction: share of the vocabulary kept (paper: 0.1).
        class_query_share: share of an agent's queries spent on class names (paper: 0.5).
    """

    class_names: tuple[str, ...]
    category: str | None = None
    fraction: float = 0.1
    class_query_share: float = 0.5

    def __post_init__(self) -> None:
        names = (self.class_names,) if isinstance(self.class_names, str) else self.class_names
        object.__setattr__(self, "class_names", tuple(" ".join(str(n).split()) for n in names))
        check_class_names(self.class_names)
        check_number(self, "fraction", 0.0, 1.0, low_open=True)
        check_number(self, "class_query_share", 0.0, 1.0)
        if self.category is not None and not str(self.category).strip():
            raise ValueError("LabelSetConfig.category must be a non-empty word or None")


@dataclass(frozen=True)
class LabelSet:
    """A reduced vocabulary and the class names as queries.

    Attributes:
        concept_ids: full-vocabulary ids of the kept concepts (ascending), class-name senses included.
        class_names: the class names as given (whitespace collapsed).
        class_queries: their search queries (the class names).
        class_texts: their sentence-model texts (module docstring).
        class_concept_ids: per class name, the ids of WordNet senses added for it (may be empty).
        k: the top-k of the score.
        scores: the score of every concept of the vocabulary searched (in its subset order).
    """

    concept_ids: np.ndarray
    class_names: tuple[str, ...]
    class_queries: tuple[str, ...]
    class_texts: tuple[str, ...]
    class_concept_ids: tuple[tuple[int, ...], ...]
    k: int
    scores: np.ndarray


def check_class_names(names: Sequence[str]) -> None:
    """Refuse an empty list, duplicates (after normalisation) and names that are not valid queries."""
    if not names:
        raise ValueError("the label set needs at least one class name")
    seen: set[str] = set()
    for name in names:
        try:
            validate_query(name, engine="label set", max_chars=200)
        except InvalidQuery as exc:
            raise ValueError(f"class name {name!r}: {exc}") from None
        key = normalize_text(name)
        if key in seen:
            raise ValueError(f"class name {name!r} appears twice")
        seen.add(key)


def top_k_for(n_labels: int) -> int:
    """The paper's k: ``floor(n_labels / 3)``, at least 1."""
    return max(1, n_labels // 3)


def topk_scores(concept_vectors: np.ndarray, class_vectors: np.ndarray, k: int) -> np.ndarray:
    """Each concept's mean of its ``k`` highest cosines to the classes (rows L2-normalised), float32."""
    concepts = np.asarray(concept_vectors, dtype=np.float32)
    classes = np.asarray(class_vectors, dtype=np.float32)
    if not 1 <= k <= len(classes):
        raise ValueError(f"k must be in [1, {len(classes)}], got {k}")
    out = np.empty(len(concepts), dtype=np.float32)
    for lo in range(0, len(concepts), CHUNK_ROWS):
        sims = concepts[lo : lo + CHUNK_ROWS] @ classes.T
        top = np.partition(sims, len(classes) - k, axis=1)[:, len(classes) - k :]
        out[lo : lo + CHUNK_ROWS] = top.mean(axis=1)
    return out


def top_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Positions of the ``ceil(fraction x n)`` highest scores (at least 1), ties to the lower position."""
    count = max(1, math.ceil(fraction * len(scores) - 1e-9))
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    return np.sort(order[:count])


def class_text(name: str, vocabulary: Vocabulary, category: str | None = None) -> str:
    """The sentence-model text of a class name (module docstring)."""
    senses = vocabulary.find(name)
    if senses:
        main = _main_senses(name, vocabulary, senses)[0]
        return concept_text(name, category or main.hypernym, main.gloss)
    return f"{name} ({category})" if category else name


def _main_senses(name: str, vocabulary: Vocabulary, senses: list) -> list:
    """The senses whose query is the bare class name (the main sense), else all of them."""
    key = normalize_text(name)
    main = [c for c in senses if normalize_text(vocabulary.query_text(vocabulary.position_of(c.id))) == key]
    return main or senses


def build_label_set(
    config: LabelSetConfig,
    vocabulary: Vocabulary,
    *,
    class_vectors: np.ndarray | None = None,
) -> LabelSet:
    """Reduce ``vocabulary`` to the concepts nearest the class names and add the class names.

    Args:
        config: class names, category and fraction.
        vocabulary: the vocabulary to reduce (usually ``full``); its concept embeddings are used.
        class_vectors: the class texts' embeddings (default: embedded with the sentence model).

    Returns:
        The label set; ``concept_ids`` can build the reduced vocabulary's subset.
    """
    names = config.class_names
    texts = tuple(class_text(name, vocabulary, config.category) for name in names)
    if class_vectors is None:
        from ie_env.concepts.textembed import embed_texts

        class_vectors = embed_texts(list(texts))
    k = top_k_for(len(names))
    scores = topk_scores(vocabulary.embeddings(), class_vectors, k)
    kept = {int(vocabulary.ids[p]) for p in top_fraction(scores, config.fraction)}
    added = []
    for name in names:
        senses = vocabulary.find(name)
        ids = tuple(sorted(c.id for c in _main_senses(name, vocabulary, senses))) if senses else ()
        added.append(ids)
        kept.update(ids)
    return LabelSet(
        concept_ids=np.asarray(sorted(kept), dtype=np.int64),
        class_names=names,
        class_queries=names,
        class_texts=texts,
        class_concept_ids=tuple(added),
        k=k,
        scores=scores,
    )
