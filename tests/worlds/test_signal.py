"""The env's signal: AUC helpers, and whether the reward points at the target."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import ie_env
from ie_env.worlds.signal import auc, concept_reward_auc, fresh_concept_scores


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=200).round(1)  # many ties
    positive = rng.random(200) < 0.3
    pos, neg = scores[positive], scores[~positive]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg)
    )
    assert auc(scores, positive) == pytest.approx(pairwise)
    assert auc([0.1, 0.9], [False, True]) == 1.0 and auc([0.9, 0.1], [False, True]) == 0.0
    with pytest.raises(ValueError, match="positives and negatives"):
        auc([1.0, 2.0], [True, True])


def test_fresh_concept_scores_average_the_top_rewards():
    results = np.array([[0, 1, 2, -1], [3, -1, -1, -1], [-1, -1, -1, -1]])
    row_rewards = np.array([0.1, 0.5, 0.3, 0.7], dtype=np.float32)
    scores = fresh_concept_scores(results, row_rewards, top=2)
    np.testing.assert_allclose(scores, [0.4, 0.7, 0.0], atol=1e-6)


def test_concept_reward_separates_relevant_concepts_on_the_generated_web(tmp_path, monkeypatch):
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path / "home"))
    words = (
        "words:circle,square,triangle,star,cross,ring,stripe,dot,box,pyramid,wedge,disk,"
        "red,green,blue,apple,dog,owl,car,bicycle,ball,tree,house,fish,cloud,sun,moon,flower"
    )
    env = gym.make(
        ie_env.FROZEN_ENV_ID,
        target="gen-4",
        vocabulary=words,
        n_clusters=4,
        results_per_query=12,
        learn_overrides={"warmup_steps": 30, "batch_size": 32},
        progress=False,
    )
    world = env.unwrapped._world
    signal = concept_reward_auc(world.results, world.row_rewards, world.relevant, world.concept_top)
    assert signal["positives"] >= 3 and signal["negatives"] >= 3
    assert signal["auc"] > 0.6, signal
    relevance = env.unwrapped.privileged_concept_relevance()
    assert relevance.shape == (env.action_space.n,) and relevance.max() > 0.5 and relevance.min() < 0.5
    env.close()


@pytest.mark.slow
@pytest.mark.debian
def test_concept_reward_auc_on_ocp10_with_the_full_vocabulary():
    """The core signal: on clip art, concepts with mostly relevant results must score higher.

    Uses the full vocabulary's embeddings and the offline web from the cache dir (``make demo``
    builds both; on a fresh machine the first run builds them, about half an hour).
    """
    env = gym.make(ie_env.FROZEN_ENV_ID, target="ocp-10", vocabulary="full", progress=False)
    world = env.unwrapped._world
    signal = concept_reward_auc(world.results, world.row_rewards, world.relevant, world.concept_top)
    print("ocp-10 concept reward signal:", signal)
    assert signal["auc"] >= 0.6, signal
    env.close()
