"""``search_zucb``: uniform search until an image stands out, then the GP climb, back on a false lead."""

from __future__ import annotations

import numpy as np
import pytest
from ie_env.agents import ConceptSpace, make_agent
from ie_env.agents.search import robust_z_max

N = 200


@pytest.fixture(scope="module")
def space() -> ConceptSpace:
    """Concepts 0-9 near one direction (a "target region"), the others spread out."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((N, 16)).astype(np.float32)
    vectors[:10] = vectors[0] + 0.05 * rng.standard_normal((10, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = tuple(f"c{i}" for i in range(N))
    return ConceptSpace(N, np.arange(N), names, names, vectors, np.zeros(N, dtype=np.int64))


def make(space: ConceptSpace, seed: int = 0, **settings):
    settings = {"captions": False, "features": "concept", "min_images": 10, "min_steps": 8, **settings}
    agent = make_agent("search_zucb", **settings)
    agent.reset(space, np.random.default_rng(seed))
    return agent


def step(agent, reward: float) -> int:
    """Ask for one action and answer it with five image rewards spread evenly around ``reward``."""
    (action,) = agent.propose(1)
    image_rewards = [reward + d for d in (-0.02, -0.01, 0.0, 0.01, 0.02)]  # robust z of the top: 1.35
    agent.update(action, reward, {"image_rewards": image_rewards, "images_kept": 5})
    return action


def test_robust_z_max():
    null = [1.0, 2.0, 3.0, 4.0, 100.0]  # median 3, MAD 1: the outlier does not widen the scale
    assert robust_z_max(null, [3.0 + 1.4826 * 2]) == pytest.approx(2.0)
    assert robust_z_max(null, []) == -np.inf


def test_searches_uniformly_without_fitting_while_nothing_stands_out(space):
    agent = make(space)
    assert agent.per_step  # the run loop asks before every step
    actions = [step(agent, 0.9) for _ in range(12)]
    agent.end_iteration()
    actions += [step(agent, 0.9) for _ in range(12)]
    assert len(set(actions)) == 24  # never a repeat
    assert not agent.climbing and not agent.gp.fitted  # no GP fit while searching
    firsts = {make(space, seed=s).propose(1)[0] for s in range(30)}
    assert len(firsts) >= 15  # from the agent's own generator, spread over the space


def test_a_standout_image_starts_the_climb_at_once(space):
    agent = make(space, seed=2, max_similarity=1.0)  # no spread: every pick may be a near-synonym
    for _ in range(6):  # 30 ordinary search images
        step(agent, 0.9)
    assert not agent.climbing
    assert not agent.queried[:10].any()  # the search has not been near the target region
    hit = 0
    rewards = [0.9, 0.9, 0.9, 0.9, 0.99]  # one image far above the search's: z ~ 40
    agent.update(hit, float(np.mean(rewards)), {"image_rewards": rewards, "images_kept": 5})
    assert agent.climbing and agent.gp.fitted and agent.switches == {"climbs": 1, "false_leads": 0}
    picks = [agent.propose(1)[0] for _ in range(3)]
    assert set(picks) <= set(range(10)) - {hit}  # the GP climbs next to the hit, mid-iteration
    assert len(set(picks)) == 3


def test_below_the_gate_it_keeps_searching(space):
    agent = make(space, seed=1, gate=100.0, step_gate=100.0)
    for _ in range(6):
        step(agent, 0.9)
    agent.update(3, 0.918, {"image_rewards": [0.9, 0.9, 0.9, 0.9, 0.99], "images_kept": 5})
    assert not agent.climbing


SCALE = 1.4826 * 0.01  # the robust scale of step()'s images: median 0.9, MAD 0.01


def rewards_at(*zs: float) -> list[float]:
    """Five image rewards: three at the search's median, the others at these robust z."""
    return [0.9] * (5 - len(zs)) + [0.9 + z * SCALE for z in zs]


def test_two_fairly_high_images_of_one_step_stand_out_where_one_does_not(space):
    settings = {"gate": 3.0, "pair_gate": 2.5, "pair_second": 2.0, "step_gate": None}
    for zs, climbs in (((2.8,), False), ((2.8, 2.3), True), ((2.8, 1.7), False), ((3.2,), True)):
        agent = make(space, seed=1, **settings)
        for _ in range(6):
            step(agent, 0.9)
        images = rewards_at(*zs)
        agent.update(3, float(np.mean(images)), {"image_rewards": images, "images_kept": 5})
        assert agent.climbing is climbs, zs
    single = make(space, seed=1, gate=3.0, pair_gate=None)  # no pair rule
    for _ in range(6):
        step(single, 0.9)
    single.update(3, 0.9, {"image_rewards": rewards_at(2.8, 2.3), "images_kept": 5})
    assert not single.climbing


def test_without_a_step_gate_only_images_end_the_search(space):
    agent = make(space, seed=1, step_gate=None, min_steps=2)
    for _ in range(8):
        step(agent, 0.9)
    ordinary = {"image_rewards": rewards_at(), "images_kept": 5}
    agent.update(3, 0.95, ordinary)  # the step's reward far above the others', its images not
    assert not agent.climbing
    gated = make(space, seed=1, step_gate=3.0, min_steps=2)
    for _ in range(8):
        step(gated, 0.9)
    gated.update(3, 0.95, ordinary)
    assert gated.climbing


def test_a_step_the_search_did_not_pick_may_end_it_but_never_joins_its_null(space):
    agent = make(space, seed=1)
    for _ in range(8):
        step(agent, 0.9)
    null = list(agent.search_images)
    agent.update(5, 0.9, {"image_rewards": rewards_at(), "images_kept": 5})  # e.g. a class-name query
    assert agent.search_images == null and not agent.climbing
    agent.update(5, 0.93, {"image_rewards": rewards_at(3.5, 3.0), "images_kept": 5})
    assert agent.climbing and agent.search_images == null


def test_a_climbing_iteration_where_nothing_stands_out_goes_back_to_search(space):
    agent = make(space, seed=2)
    for _ in range(8):
        step(agent, 0.9)
    step(agent, 0.99)  # a (false) lead
    assert agent.climbing
    for _ in range(5):
        step(agent, 0.9)  # the climb finds nothing above the search's level
    agent.end_iteration()
    assert not agent.climbing and agent.switches == {"climbs": 1, "false_leads": 1}
    confirmed = make(space, seed=2)
    for _ in range(8):
        step(confirmed, 0.9)
    step(confirmed, 0.99)
    for _ in range(5):
        step(confirmed, 0.99)  # a true lead: the climb's images stand out too
    confirmed.end_iteration()
    assert confirmed.climbing
    without = make(space, seed=2, confirm=False)
    for _ in range(8):
        step(without, 0.9)
    step(without, 0.99)
    step(without, 0.9)
    without.end_iteration()
    assert without.climbing


def test_state_round_trips_between_iterations(space):
    agent = make(space, seed=4)
    for _ in range(8):
        step(agent, 0.9)
    agent.update(agent.propose(1)[0], 0.0, {"image_rewards": [], "images_kept": 0})  # all duplicates
    step(agent, 0.99)
    step(agent, 0.98)
    agent.end_iteration()
    state = agent.state_dict()
    clone = make(space, seed=99)
    clone.load_state_dict(state)
    assert clone.climbing and clone.search_images == agent.search_images and clone.switches == agent.switches
    assert [clone.propose(1)[0] for _ in range(3)] == [agent.propose(1)[0] for _ in range(3)]
    step(agent, 0.99)  # mid-iteration (a Ctrl-C checkpoint): the iteration so far and the queue travel too
    middle = make(space, seed=98)
    middle.load_state_dict(agent.state_dict())
    assert (middle.iteration_images, middle.steps_this_iteration) == (agent.iteration_images, 1)
    assert [middle.propose(1)[0] for _ in range(3)] == [agent.propose(1)[0] for _ in range(3)]


def test_settings_are_validated():
    with pytest.raises(ValueError, match="SearchZUCBConfig.gate"):
        make_agent("search_zucb", gate=0)
    with pytest.raises(ValueError, match="SearchZUCBConfig.pair_gate"):
        make_agent("search_zucb", pair_gate=-1.0)
    with pytest.raises(ValueError, match="SearchZUCBConfig.min_images"):
        make_agent("search_zucb", min_images=0.5)
    agent = make_agent("search_zucb")
    assert (agent.captions, agent.features, agent.beta, agent.max_similarity) == (True, "query", 1.0, 0.8)
    settings = agent.hyperparameters()
    gates = [settings[key] for key in ("gate", "pair_gate", "pair_second", "step_gate")]
    assert gates == [3.0, 2.5, 2.0, None]
