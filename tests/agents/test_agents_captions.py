"""GP agents that learn from the captions of returned images (``captions=True``, ``caption_zucb``)."""

from __future__ import annotations

import numpy as np
import pytest
from ie_env.agents import ConceptSpace, make_agent

from ie_env.concepts.textembed import embed_texts

TEXTS = (
    "sneaker (shoe): a canvas shoe with a pliable rubber sole.",
    "sandal (shoe): a shoe consisting of a sole fastened by straps.",
    "boot (footwear): footwear that covers the whole foot and the lower leg.",
    "apple (edible fruit): fruit with red or yellow or green skin.",
    "piano (keyboard instrument): a keyboard instrument played by depressing keys.",
    "volcano (mountain): a mountain formed by volcanic material.",
)


@pytest.fixture(scope="module")
def space() -> ConceptSpace:
    vectors = embed_texts(list(TEXTS))
    lemmas = tuple(t.split(" (")[0] for t in TEXTS)
    return ConceptSpace(len(TEXTS), np.arange(len(TEXTS)), TEXTS, lemmas, vectors, np.arange(len(TEXTS)) % 2)


def feed(agent, space: ConceptSpace) -> None:
    agent.reset(space, np.random.default_rng(0))
    # an apple query whose images (by their captions) were mostly shoes, and the shoes scored high
    info = {"image_captions": ["Running shoe", "Sneaker", "Red apple"], "image_rewards": [0.9, 0.9, 0.2],
            "images_kept": 3}  # fmt: skip
    agent.update(3, 0.5, info)
    agent.update(4, 0.2, {"image_captions": ["Grand piano"], "image_rewards": [0.2], "images_kept": 1})
    agent.end_iteration()


def test_captions_of_high_reward_images_lift_the_concepts_they_describe(space):
    with_captions = make_agent("caption_zucb")
    feed(with_captions, space)
    assert with_captions.caption_count == {"Running shoe": 1, "Sneaker": 1, "Red apple": 1, "Grand piano": 1}
    mean = with_captions.mean
    assert mean[0] > mean[5] and mean[0] > mean[4]  # sneaker above volcano and the low piano
    assert with_captions.propose(1) == [0]  # the sneaker concept, never queried itself
    x, y, counts = with_captions.observations()
    assert len(y) == 2 + 4 and counts.tolist() == [1, 1, 1, 1, 1, 1]
    plain = make_agent("zucb")
    feed(plain, space)
    assert len(plain.observations()[1]) == 2  # captions ignored without the option
    assert plain.mean[0] < with_captions.mean[0]


def test_caption_state_round_trips(space):
    first = make_agent("caption_zucb")
    feed(first, space)
    state = first.state_dict()
    assert state["caption_texts"].tolist() == sorted(first.caption_sum)
    second = make_agent("caption_zucb")
    second.reset(space, np.random.default_rng(5))
    second.load_state_dict(state)
    assert second.caption_sum == first.caption_sum
    np.testing.assert_allclose(second.gp.predict(second.vectors)[0], first.mean)
    assert second.propose(2) == first.propose(2)


def test_every_gp_agent_takes_the_option():
    assert make_agent("softmax_gp", captions=True).captions
    with pytest.raises(ValueError, match="captions"):
        make_agent("ucb", captions="yes")


def _synonym_space(n: int) -> ConceptSpace:
    """Concepts 0 .. n/2 - 1: near-synonyms (cosine ~0.99); n/2 .. n - 1: unrelated directions."""
    half, eye = n // 2, np.eye(n, dtype=np.float32)
    vectors = np.concatenate([eye[0] + 0.1 * eye[1 : half + 1], eye[half:n] + 0.1 * eye[0]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = tuple(f"c{i}" for i in range(n))
    return ConceptSpace(n, np.arange(n), names, names, vectors, np.zeros(n, dtype=np.int64))


def _zucb_picks(space: ConceptSpace, good: int, bad: int, k: int, seed: int = 0, **settings) -> list[int]:
    """zucb's next ``k`` picks after ``good`` scored high and ``bad`` low."""
    agent = make_agent("zucb", **settings)
    agent.reset(space, np.random.default_rng(seed))
    agent.update(good, 1.0, {"images_kept": 5})
    agent.update(bad, 0.0, {"images_kept": 5})
    agent.end_iteration()
    return agent.propose(k)


def test_max_similarity_spreads_an_iterations_picks():
    space = _synonym_space(10)  # a synonym (4) scores high, an unrelated concept (9) low

    def picks(**settings):
        return _zucb_picks(space, 4, 9, 3, **settings)

    assert set(picks()) <= {0, 1, 2, 3}  # all three next to the good one
    spread = picks(max_similarity=0.9)
    assert len(set(spread) & {0, 1, 2, 3}) == 1 and not set(spread) & {4, 9}
    crowded = picks(max_similarity=-1.0)  # nothing is far enough: filled up in score order
    assert crowded == picks()


def test_explore_draws_a_share_of_the_picks_uniformly_from_unqueried_concepts():
    space = _synonym_space(12)  # after concept 5 scored high, the near-synonyms 0-4 score best

    def picks(seed=0, **settings):
        return _zucb_picks(space, 5, 11, 4, seed, **settings)

    assert set(picks()) <= {0, 1, 2, 3, 4}
    draws = [picks(seed=seed, explore=0.5) for seed in range(20)]
    for drawn in draws:
        assert len(set(drawn)) == 4 and not set(drawn) & {5, 11}  # nothing queried, no repeats
        assert len(set(drawn[:2]) & {0, 1, 2, 3, 4}) == 2  # the best-scoring half comes first
    assert len({i for drawn in draws for i in drawn[2:]} - {0, 1, 2, 3, 4}) >= 4  # the rest wanders
    assert picks(seed=3, explore=0.5) == picks(seed=3, explore=0.5)  # from the agent's own generator
    with pytest.raises(ValueError, match="explore"):
        make_agent("zucb", explore=1.5)
