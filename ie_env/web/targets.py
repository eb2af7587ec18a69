"""Target sets: the images the agent wants a better representation of, held out from the offline web.

A target set takes some categories of a corpus and splits each one (seeded; default 40/20/40) into an
unlabeled **target-train** part, a labeled **target-test** part and a part that **stays on the web**, like
the other bird photos the real web holds beside a bird dataset. Target-train and target-test images (and
their aliases, which are the same corpus records) are excluded from the search index, so search can only
find *other* images of the same kind.

The named presets and the split live in :mod:`ie_env.web.target_presets`. Any list of category paths,
or a folder of the user's own images (sub-folders = optional labels), works too.

Every web image's relevance (its ground-truth category, or one of its aliases' categories, lies within a
target category) is known, so runs can report the relevant-image fraction of their downloads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ie_env.web.corpus import Corpus, open_corpus
from ie_env.web.target_presets import PRESETS, SplitConfig, TargetPreset

__all__ = [
    "PRESETS",
    "SplitConfig",
    "TargetPreset",
    "TargetSet",
    "UnknownTargetError",
    "category_matches",
    "load_target",
    "split_categories",
]


class UnknownTargetError(ValueError):
    """A target set name that is neither a preset nor a folder."""


def category_matches(category: str, prefix: str) -> bool:
    """Whether ``category`` is ``prefix`` or lies below it (``a/b/c`` is within ``a/b``)."""
    return category == prefix or category.startswith(prefix + "/")


@dataclass(frozen=True, eq=False)
class TargetSet:
    """A target dataset and what it removes from, and looks for in, the web.

    Attributes:
        name: preset name, folder name or ``custom-<hash>``.
        corpus: the web corpus the agent searches.
        image_corpus: the corpus holding the target images (``corpus`` itself for clip-art presets).
        categories: category prefixes, one per class.
        class_names: readable class names (labels index into these).
        train_ids / train_labels: unlabeled target-train images (labels for evaluation only).
        test_ids / test_labels: labeled target-test images.
        web_ids: images of the target categories that stay on the web.
        excluded_ids: image ids removed from the search index.
        split: the split used.
    """

    name: str
    corpus: Corpus
    image_corpus: Corpus
    categories: tuple[str, ...]
    class_names: tuple[str, ...]
    train_ids: tuple[str, ...]
    train_labels: np.ndarray
    test_ids: tuple[str, ...]
    test_labels: np.ndarray
    web_ids: tuple[str, ...]
    excluded_ids: frozenset[str]
    split: SplitConfig

    def train_images(self, size: int = 64) -> np.ndarray:
        """Target-train images, uint8 (N, size, size, 3)."""
        return self.image_corpus.load_images(self.train_ids, size)

    def test_images(self, size: int = 64) -> np.ndarray:
        """Target-test images, uint8 (N, size, size, 3), in ``test_labels`` order."""
        return self.image_corpus.load_images(self.test_ids, size)

    def label_of(self, category: str) -> int | None:
        """Class index of a category (longest matching prefix), or None when it is not a target category."""
        best, best_len = None, -1
        for label, prefix in enumerate(self.categories):
            if category_matches(category, prefix) and len(prefix) > best_len:
                best, best_len = label, len(prefix)
        return best

    def relevant(self, category: str) -> bool:
        """Whether a ground-truth category belongs to the target."""
        return self.label_of(category) is not None

    @cached_property
    def relevant_mask(self) -> np.ndarray:
        """Bool per web-corpus row: its category or an alias' category is a target category."""
        verdict: dict[str, bool] = {}
        mask = np.zeros(len(self.corpus), dtype=bool)
        for row, category in enumerate(self.corpus.categories):
            if category not in verdict:
                verdict[category] = self.relevant(category)
            mask[row] = verdict[category]
        for row in np.nonzero(~mask)[0]:
            extra = self.corpus._alias_categories_json[row]
            if extra != "[]" and any(self.relevant(c) for c in self.corpus.alias_categories(int(row))):
                mask[row] = True
        return mask

    def is_relevant_id(self, image_id: str) -> bool:
        """Whether a web image (by id) is relevant to the target; unknown ids are not."""
        return self.corpus.has(image_id) and bool(self.relevant_mask[self.corpus.row(image_id)])

    def relevant_ids(self, ids: Iterable[str]) -> np.ndarray:
        """Bool per id (see :meth:`is_relevant_id`)."""
        return np.asarray([self.is_relevant_id(i) for i in ids], dtype=bool)

    def relevant_fraction(self, ids: Iterable[str]) -> float:
        """Share of ``ids`` that are relevant (0.0 for none)."""
        flags = self.relevant_ids(ids)
        return float(flags.mean()) if len(flags) else 0.0

    @property
    def searchable_relevant(self) -> int:
        """Relevant images the index can still return (not excluded)."""
        excluded = np.zeros(len(self.corpus), dtype=bool)
        rows = [self.corpus.row(i) for i in self.excluded_ids if self.corpus.has(i)]
        excluded[rows] = True
        return int((self.relevant_mask & ~excluded).sum())

    def info(self) -> dict:
        """Return the split's counts and what it removes from the index, for ``ie-web info``."""
        return {
            "name": self.name,
            "corpus": self.corpus.name,
            "image_corpus": self.image_corpus.name,
            "classes": len(self.class_names),
            "train": len(self.train_ids),
            "test": len(self.test_ids),
            "stays_on_web": len(self.web_ids),
            "excluded_from_index": len(self.excluded_ids),
            "searchable_relevant": self.searchable_relevant,
            "web_images": len(self.corpus),
            "split": {"train": self.split.train, "test": self.split.test, "seed": self.split.seed},
        }


def split_categories(
    corpus: Corpus, categories: Sequence[str], split: SplitConfig
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Per category (rows by longest matching prefix): (train rows, test rows, web rows), seeded.

    Raises:
        ValueError: a category has no images (the message lists similar categories).
    """
    if len(set(categories)) != len(categories):
        raise ValueError(f"target categories repeat: {list(categories)}")
    members: list[list[int]] = [[] for _ in categories]
    for row, category in enumerate(corpus.categories):
        best, best_len = None, -1
        for label, prefix in enumerate(categories):
            if category_matches(category, prefix) and len(prefix) > best_len:
                best, best_len = label, len(prefix)
        if best is not None:
            members[best].append(row)
    rng = np.random.default_rng(split.seed)
    train, test, web = [], [], []
    for label, rows in enumerate(members):
        if len(rows) < 2:
            near = sorted(c for c in corpus.category_counts() if categories[label].rsplit("/", 1)[-1] in c)[
                :8
            ]
            raise ValueError(
                f"target category {categories[label]!r} has {len(rows)} images in corpus {corpus.name!r} "
                f"(need >= 2); similar categories: {near or 'none'}"
            )
        order = np.asarray(rows)[rng.permutation(len(rows))]
        used = order if split.per_category is None else order[: split.per_category]
        n = len(used)
        n_train = min(n - 1, max(1, round(split.train * n)))
        n_test = min(n - n_train, max(1, round(split.test * n)))
        train.append(sorted(int(r) for r in used[:n_train]))
        test.append(sorted(int(r) for r in used[n_train : n_train + n_test]))
        taken = set(used[: n_train + n_test].tolist())
        web.append(sorted(int(r) for r in order if int(r) not in taken))
    return train, test, web


def _assemble(
    name: str,
    web: Corpus,
    images: Corpus,
    categories: Sequence[str],
    class_names: Sequence[str],
    split: SplitConfig,
) -> TargetSet:
    train, test, stay = split_categories(images, categories, split)
    train_ids = tuple(images.ids[r] for rows in train for r in rows)
    test_ids = tuple(images.ids[r] for rows in test for r in rows)
    same = images.key == web.key
    return TargetSet(
        name=name,
        corpus=web,
        image_corpus=images,
        categories=tuple(categories),
        class_names=tuple(class_names),
        train_ids=train_ids,
        train_labels=np.concatenate(
            [np.full(len(rows), label, np.int64) for label, rows in enumerate(train)]
        ),
        test_ids=test_ids,
        test_labels=np.concatenate([np.full(len(rows), label, np.int64) for label, rows in enumerate(test)]),
        web_ids=tuple(images.ids[r] for rows in stay for r in rows) if same else (),
        excluded_ids=frozenset(train_ids + test_ids) if same else frozenset(),
        split=split,
    )


def load_target(
    target: str | os.PathLike | Sequence[str],
    *,
    corpus: str | Corpus | None = None,
    split: SplitConfig | None = None,
    build: bool = True,
    progress: bool = True,
    root: Path | None = None,
) -> TargetSet:
    """Load a target set: a preset name, a list of category paths, or a folder of images.

    Args:
        target: ``ocp-10``, ``ocp-30``, ``fmnist``, ``gen-4``; a list like ``["openclipart/animals/birds"]``;
            or a folder (sub-folders are class labels; all its images are target images, none on the web).
        corpus: the web corpus (name or object); default: the preset's, else ``web``.
        split: override the preset's split.
        build: build missing corpus parts.
        progress: progress bars while building.
        root: corpus part folder (default ``cache_subdir('web')``).

    Raises:
        UnknownTargetError: ``target`` is neither a preset, a category list nor a folder.
    """

    def web_corpus(default: str) -> Corpus:
        if isinstance(corpus, Corpus):
            return corpus
        return open_corpus(corpus or default, build=build, progress=progress, root=root)

    if isinstance(target, str) and target in PRESETS:
        preset = PRESETS[target]
        web = web_corpus(preset.corpus)
        images = web
        if preset.image_corpus is not None:
            images = open_corpus(preset.image_corpus, build=build, progress=progress, root=root)
        return _assemble(
            preset.name, web, images, preset.categories, preset.class_names, split or preset.split
        )
    if isinstance(target, (str, os.PathLike)) and Path(target).is_dir():
        images = open_corpus(Path(target), build=build, progress=progress, root=root)
        web = web_corpus("web")
        categories = sorted(images.category_counts())
        names = [c.split("/", 1)[1] if "/" in c else c for c in categories]
        return _assemble(
            Path(target).name, web, images, categories, names, split or SplitConfig(train=0.5, test=0.5)
        )
    if isinstance(target, (list, tuple)) and target and all(isinstance(c, str) for c in target):
        web = web_corpus("web")
        digest = hashlib.sha256("\n".join(target).encode()).hexdigest()[:8]
        names = [c.rsplit("/", 1)[-1].replace("_", " ") for c in target]
        return _assemble(f"custom-{digest}", web, web, list(target), names, split or SplitConfig())
    raise UnknownTargetError(
        f"unknown target set {target!r}: not a preset ({', '.join(PRESETS)}), a list of category paths, "
        "or an existing folder of images"
    )
