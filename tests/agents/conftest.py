"""A small frozen env shared by the agent tests (generated corpus, 20-word vocabulary, own cache)."""

from __future__ import annotations

import gymnasium as gym
import pytest
from env_support import WORDS, env_home

import ie_env

SMALL = {
    "target": "gen-4",
    "vocabulary": WORDS,
    "n_clusters": 4,
    "budget": 16,
    "queries_per_iteration": 4,
    "results_per_query": 5,
    "progress": False,
    "learn_overrides": {"warmup_steps": 10, "batch_size": 32},
}


@pytest.fixture(scope="session")
def agent_env_home(tmp_path_factory):
    with env_home(tmp_path_factory.mktemp("ie_env_home_agents")):
        yield


@pytest.fixture(scope="session")
def frozen_env(agent_env_home):
    env = gym.make(ie_env.FROZEN_ENV_ID, **SMALL)
    yield env
    env.close()
