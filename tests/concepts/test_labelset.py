"""The label-set setting: k, the top fraction, class texts and the reduced vocabulary of a tiny WordNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ie_env.concepts.labelset import (
    LabelSetConfig,
    build_label_set,
    class_text,
    top_fraction,
    top_k_for,
    topk_scores,
)
from ie_env.concepts.vocabulary import Vocabulary

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(
    ("labels", "k"), [(1, 1), (2, 1), (3, 1), (5, 1), (6, 2), (10, 3), (101, 33), (500, 166)]
)
def test_k_is_floor_of_a_third_at_least_one(labels: int, k: int) -> None:
    assert top_k_for(labels) == k


def test_topk_scores_average_the_k_nearest_classes() -> None:
    concepts = np.eye(4, dtype=np.float32)
    classes = np.asarray([[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 0, 1]], dtype=np.float32)
    np.testing.assert_allclose(topk_scores(concepts, classes, 1), [1.0, 0.8, 0.0, 1.0])
    np.testing.assert_allclose(topk_scores(concepts, classes, 2), [0.8, 0.4, 0.0, 0.5])
    with pytest.raises(ValueError):
        topk_scores(concepts, classes, 4)


def test_top_fraction_rounds_up_and_breaks_ties_by_position() -> None:
    scores = np.asarray([0.1, 0.9, 0.5, 0.9, 0.2, 0.0, 0.3, 0.4, 0.8, 0.7])
    assert top_fraction(scores, 0.1).tolist() == [1]
    assert top_fraction(scores, 0.2).tolist() == [1, 3]
    assert top_fraction(scores, 0.25).tolist() == [1, 3, 8]  # ceil(2.5)
    assert top_fraction(scores[:3], 0.01).tolist() == [1]  # at least one
    assert len(top_fraction(np.zeros(146_347), 0.1)) == 14_635  # the paper's reduced vocabulary


def test_config_checks_class_names() -> None:
    assert LabelSetConfig(("owl ", " barn   owl")).class_names == ("owl", "barn owl")
    assert LabelSetConfig("owl").class_names == ("owl",)
    for names in ((), ("owl", "OWL"), ("owl", " ")):
        with pytest.raises(ValueError):
            LabelSetConfig(names)
    with pytest.raises(ValueError, match="fraction"):
        LabelSetConfig(("owl",), fraction=0.0)
    with pytest.raises(ValueError, match="class_query_share"):
        LabelSetConfig(("owl",), class_query_share=1.5)


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Vocabulary:
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))
    return Vocabulary("full", folder=DATA)


def test_class_texts_follow_the_template(tiny: Vocabulary) -> None:
    owl = tiny.find("owl")[0]
    assert class_text("owl", tiny, "bird") == f"owl (bird): {owl.gloss}."
    assert class_text("owl", tiny) == f"owl (bird of prey): {owl.gloss}."
    assert class_text("hawk", tiny, "bird") == "hawk (bird)"
    assert class_text("hawk", tiny) == "hawk"


@pytest.mark.model
def test_reduced_vocabulary_of_a_tiny_wordnet(tiny: Vocabulary) -> None:
    from ie_env.concepts.textembed import embed_texts

    config = LabelSetConfig(("owl", "hawk", "eagle"), category="bird", fraction=0.45)
    labels = build_label_set(config, tiny)
    assert labels.k == 1 and labels.class_queries == ("owl", "hawk", "eagle")
    expected = np.max(tiny.embeddings() @ embed_texts(list(labels.class_texts)).T, axis=1)
    np.testing.assert_allclose(labels.scores, expected, atol=1e-5)
    count = int(np.ceil(0.45 * len(tiny)))
    best = {int(tiny.ids[p]) for p in np.argsort(-labels.scores, kind="stable")[:count]}
    owl_ids = {c.id for c in tiny.find("owl")}
    assert labels.class_concept_ids == (tuple(sorted(owl_ids)), (), ())
    assert set(labels.concept_ids.tolist()) == best | owl_ids
    kept = {tiny.by_id(int(i)).lemma for i in labels.concept_ids}
    birds = {
        "owl",
        "bird of Minerva",
        "bird of night",
        "hooter",
        "owlet",
        "bird of prey",
        "raptor",
        "raptorial bird",
    }
    assert kept == birds  # the 8 birds of prey score 0.49..0.99, everything else <= 0.40
