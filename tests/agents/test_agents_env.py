import numpy as np
import pytest
from ie_env.agents import (
    ConceptSpace,
    agent_names,
    make_agent,
    relevant_fraction,
    relevant_images,
    run_episode,
)
from ie_env.agents.baselines import concept_lemma, label_positions
from ie_env.agents.oracle import CeilingAgent

LOOP_AGENTS = [n for n in agent_names() if n != "ppo"]


def test_concept_space_from_env(frozen_env):
    space = ConceptSpace.from_env(frozen_env)
    base = frozen_env.unwrapped
    assert space.n == base.action_space.n == len(space.texts) == len(space.query_texts)
    assert space.embeddings.dtype == np.float32 and space.embeddings.shape == (space.n, 384)
    np.testing.assert_allclose(np.linalg.norm(space.embeddings, axis=1), 1.0, atol=1e-3)
    assert space.n_clusters == 4
    with pytest.raises(ValueError):
        space.embeddings[0, 0] = 1.0
    with pytest.raises(ValueError, match="embeddings"):
        ConceptSpace(2, np.arange(2), ("a", "b"), ("a", "b"), np.ones((2, 3)), np.zeros(2))


@pytest.mark.parametrize("name", LOOP_AGENTS)
def test_every_agent_runs_an_episode(frozen_env, name):
    agent = make_agent(name, frozen_env)
    records = run_episode(agent, frozen_env, agent_seed=1, env_seed=0)
    assert len(records) == 16
    assert [r.iteration for r in records] == [i // 4 for i in range(16)]
    n = frozen_env.unwrapped.action_space.n
    assert all(0 <= r.action < n for r in records)
    assert 0.0 <= relevant_fraction(records) <= 1.0
    kept = sum(r.images_kept for r in records if r.relevant_fraction is not None)
    assert relevant_images(records) == pytest.approx(relevant_fraction(records) * kept)


def test_relevant_images_counts_what_the_fraction_divides():
    from ie_env.agents.loop import StepRecord

    rows = [StepRecord(0, 0, 0, "a", 0.5, "ok", 4, 0.5), StepRecord(1, 0, 1, "b", 0.0, "no_images", 0, None),
            StepRecord(2, 0, 2, "c", 0.9, "ok", 1, 1.0)]  # fmt: skip
    assert relevant_images(rows) == 3.0 and relevant_fraction(rows) == pytest.approx(3 / 5)
    assert relevant_images([]) == 0.0 and relevant_fraction([]) == 0.0


def test_labels_map_class_names_to_lemma_concepts(frozen_env):
    space = ConceptSpace.from_env(frozen_env)
    groups = label_positions(space, ["circle", "Square", "unicorn"], name_embeddings=space.embeddings[:3])
    assert groups[0] and all(concept_lemma(space.texts[p]).lower() == "circle" for p in groups[0])
    assert all(concept_lemma(space.texts[p]).lower() == "square" for p in groups[1])
    assert groups[2] == [2]  # no lemma "unicorn": the nearest text embedding (here row 2 itself)
    agent = make_agent("labels", frozen_env)
    records = run_episode(agent, frozen_env, agent_seed=0, env_seed=0)
    lemmas = {concept_lemma(space.texts[r.action]).lower() for r in records}
    assert lemmas <= {"circle", "square", "triangle", "star"}
    half = run_episode(make_agent("labels_half", frozen_env), frozen_env, agent_seed=0, env_seed=0)
    assert len(half) == 16


def test_oracle_beats_random_and_is_flagged(frozen_env):
    from ie_env.agents import report_name

    oracle = make_agent("oracle", frozen_env)
    assert oracle.privileged and report_name("oracle") == "oracle (privileged)"
    fractions = {
        name: np.mean(
            [
                relevant_fraction(run_episode(make_agent(name, frozen_env), frozen_env, agent_seed=s))
                for s in range(3)
            ]
        )
        for name in ("random", "oracle")
    }
    assert fractions["oracle"] > fractions["random"]


def test_ceiling_agent_is_asked_per_step(frozen_env):
    calls = []

    def scores():
        calls.append(1)
        return np.arange(frozen_env.unwrapped.action_space.n, dtype=float)

    records = run_episode(CeilingAgent(scores), frozen_env, agent_seed=0, env_seed=0)
    assert len(calls) == 16 and records[0].action == frozen_env.unwrapped.action_space.n - 1


@pytest.mark.parametrize(
    "name", ["softmax_gp", "ucb", "thompson", "epsilon_greedy", "zucb", "search_zucb", "oracle", "random"]
)
def test_state_dict_round_trip(frozen_env, name):
    space = ConceptSpace.from_env(frozen_env)
    agent = make_agent(name, frozen_env)
    run_episode(agent, frozen_env, agent_seed=3, env_seed=0, max_steps=8)
    state = agent.state_dict()
    clone = make_agent(name, frozen_env)
    clone.reset(space, np.random.default_rng(99))
    clone.load_state_dict(state)
    assert agent.propose(4) == clone.propose(4)


@pytest.mark.parametrize("name", ["random", "softmax_gp", "thompson"])
def test_agent_seed_is_independent_of_env_seed(frozen_env, name):
    a = [r.action for r in run_episode(make_agent(name, frozen_env), frozen_env, agent_seed=5, env_seed=0)]
    b = [r.action for r in run_episode(make_agent(name, frozen_env), frozen_env, agent_seed=5, env_seed=123)]
    c = [r.action for r in run_episode(make_agent(name, frozen_env), frozen_env, agent_seed=6, env_seed=0)]
    assert a == b  # the frozen env's rewards do not depend on its seed; the agent's draws are its own
    assert a != c


def test_softmax_gp_first_iteration_is_uniform_then_learns(frozen_env):
    agent = make_agent("softmax_gp", frozen_env)
    space = ConceptSpace.from_env(frozen_env)
    agent.reset(space, np.random.default_rng(0))
    np.testing.assert_allclose(agent.probabilities(), 1.0 / space.n)
    run_episode(agent, frozen_env, agent_seed=0, env_seed=0, max_steps=4)
    p = agent.probabilities()
    assert p.sum() == pytest.approx(1.0) and p.max() > 2.0 / space.n


def test_ppo_learns_saves_and_loads(frozen_env, tmp_path):
    pytest.importorskip("stable_baselines3")
    from ie_env.agents.ppo import PPOAgent

    agent = make_agent("ppo", frozen_env, n_steps=16, batch_size=8, n_epochs=1)
    agent.learn(32)
    assert len(agent.history) == 32
    path = agent.save(tmp_path / "ppo")
    loaded = PPOAgent.load(path, frozen_env, agent.config)
    obs = np.zeros(frozen_env.observation_space.shape, dtype=np.float32)
    np.testing.assert_allclose(loaded.action_probabilities(obs), agent.action_probabilities(obs), atol=1e-6)
    records = loaded.run_episode(env_seed=0)
    assert len(records) == 16
    emb = make_agent("ppo", frozen_env, actions="embedding", n_steps=8, batch_size=8, n_epochs=1)
    emb.learn(8)
