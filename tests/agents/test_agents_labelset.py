"""The label-set setting around an agent: reduced vocabulary, class-name share, updates, state, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from ie_env.agents import ConceptSpace, make_agent, run_episode
from ie_env.agents.baselines import concept_lemma
from ie_env.agents.labelset import LabelSetAgent, sub_space


def lemma(space: ConceptSpace, position: int) -> str:
    return concept_lemma(space.texts[position]).lower()


def test_actions_stay_in_the_reduced_vocabulary_and_half_are_class_names(frozen_env):
    space = ConceptSpace.from_env(frozen_env)
    agent = make_agent("softmax_gp", frozen_env, label_set={"fraction": 0.25, "class_query_share": 0.5})
    assert isinstance(agent, LabelSetAgent) and agent.name == "softmax_gp"
    records = run_episode(agent, frozen_env, agent_seed=0, env_seed=0)
    kept = set(agent.kept.tolist())
    assert 5 <= len(kept) < space.n  # 20 concepts: the top quarter plus the class names' senses
    assert {r.action for r in records} <= kept
    classes = {p for group in agent.groups for p in group}
    assert {lemma(space, p) for p in classes} == {"circle", "square", "triangle", "star"}
    for iteration in range(4):  # 2 of every 4 queries are class names (the inner agent may add more)
        actions = [r.action for r in records if r.iteration == iteration]
        assert sum(a in classes for a in actions) >= 2
    # every step lies in the reduced vocabulary, so the GP saw all 16 of them
    assert agent.inner.reward_count.sum() == len(records) == 16
    assert agent.inner.space.n == len(kept)


@pytest.mark.parametrize(("share", "only_classes"), [(1.0, True), (0.0, False)])
def test_the_class_query_share_bounds(frozen_env, share, only_classes):
    agent = make_agent("random", frozen_env, label_set={"fraction": 0.25, "class_query_share": share})
    records = run_episode(agent, frozen_env, agent_seed=3, env_seed=0)
    classes = {p for group in agent.groups for p in group}
    in_classes = [r.action in classes for r in records]
    assert all(in_classes) if only_classes else not all(in_classes)
    assert {r.action for r in records} <= set(agent.kept.tolist())


def test_a_class_name_without_a_sense_queries_its_nearest_kept_concept(frozen_env):
    space = ConceptSpace.from_env(frozen_env)
    agent = make_agent(
        "random", frozen_env, label_set={"class_names": ("circle", "crimson tone"), "fraction": 0.5}
    )
    agent.reset(space, np.random.default_rng(0))
    assert agent.label_set.class_concept_ids[1] == ()
    [nearest] = agent.groups[1]
    assert nearest in set(agent.kept.tolist())
    kept_vectors = space.embeddings[agent.kept]
    assert nearest == agent.kept[int(np.argmax(kept_vectors @ agent.class_vectors[1]))]
    assert {lemma(space, p) for p in agent.groups[0]} == {"circle"}


def test_state_round_trip_gives_the_same_next_queries(frozen_env):
    space = ConceptSpace.from_env(frozen_env)
    first = make_agent("ucb", frozen_env, label_set=True)
    run_episode(first, frozen_env, agent_seed=5, env_seed=0)
    state = first.state_dict()
    assert any(key.startswith("inner.") for key in state)
    second = make_agent("ucb", frozen_env, label_set=True)
    second.reset(space, np.random.default_rng(99))
    second.load_state_dict(state)
    assert second.propose(4) == first.propose(4)
    with pytest.raises(ValueError, match="no state keys"):
        second.load_state_dict({"bogus": 1})


def test_an_agent_that_asks_before_every_step_gets_its_share_step_by_step(frozen_env):
    agent = make_agent("search_zucb", frozen_env, label_set={"fraction": 0.25, "class_query_share": 0.5})
    assert agent.per_step  # the run loop asks for one action at a time
    records = run_episode(agent, frozen_env, agent_seed=1, env_seed=0)
    assert len(records) == 16 and {r.action for r in records} <= set(agent.kept.tolist())
    classes = {p for group in agent.groups for p in group}
    odd = [r.action in classes for r in records[1::2]]
    assert all(odd)  # steps 1, 3, 5, ...: class names; the others the inner agent's
    inner_steps = [r.action for r in records[0::2]]
    per_iteration = frozen_env.unwrapped.config.queries_per_iteration
    assert agent.inner.steps_per_iteration == per_iteration  # every step reached the inner agent
    assert len(set(inner_steps)) == len(inner_steps)  # its uniform search never repeats
    state = agent.state_dict()
    clone = make_agent("search_zucb", frozen_env, label_set={"fraction": 0.25, "class_query_share": 0.5})
    clone.reset(ConceptSpace.from_env(frozen_env), np.random.default_rng(9))
    clone.load_state_dict(state)
    assert clone.proposed == 16 and clone.propose(1)[0] in set(agent.kept.tolist())


def test_agents_that_read_the_env_and_bad_settings_are_refused(frozen_env):
    for name in ("labels", "oracle", "ppo"):
        with pytest.raises(ValueError, match="concept space"):
            make_agent(name, frozen_env, label_set=True)
    with pytest.raises(ValueError, match="needs the env"):
        make_agent("random", label_set=True)
    with pytest.raises(ValueError, match="class_query_share"):
        make_agent("random", frozen_env, label_set={"class_query_share": 1.5})
    with pytest.raises(ValueError, match="label_set must be"):
        make_agent("random", frozen_env, label_set="yes")
    assert not isinstance(make_agent("random", frozen_env, label_set=False), LabelSetAgent)


def test_sub_space_renumbers_clusters():
    vectors = np.eye(4, dtype=np.float32)
    space = ConceptSpace(
        4, np.arange(10, 14), tuple("abcd"), tuple("abcd"), vectors, np.asarray([0, 3, 3, 5])
    )
    sub = sub_space(space, np.asarray([1, 3]))
    assert sub.ids.tolist() == [11, 13] and sub.texts == ("b", "d")
    assert sub.cluster_labels.tolist() == [0, 1] and sub.n_clusters == 2
    assert sub.query_embeddings is None
    with_queries = ConceptSpace(4, np.arange(4), tuple("abcd"), tuple("abcd"), vectors, np.zeros(4),
                                query_embeddings=vectors[::-1])  # fmt: skip
    np.testing.assert_array_equal(
        sub_space(with_queries, np.asarray([1, 3])).query_embeddings, vectors[[2, 0]]
    )
