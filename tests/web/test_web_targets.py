"""Target sets: seeded splits, index exclusions, relevance, presets and errors (no Debian packages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ie_env.web.corpus import open_corpus
from ie_env.web.targets import PRESETS, SplitConfig, UnknownTargetError, category_matches, load_target


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return open_corpus("generated", root=tmp_path_factory.mktemp("web"), progress=False)


def test_gen4_split_is_40_20_40_per_category_and_disjoint(corpus) -> None:
    target = load_target("gen-4", corpus=corpus)
    assert target.class_names == ("circle", "square", "triangle", "star")
    assert len(target.train_ids) == 4 * 16 and len(target.test_ids) == 4 * 8 and len(target.web_ids) == 4 * 16
    assert set(target.train_ids).isdisjoint(target.test_ids)
    assert set(target.web_ids).isdisjoint(target.excluded_ids)
    assert target.excluded_ids == frozenset(target.train_ids) | frozenset(target.test_ids)
    for ids, labels in ((target.train_ids, target.train_labels), (target.test_ids, target.test_labels)):
        assert np.bincount(labels).tolist() == ([16] * 4 if ids is target.train_ids else [8] * 4)
        for image_id, label in zip(ids, labels, strict=True):
            assert corpus.categories[corpus.row(image_id)] == f"generated/{target.class_names[label]}"


def test_split_is_seeded(corpus) -> None:
    first = load_target("gen-4", corpus=corpus)
    again = load_target("gen-4", corpus=corpus)
    other = load_target("gen-4", corpus=corpus, split=SplitConfig(seed=1))
    assert first.train_ids == again.train_ids and first.test_ids == again.test_ids
    assert first.train_ids != other.train_ids


def test_relevance_and_relevant_fraction(corpus) -> None:
    target = load_target("gen-4", corpus=corpus)
    assert target.relevant("generated/star") and not target.relevant("generated/dots")
    assert not target.relevant("generated/starry")
    mask = target.relevant_mask
    assert mask.sum() == 4 * 40
    star = next(i for i in target.web_ids if corpus.categories[corpus.row(i)] == "generated/star")
    dots = corpus.ids[corpus.categories.index("generated/dots")]
    assert target.is_relevant_id(star) and not target.is_relevant_id(dots)
    assert not target.is_relevant_id("no-such-id")
    assert target.relevant_fraction([star, dots, dots, dots]) == 0.25
    assert target.relevant_fraction([]) == 0.0
    assert target.searchable_relevant == 4 * 16


def test_target_images_come_back_as_arrays(corpus) -> None:
    target = load_target("gen-4", corpus=corpus)
    train = target.train_images(size=32)
    test = target.test_images(size=16)
    assert train.shape == (64, 32, 32, 3) and test.shape == (32, 16, 16, 3)
    assert train.dtype == np.uint8


def test_custom_category_list(corpus) -> None:
    target = load_target(
        ["generated/dots", "generated/ring"], corpus=corpus, split=SplitConfig(0.5, 0.25, seed=3)
    )
    assert target.name.startswith("custom-")
    assert target.class_names == ("dots", "ring")
    assert len(target.train_ids) == 40 and len(target.test_ids) == 20


def test_unknown_target_names_the_presets() -> None:
    with pytest.raises(UnknownTargetError, match="ocp-10.*ocp-30.*fmnist.*gen-4"):
        load_target("ocp-11")


def test_category_without_images_is_a_clear_error(corpus) -> None:
    with pytest.raises(ValueError, match=r"generated/hexagon.*0 images"):
        load_target(["generated/hexagon"], corpus=corpus)


def test_folder_target_uses_subfolders_as_labels(corpus, tmp_path: Path) -> None:
    for label, color in (("apples", (200, 0, 0)), ("pears", (0, 200, 0))):
        for i in range(6):
            folder = tmp_path / "mine" / label
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20 + i, 20), color).save(folder / f"{label}_{i}.png")
    target = load_target(tmp_path / "mine", corpus=corpus, root=tmp_path / "web", progress=False)
    assert target.class_names == ("apples", "pears")
    assert len(target.train_ids) == 6 and len(target.test_ids) == 6
    assert target.excluded_ids == frozenset()  # the user's images are not on the web
    assert target.train_images(size=8).shape == (6, 8, 8, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train": 0.0}, "train"),
        ({"test": 1.5}, "test"),
        ({"train": 0.7, "test": 0.4}, "train \\+ test"),
        ({"per_category": 1}, "per_category"),
    ],
)
def test_split_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SplitConfig(**kwargs)


def test_presets_do_not_nest_and_match_prefixes() -> None:
    assert category_matches("openclipart/animals/birds/penguin", "openclipart/animals/birds")
    assert not category_matches("openclipart/animals/birdsong", "openclipart/animals/birds")
    for preset in PRESETS.values():
        for a in preset.categories:
            assert not any(b != a and category_matches(b, a) for b in preset.categories)
    assert len(PRESETS["ocp-10"].categories) == 10 and len(PRESETS["ocp-30"].categories) == 30
