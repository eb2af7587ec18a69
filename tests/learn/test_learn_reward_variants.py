"""The background-contrast reward variants: formulas, the hub case they exist for, target clusters."""

from __future__ import annotations

import numpy as np
import pytest

from ie_env.learn.config import BACKGROUND_REWARDS, REWARDS, LearnConfig
from ie_env.learn.reward import (
    BACKGROUND_OFFSET,
    cluster_similarity,
    image_rewards,
    knn_similarity,
    target_clusters,
)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _top_mean(sims: np.ndarray, k: int) -> np.ndarray:
    return np.sort(sims, axis=1)[:, -k:].mean(axis=1)


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(_unit(rng.standard_normal((n, 6)) + 0.3) for n in (12, 40, 50))


def test_contrast_and_csls_match_brute_force() -> None:
    cands, targets, bg = _data()
    k = 5
    density = _top_mean(cands @ bg.T, k)
    contrast = image_rewards(cands, targets, k=k, variant="knn_contrast", background=bg)
    np.testing.assert_allclose(contrast, _top_mean(cands @ targets.T, k) - density + 1.0, atol=1e-5)
    target_density = _top_mean(targets @ bg.T, k)
    csls = image_rewards(cands, targets, k=k, variant="knn_csls", background=bg)
    np.testing.assert_allclose(
        csls, _top_mean(cands @ targets.T - target_density, k) - density + 2.0, atol=1e-5
    )


@pytest.mark.parametrize("variant", sorted(BACKGROUND_REWARDS))
def test_a_sampled_image_scores_as_if_it_were_not_in_the_background(variant) -> None:
    """The background density leaves out a candidate's own copies (same vector), nothing else."""
    cands, targets, bg = _data(5)
    alone = image_rewards(cands, targets, k=5, variant=variant, background=bg)
    with_copies = np.concatenate([bg, cands[:3], cands[:1]])  # candidate 0 twice (the same bytes twice)
    sampled = image_rewards(cands, targets, k=5, variant=variant, background=with_copies)
    if variant in ("knn_contrast", "cluster_contrast"):  # centring moves with the sample; csls's target side
        np.testing.assert_allclose(sampled[:3], alone[:3], atol=1e-5)  # sees the copies, as it should
    else:
        assert np.isfinite(sampled).all()
    exact = knn_similarity(cands[:1], with_copies, 5, backend="torch", exclude_above=1.0 - 1e-4)
    np.testing.assert_allclose(exact, _top_mean(cands[:1] @ bg.T, 5), atol=1e-5)


@pytest.mark.parametrize("variant", sorted(BACKGROUND_REWARDS))
def test_background_rewards_put_any_new_image_above_a_query_with_none(variant) -> None:
    """Offset rewards are positive, so a reward-maximiser does not prefer queries that download nothing."""
    rng = np.random.default_rng(6)
    web = _unit(rng.standard_normal((300, 8)) + np.eye(8)[0] * 2)  # a web dense around one direction
    targets = _unit(rng.standard_normal((40, 8)) + np.eye(8)[1] * 2)  # a target elsewhere
    cands = _unit(np.concatenate([web[:20] + 0.01, rng.standard_normal((20, 8))]))  # web-like and random
    rewards = image_rewards(cands, targets, k=5, variant=variant, background=web)
    assert rewards.min() > 0.0, rewards.min()
    plain = rewards - BACKGROUND_OFFSET[variant]
    assert (plain < 0).mean() > 0.5  # without the offset most of them would lose to an empty query


def test_cluster_contrast_is_best_cluster_minus_density() -> None:
    cands, targets, bg = _data(1)
    labels = target_clusters(targets)
    per_cluster = [
        _top_mean(cands @ targets[labels == j].T, min(4, int((labels == j).sum())))
        for j in range(labels.max() + 1)
    ]
    expected = np.max(per_cluster, axis=0) - _top_mean(cands @ bg.T, 4) + 1.0
    got = image_rewards(cands, targets, k=4, variant="cluster_contrast", background=bg)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_small_target_cluster_counts_as_much_as_a_large_one() -> None:
    """An image like a 3-image target class: the paper's 15-NN mean dilutes it, the cluster max does not."""
    big = _unit(np.tile([1.0, 0, 0, 0], (40, 1)) + np.random.default_rng(2).normal(0, 0.05, (40, 4)))
    small = _unit(np.tile([0, 1.0, 0, 0], (3, 1)) + np.random.default_rng(3).normal(0, 0.05, (3, 4)))
    targets = np.concatenate([big, small])
    cand = _unit(np.array([[0, 1.0, 0, 0]]))
    assert knn_similarity(cand, targets, 15)[0] < 0.3
    assert cluster_similarity(cand, targets, 15)[0] > 0.95


def test_contrast_demotes_a_hub_below_a_target_image() -> None:
    """A generic image close to the whole web (and so to the target) loses against a target-like one."""
    rng = np.random.default_rng(4)
    hub_dir, target_dir = np.eye(8)[0], np.eye(8)[1]
    web = _unit(hub_dir * 2 + rng.standard_normal((300, 8)) * 0.6)
    targets = _unit(hub_dir * 2 + target_dir * 1.5 + rng.standard_normal((30, 8)) * 0.3)
    hub = _unit(hub_dir[None] * 2 + rng.standard_normal((1, 8)) * 0.05)
    relevant = _unit(hub_dir[None] * 2 + target_dir * 1.5 + rng.standard_normal((1, 8)) * 0.3)
    cands = np.concatenate([hub, relevant])
    for variant in sorted(BACKGROUND_REWARDS):
        got = image_rewards(cands, targets, variant=variant, background=web)
        assert got[1] > got[0] + 0.1, variant


@pytest.mark.parametrize("variant", sorted(BACKGROUND_REWARDS))
def test_background_variants_need_a_background(variant: str) -> None:
    cands, targets, _ = _data()
    with pytest.raises(ValueError, match="background"):
        image_rewards(cands, targets, variant=variant)
    assert LearnConfig(reward=variant).reward == variant


def test_variants_are_named_once_and_the_paper_reward_stays() -> None:
    assert REWARDS[0] == "knn" and len(set(REWARDS)) == len(REWARDS)
    assert "knn" not in BACKGROUND_REWARDS and set(BACKGROUND_REWARDS) < set(REWARDS)
    with pytest.raises(ValueError, match="reward"):
        LearnConfig(reward="max")


def test_target_clusters_separate_groups_deterministically() -> None:
    rng = np.random.default_rng(5)
    centres = np.eye(6)[:3] * 3
    x = _unit(np.repeat(centres, 30, axis=0) + rng.standard_normal((90, 6)) * 0.2)
    labels = target_clusters(x, 3, seed=0)
    np.testing.assert_array_equal(labels, target_clusters(x, 3, seed=0))
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    for group in range(3):  # each true group lands in one cluster
        assert len(set(labels[group * 30 : (group + 1) * 30].tolist())) == 1
    assert target_clusters(x[:1]).tolist() == [0]


def test_key_bias_shifts_the_neighbour_choice() -> None:
    keys = _unit(np.eye(3))
    q = _unit(np.array([[1.0, 0.9, 0]]))
    plain = knn_similarity(q, keys, 1, backend="torch")
    biased = knn_similarity(q, keys, 1, key_bias=np.array([-1.0, 0, 0]), backend="torch")
    assert plain[0] == pytest.approx(float(q[0, 0]), abs=1e-6)
    assert biased[0] == pytest.approx(float(q[0, 1]), abs=1e-6)
    with pytest.raises(ValueError, match="torch"):
        knn_similarity(q, keys, 1, key_bias=np.zeros(3), backend="faiss")


def test_frozen_encoders_map_to_the_pretrained_start() -> None:
    from ie_env.config import EnvConfig
    from ie_env.worlds.common import FINETUNE, learn_config

    pretrained = learn_config(EnvConfig(frozen=True, frozen_encoder="pretrained", image_size=64))
    assert (pretrained.encoder, pretrained.pretrained, pretrained.image_size) == (
        "efficientnet_lite0",
        True,
        64,
    )
    tuned = learn_config(EnvConfig(frozen=True, frozen_encoder="finetuned", reward="knn_contrast"))
    assert tuned.pretrained and tuned.reward == "knn_contrast"
    assert {k: getattr(tuned, k) for k in FINETUNE} == FINETUNE
    assert learn_config(EnvConfig(frozen=True)).encoder == "convnet"
    full = learn_config(EnvConfig(encoder="efficientnet_lite0", image_size=64))  # the full env fine-tunes too
    assert full.pretrained and {k: getattr(full, k) for k in FINETUNE} == FINETUNE
    mine = learn_config(EnvConfig(encoder="efficientnet_lite0", learn_overrides={"base_lr": 0.1}))
    assert mine.base_lr == 0.1 and mine.warmup_steps == FINETUNE["warmup_steps"]
    assert learn_config(EnvConfig()).base_lr != FINETUNE["base_lr"]  # the convnet keeps its own


def test_within_domain_preset_holds_out_three_shop_classes() -> None:
    from ie_env.web.target_presets import PRESETS

    shop = PRESETS["shop-3"]
    assert shop.corpus == "web" and shop.image_corpus is None  # held out of the web it searches
    assert shop.categories == ("fashion-mnist/sneaker", "fashion-mnist/sandal", "fashion-mnist/bag")
    assert shop.split.per_category == 200
