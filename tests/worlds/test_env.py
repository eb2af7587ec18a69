"""The Gymnasium environment: API conformance, the full loop over loopback HTTP, wrappers, bad input.

Everything runs on the generated corpus (``gen-4`` target) and a small word-list vocabulary, so no
Debian package is needed; the sentence model is (for the vocabulary and caption embeddings).
"""

from __future__ import annotations

import socket

import gymnasium as gym
import numpy as np
import pytest
import torch
from env_support import WORDS, env_home

import ie_env
from ie_env.wrappers import BatchActions, ClusterActions, EmbeddingActions

SMALL = {
    "target": "gen-4",
    "vocabulary": WORDS,
    "n_clusters": 4,
    "budget": 8,
    "queries_per_iteration": 4,
    "results_per_query": 12,
    "train_steps_per_iteration": 3,
    "learn_overrides": {"warmup_steps": 10, "batch_size": 32},
}


@pytest.fixture(scope="module", autouse=True)
def env_cache(tmp_path_factory):
    """One cache dir for the module (and the subprocesses of async vector envs)."""
    with env_home(tmp_path_factory.mktemp("ie_env_home")):
        yield


def make_frozen(**overrides):
    return gym.make(ie_env.FROZEN_ENV_ID, **{**SMALL, **overrides})


def make_full(tmp_path, **overrides):
    return gym.make(ie_env.ENV_ID, **{**SMALL, "run_dir": str(tmp_path / "run"), **overrides})


def test_ids_are_registered_with_the_right_determinism():
    assert gym.spec(ie_env.ENV_ID).nondeterministic is True
    assert gym.spec(ie_env.FROZEN_ENV_ID).nondeterministic is False


def test_frozen_env_passes_gymnasium_and_sb3_checkers():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_frozen()
    try:
        check_env(env.unwrapped)  # includes the seed- and step-determinism checks
        sb3_check_env(env.unwrapped, warn=True)
    finally:
        env.close()


def test_full_env_passes_gymnasium_and_sb3_checkers(tmp_path):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_full(tmp_path)
    try:
        # The close check would make a second env on the same run_dir, which is refused (a run dir
        # holds one run); closing twice is tested below instead.
        check_env(env.unwrapped, skip_render_check=True, skip_close_check=True)
        sb3_check_env(env.unwrapped, warn=True)
    finally:
        env.close()
    env.close()  # closing a closed env is allowed


def test_frozen_episode_rewards_info_and_truncation():
    env = make_frozen()
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and not obs.any()
    base = env.unwrapped
    circle_position = base.vocabulary.query_texts.index("circle")  # the sense that keeps the bare lemma
    circle = base.vocabulary[circle_position]
    obs, reward, terminated, truncated, info = env.step(circle_position)
    assert info["query"] == "circle" and info["concept_id"] == circle.id and circle.lemma == "circle"
    assert len(info["image_captions"]) == len(info["image_rewards"]) == info["images_kept"]
    assert info["status"] in ("ok", "few_images") and reward > 0
    assert reward == pytest.approx(np.mean(sorted(info["image_rewards"])[-10:]), abs=1e-6)
    assert info["relevant_fraction"] > 0.5  # circles are a gen-4 class
    assert obs[-1] == pytest.approx(reward)
    # The same concept again: everything is already "downloaded", so nothing new and reward 0.
    _, again, _, _, info = env.step(circle_position)
    assert again == 0.0 and info["status"] == "no_images" and info["download_counts"].get("duplicate", 0) > 0
    steps = 2
    while not truncated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        assert not terminated
    assert steps == SMALL["budget"]
    env.close()


def test_frozen_reset_with_seed_is_reproducible():
    env = make_frozen()
    runs = []
    for _ in range(2):
        env.reset(seed=3)
        env.action_space.seed(3)
        runs.append([env.step(env.action_space.sample())[1] for _ in range(6)])
    assert runs[0] == runs[1]
    env.close()


def test_full_env_reset_seed_drives_its_randomness(tmp_path):
    """The same seed replays an episode (training included); another seed trains differently."""
    env = make_full(tmp_path, budget=4, queries_per_iteration=4, eval_every=0)
    base = env.unwrapped
    actions = [base.vocabulary.query_texts.index(w) for w in ("circle", "square", "star", "box")]

    def episode(seed):
        env.reset(seed=seed)
        steps = [env.step(a) for a in actions]
        return [round(s[1], 6) for s in steps], steps[-1][4]["train"]["loss"]

    first, second, other = episode(3), episode(3), episode(4)
    assert first == second
    assert first[1] != other[1]  # the learner is reseeded from the env's RNG at reset
    env.close()


def test_make_accepts_a_config_object(tmp_path):
    from ie_env.config import EnvConfig

    config = EnvConfig(**SMALL)
    env = gym.make(ie_env.FROZEN_ENV_ID, config=config)
    assert env.unwrapped.config.frozen is True  # the env id decides the variant
    env.reset(seed=0)
    env.step(0)
    env.close()
    env = gym.make(ie_env.ENV_ID, config=EnvConfig(**{**SMALL, "run_dir": str(tmp_path / "r")}))
    assert env.unwrapped.config.frozen is False
    env.close()
    with pytest.raises(TypeError, match="not both.*budget"):
        gym.make(ie_env.FROZEN_ENV_ID, config=config, budget=3)


def test_a_non_empty_run_dir_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "episode-000").mkdir()
    with pytest.raises(ValueError, match="run_dir.*not empty"):
        make_full(tmp_path)
    env = make_full(tmp_path, run_dir=str(tmp_path / "empty"))  # new folders are fine
    env.close()


@pytest.mark.parametrize(
    "target", ["generated/circle,generated/square", ["generated/circle", "generated/square"]]
)
def test_category_list_targets_work_through_the_config(target):
    env = make_frozen(target=target, corpus="generated")
    assert env.unwrapped.config.target == ("generated/circle", "generated/square")
    _, info = env.reset(seed=0)
    assert info["target"] == "generated/circle,generated/square"
    _, reward, _, _, info = env.step(env.unwrapped.vocabulary.query_texts.index("circle"))
    assert reward > 0 and info["relevant_fraction"] > 0.5
    env.close()


def test_unknown_category_in_a_target_list_is_named():
    with pytest.raises(ValueError, match="generated/nope"):
        make_frozen(target="generated/circle,generated/nope", corpus="generated")
    with pytest.raises(ValueError, match="EnvConfig.target"):
        make_frozen(target="generated/circle,,")


def test_bad_actions_raise_clear_errors():
    env = make_frozen()
    env.reset(seed=0)
    n = env.action_space.n
    with pytest.raises(ValueError, match=f"out of range.*{n} concepts"):
        env.unwrapped.step(n)
    with pytest.raises(ValueError, match="out of range"):
        env.unwrapped.step(-1)
    with pytest.raises(ValueError, match="single integer"):
        env.unwrapped.step(1.5)
    env.close()


def test_unknown_target_names_the_presets():
    with pytest.raises(ValueError, match="ocp-10"):
        make_frozen(target="no-such-target")
    with pytest.raises(ValueError, match="gen-4"):  # refused before the (huge) full vocabulary is embedded
        make_frozen(target="no-such-target", vocabulary="full")


def test_unknown_argument_is_named():
    with pytest.raises(TypeError, match="colour"):
        make_frozen(colour="red")


def test_dead_engine_gives_zero_reward_and_an_error_status(tmp_path):
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = make_full(tmp_path, web_url=f"http://127.0.0.1:{port}")
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(0)
    assert reward == 0.0 and info["status"] == "search_error"
    assert info["error"] and not terminated and not truncated
    env.close()


def test_full_env_two_iterations_over_loopback_http(tmp_path):
    env = make_full(tmp_path)
    env.reset(seed=0)
    base = env.unwrapped
    learner = base._world.learner
    before = {k: v.clone() for k, v in learner.model.backbone.state_dict().items()}
    assert base._world.web_url.startswith("http://127.0.0.1:")
    infos = []
    for concept in ["circle", "square", "star", "triangle", "box", "ring", "red", "wedge"]:
        _, reward, _, _, info = env.step(base.vocabulary.query_texts.index(concept))
        infos.append(info)
        assert info["seconds"]["search"] > 0 and "download" in info["seconds"]
    kept = sum(i["images_kept"] for i in infos)
    assert kept > 20
    assert base._world.store.count() == kept  # every kept image is in the SQLite store, with its file
    assert all(base._world.store.path(r).exists() for r in base._world.store.records())
    ends = [i for i in infos if "train" in i]
    assert [i["iteration"] for i in ends] == [1, 2]
    for info in ends:
        assert np.isfinite(info["train"]["loss"]) and info["train"]["steps"] == 3
        assert 0.0 <= info["eval"]["knn_accuracy"] <= 1.0
    first, second = (i["train"]["trained_on"] for i in ends)  # what each phase drew from, per source
    assert sum(first.values()) == sum(second.values()) == 3 * 32
    assert first["new"] > 0 and first["target"] > 0 and first["buffer"] == 0 < second["buffer"]
    after = learner.model.backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    assert learner.buffer_size > 0
    # reset restores the initial encoder and an empty buffer
    env.reset(seed=1)
    restored = learner.model.backbone.state_dict()
    assert all(torch.equal(before[k], restored[k]) for k in before)
    assert learner.buffer_size == 0
    env.close()


def test_target_only_baseline_trains_on_the_target_alone(tmp_path):
    env = make_full(tmp_path, target_only=True)
    env.reset(seed=0)
    base = env.unwrapped
    learner = base._world.learner
    before = {k: v.clone() for k, v in learner.model.backbone.state_dict().items()}
    steps = [env.step(i) for i in range(4)]
    infos = [info for *_, info in steps]
    assert [i["status"] for i in infos] == ["target_only"] * 4
    assert [reward for _, reward, *_ in steps] == [0.0] * 4
    assert all(i["images_kept"] == 0 for i in infos) and base._world.store.count() == 0
    train = infos[-1]["train"]
    assert train["steps"] == 3 and train["trained_on"] == {"new": 0, "target": 96, "buffer": 0}
    after = learner.model.backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    env.close()
    with pytest.raises(ValueError, match="target_only"):
        make_frozen(target_only=True)


def test_cluster_and_embedding_wrappers_pick_unqueried_concepts():
    env = ClusterActions(make_frozen())
    env.reset(seed=0)
    assert env.action_space.n == 4
    queried = []
    for _ in range(6):
        _, _, _, _, info = env.step(1)
        queried.append(info["action"])
    labels = env.unwrapped.cluster_labels
    in_cluster = int((labels == 1).sum())
    assert len(set(queried)) == len(queried) or in_cluster < len(queried)
    assert all(labels[a] == 1 for a in queried[:in_cluster])
    env.close()

    env = EmbeddingActions(make_frozen())
    env.reset(seed=0)
    base = env.unwrapped
    owl = base.vocabulary.position_of(base.vocabulary.find("owl")[0].id)
    _, _, _, _, info = env.step(base.concept_embeddings[owl])
    assert info["action"] == owl
    _, _, _, _, info = env.step(base.concept_embeddings[owl])  # owl is taken: the next nearest
    assert info["action"] != owl
    with pytest.raises(ValueError, match="zero vector"):
        env.step(np.zeros(384, dtype=np.float32))
    env.close()


def test_batch_wrapper_steps_several_concepts():
    env = BatchActions(make_frozen(), batch_size=3)
    env.reset(seed=0)
    obs, reward, _, _, info = env.step(np.array([0, 1, 2]))
    assert [i["action"] for i in info["batch"]] == [0, 1, 2]
    assert len(info["batch_rewards"]) == 3
    assert reward == pytest.approx(np.mean(info["batch_rewards"]))
    assert env.unwrapped.queried[:3].all()
    with pytest.raises(ValueError, match="3 concepts"):
        env.step(np.array([0, 1]))
    env.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs_with_cluster_wrapper(mode):
    # "spawn": forking a process that already runs threads (torch, event loops, earlier tests'
    # servers) can deadlock the child, as it did in a full-suite run.
    vector_kwargs = {"context": "spawn"} if mode == "async" else {}
    envs = gym.make_vec(
        ie_env.FROZEN_ENV_ID,
        num_envs=2,
        vectorization_mode=mode,
        vector_kwargs=vector_kwargs,
        wrappers=[ClusterActions],
        **SMALL,
    )
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, 10)
        for _ in range(3):
            obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
            assert rewards.shape == (2,) and np.isfinite(rewards).all()
    finally:
        envs.close()


def test_per_step_training_mode_trains_inside_every_step(tmp_path):
    env = make_full(tmp_path, per_step_training=True, train_steps_per_query=1, budget=4)
    env.reset(seed=0)
    base = env.unwrapped
    for concept in ["circle", "square", "star", "triangle"]:
        _, _, _, _, info = env.step(base.vocabulary.query_texts.index(concept))
        assert info["train"]["steps"] == 1 and np.isfinite(info["train"]["loss"])
    assert info["iteration"] == 1 and "eval" in info  # the iteration still closes and evaluates
    env.close()


def test_budget_sets_truncation_and_normalises_the_observation():
    env = make_frozen(budget=5)
    assert not isinstance(env, gym.wrappers.TimeLimit)  # the env truncates by itself
    env.reset(seed=0)
    for step in range(1, 6):
        obs, _, _, truncated, _ = env.step(step)
        assert obs[-2] == pytest.approx(step / 5)  # progress is normalised by the same budget
        assert truncated == (step == 5)
    assert env.unwrapped.render() is None
    env.close()


def test_frozen_and_full_env_agree_with_the_same_encoder(tmp_path):
    """One image pipeline: same hits, same dedup outcome and the same rewards in both envs."""
    n = len(make_frozen().unwrapped.vocabulary)
    steps = list(range(n)) + list(range(6))  # repeats: the second time everything is a duplicate
    config = {
        **SMALL,
        "budget": len(steps),
        "queries_per_iteration": len(steps),
    }  # no training before the end
    frozen = make_frozen(**config)
    full = make_full(tmp_path, **config)
    frozen.reset(seed=0)
    full.reset(seed=0)
    compared = 0
    for position in steps:
        _, r_frozen, _, _, a = frozen.step(position)
        _, r_full, _, _, b = full.step(position)
        assert a["query"] == b["query"] == frozen.unwrapped.vocabulary.query_text(position)
        assert a["hit_ids"] == b["hit_ids"] and len(a["hit_ids"]) > 0
        assert a["image_statuses"] == b["image_statuses"]
        assert a["image_captions"] == b["image_captions"]
        np.testing.assert_allclose(a["image_rewards"], b["image_rewards"], atol=1e-3)
        assert r_frozen == pytest.approx(r_full, abs=1e-3)
        compared += len(a["image_rewards"])
    assert compared > 50
    frozen.close()
    full.close()


def test_descriptor_queries_agree_between_frozen_and_full_env(tmp_path):
    """With descriptors the query is ``descriptor + " " + concept query``, ranked the same in both envs."""
    config = {**SMALL, "budget": 6, "queries_per_iteration": 6, "descriptors": "wordnet"}
    frozen = make_frozen(**config)
    full = make_full(tmp_path, **config)
    frozen.reset(seed=5)
    full.reset(seed=5)
    described = 0
    for position in range(6):
        _, r_frozen, _, _, a = frozen.step(position)
        _, r_full, _, _, b = full.step(position)
        assert a["concept_query"] == frozen.unwrapped.vocabulary.query_text(position)
        assert a["descriptor"] == b["descriptor"] and a["query"] == b["query"]
        if a["descriptor"]:
            described += 1
            assert a["query"] == f"{a['descriptor']} {a['concept_query']}"
        assert a["hit_ids"] == b["hit_ids"]
        assert r_frozen == pytest.approx(r_full, abs=1e-3)
    assert described >= 4
    frozen.close()
    full.close()
