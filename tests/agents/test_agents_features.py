"""Where the GP places concepts: concept-text embeddings or query embeddings (``features``)."""

from __future__ import annotations

import numpy as np
import pytest
from ie_env.agents import ConceptSpace, make_agent

from ie_env.concepts.textembed import embed_texts


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _two_view_space(with_queries: bool = True) -> ConceptSpace:
    """Six concepts whose neighbours differ between the two embeddings.

    Concept texts: 0 is next to 1 (cosine ~0.99), 2..5 are apart. Queries: 0 is next to 2, and 1 is
    next to 3 and 4; 5 is apart in both.
    """
    eye = np.eye(6, dtype=np.float32)
    concepts = _unit(np.stack([eye[0], eye[0] + 0.1 * eye[1], eye[2], eye[3], eye[4], eye[5]]))
    queries = _unit(np.stack([eye[0], eye[1], eye[0] + 0.1 * eye[2], eye[1] + 0.05 * eye[3],
                              eye[1] + 0.05 * eye[4], eye[5]]))  # fmt: skip
    names = tuple(f"c{i}" for i in range(6))
    return ConceptSpace(6, np.arange(6), names, names, concepts, np.zeros(6, dtype=np.int64),
                        query_embeddings=queries if with_queries else None)  # fmt: skip


def _after_one_good_step(features: str, space: ConceptSpace, **settings):
    agent = make_agent("zucb", features=features, **settings)
    agent.reset(space, np.random.default_rng(0))
    agent.update(0, 1.0, {"images_kept": 5})
    agent.update(5, 0.0, {"images_kept": 5})
    agent.end_iteration()
    return agent


def test_the_gp_generalises_along_the_chosen_embedding():
    space = _two_view_space()
    by_concept = _after_one_good_step("concept", space)
    by_query = _after_one_good_step("query", space)
    assert by_concept.propose(1) == [1]  # concept 0's text neighbour
    assert by_query.propose(1) == [2]  # concept 0's query neighbour
    assert by_query.mean[2] > by_query.mean[1] and by_concept.mean[1] > by_concept.mean[2]
    np.testing.assert_array_equal(by_query.observations()[0], space.query_embeddings[[0, 5]])
    assert by_query.hyperparameters()["features"] == "query"


def test_query_features_also_spread_an_iterations_picks():
    space = _two_view_space()

    def picks(**settings) -> list[int]:
        agent = make_agent("zucb", features="query", **settings)
        agent.reset(space, np.random.default_rng(0))
        agent.update(1, 1.0, {"images_kept": 5})  # queries 3 and 4 are next to query 1 and each other
        agent.update(5, 0.0, {"images_kept": 5})
        agent.end_iteration()
        return agent.propose(2)

    assert set(picks()) == {3, 4}
    assert len(set(picks(max_similarity=0.9)) & {3, 4}) == 1  # query cosine(3, 4) ~0.997


def test_query_features_state_round_trips():
    space = _two_view_space()
    first = _after_one_good_step("query", space)
    second = make_agent("zucb", features="query")
    second.reset(space, np.random.default_rng(9))
    second.load_state_dict(first.state_dict())
    np.testing.assert_allclose(second.gp.predict(space.query_embeddings)[0], first.mean)
    assert second.propose(3) == first.propose(3)


def test_a_space_without_query_embeddings_has_its_queries_embedded_once():
    texts = ("running shoe", "sneaker", "volcano")
    concepts = embed_texts([f"{t} (thing): a thing." for t in texts])
    space = ConceptSpace(3, np.arange(3), texts, texts, concepts, np.zeros(3, dtype=np.int64))
    assert space.query_embeddings is None
    agent = make_agent("ucb", features="query")
    agent.reset(space, np.random.default_rng(0))
    expected = _unit(embed_texts(list(texts), bf16=False))
    np.testing.assert_allclose(agent.vectors, expected, atol=1e-6)
    vectors = agent.vectors
    agent.reset(space, np.random.default_rng(1))
    assert agent.vectors is vectors  # not embedded again for the same space
    plain = make_agent("ucb")
    plain.reset(space, np.random.default_rng(0))
    assert plain.vectors is space.embeddings


def test_bad_feature_settings_name_the_field():
    with pytest.raises(ValueError, match="features"):
        make_agent("caption_zucb", features="images")
    eye = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="query_embeddings"):
        ConceptSpace(
            2, np.arange(2), ("a", "b"), ("a", "b"), eye, np.zeros(2), query_embeddings=np.ones((2, 3))
        )
    with pytest.raises(ValueError, match="query_embeddings"):
        ConceptSpace(2, np.arange(2), ("a", "b"), ("a", "b"), eye, np.zeros(2), query_embeddings=eye[:1])


def test_concept_space_from_env_carries_the_query_embeddings(frozen_env):
    space = ConceptSpace.from_env(frozen_env)
    vocabulary = frozen_env.unwrapped.vocabulary
    assert space.query_embeddings is not None and space.query_embeddings.shape == (space.n, 384)
    np.testing.assert_array_equal(space.query_embeddings, vocabulary.query_embeddings(build=False))
    with pytest.raises(ValueError):
        space.query_embeddings[0, 0] = 1.0


def test_only_caption_zucb_defaults_to_query_features():
    assert make_agent("caption_zucb").features == "query"
    for name in ("softmax_gp", "ucb", "thompson", "epsilon_greedy", "zucb"):
        assert make_agent(name).features == "concept", name
