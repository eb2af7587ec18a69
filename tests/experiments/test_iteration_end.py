"""The env says when an iteration ends: ``info["iteration_end"]`` on exactly the closing step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import ie_env
from tests.experiments.conftest import WORDS

SMALL = {
    "target": "gen-4",
    "vocabulary": WORDS,
    "n_clusters": 3,
    "budget": 6,
    "queries_per_iteration": 3,
    "results_per_query": 8,
    "train_steps_per_iteration": 2,
    "progress": False,
    "learn_overrides": {"warmup_steps": 5, "batch_size": 32},
}


def episode(env, actions):
    env.reset(seed=0)
    return [env.step(a) for a in actions]


def check_summaries(steps, per_iteration):
    for i, (_, _, _, _, info) in enumerate(steps, start=1):
        assert ("iteration_end" in info) == (i % per_iteration == 0)
    for end in range(per_iteration, len(steps) + 1, per_iteration):
        chunk = [s[4] for s in steps[end - per_iteration : end]]
        summary = chunk[-1]["iteration_end"]
        kept = [c["images_kept"] for c in chunk]
        assert summary["iteration"] == end // per_iteration and summary["steps"] == end
        assert summary["queries"] == per_iteration and summary["images_kept"] == sum(kept)
        assert summary["mean_reward"] == pytest.approx(
            np.mean([s[1] for s in steps[end - per_iteration : end]])
        )
        known = [
            (c["relevant_fraction"], c["images_kept"]) for c in chunk if c["relevant_fraction"] is not None
        ]
        expected = sum(f * k for f, k in known) / sum(k for _, k in known) if known else None
        assert summary["relevant_fraction"] == pytest.approx(expected)
    return [s[4]["iteration_end"] for s in steps if "iteration_end" in s[4]]


def test_frozen_env_closes_every_iteration_with_its_summary(home):
    env = gym.make(ie_env.FROZEN_ENV_ID, **SMALL)
    try:
        summaries = check_summaries(episode(env, [0, 1, 2, 3, 4, 5]), 3)
        assert all("train" not in s and "eval" not in s for s in summaries)  # nothing trains
        again = check_summaries(episode(env, [0, 1, 2, 3, 4, 5]), 3)
        assert again == summaries  # reset starts the totals afresh
    finally:
        env.close()


@pytest.mark.parametrize("per_step", [False, True])
def test_full_env_summary_carries_train_and_eval(home, tmp_path, per_step):
    env = gym.make(ie_env.ENV_ID, **SMALL, run_dir=str(tmp_path / "r"), per_step_training=per_step)
    try:
        summaries = check_summaries(episode(env, [0, 1, 2, 3, 4, 5]), 3)
        for summary in summaries:
            assert 0.0 < summary["eval"]["knn_accuracy"] <= 1.0
            assert "loss" in summary["train"]
    finally:
        env.close()
