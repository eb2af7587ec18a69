"""The replay buffer's admission rule (one rule for the learner and the full world) and its capacity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ie_env.learn.config import LearnConfig
from ie_env.learn.replay import ReplayBuffer, admitted_count, admitted_indices
from ie_env.learn.trainer import Learner


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [
        (10, 0.5, 5),
        (5, 0.5, 3),  # half of an odd count keeps the middle image
        (4, 0.3, 2),  # ceil(1.2): rounding to nearest would keep 1
        (1, 0.1, 1),  # any positive fraction keeps at least one image
        (30, 0.1, 3),  # 0.1 * 30 == 3.0000000000000004 in floats: still 3
        (10, 0.7, 7),
        (7, 0.0, 0),
        (7, 1.0, 7),
        (0, 0.5, 0),
    ],
)
def test_admitted_count_rounds_up(n: int, fraction: float, expected: int) -> None:
    assert admitted_count(n, fraction) == expected


def test_admitted_count_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fraction"):
        admitted_count(3, 1.5)
    with pytest.raises(ValueError, match="n must"):
        admitted_count(-1, 0.5)


def test_admitted_indices_best_first_ties_keep_order() -> None:
    rewards = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    np.testing.assert_array_equal(admitted_indices(rewards, 0.5), [1, 3, 2])
    assert admitted_indices(rewards, 0.0).dtype == np.int64 and len(admitted_indices(rewards, 0.0)) == 0
    assert admitted_indices(np.zeros(0), 0.5).shape == (0,)


def test_buffer_admits_and_drops_oldest_beyond_capacity() -> None:
    buffer = ReplayBuffer(image_size=2, capacity=3)
    first = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    order = buffer.admit(first, np.array([1.0, 4.0, 3.0, 2.0]), 0.5)
    np.testing.assert_array_equal(order, [1, 2])
    assert len(buffer) == 2 and buffer.images[:, 0, 0, 0].tolist() == [1, 2]
    buffer.admit(first, np.array([5.0, 0.0, 0.0, 6.0]), 0.5)
    np.testing.assert_allclose(buffer.rewards, [3.0, 6.0, 5.0])  # the oldest (4.0) was dropped
    state = buffer.state_dict()
    other = ReplayBuffer(image_size=2)
    other.load_state_dict(state)
    assert torch.equal(other.images, buffer.images) and other.rewards.tolist() == buffer.rewards.tolist()


def test_learner_admits_by_the_same_rule(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))
    cfg = LearnConfig(
        convnet_width=4, image_size=8, batch_size=4, proj_hidden_dim=8, proj_dim=4, pred_hidden_dim=8,
        buffer_fraction=0.3,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    learner = Learner(cfg, rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), seed=0, device="cpu")
    rewards = np.array([0.1, 0.4, 0.3, 0.2], dtype=np.float32)
    learner.train(rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), rewards, steps=1)
    expected = admitted_indices(rewards, cfg.buffer_fraction)
    assert learner.buffer_size == admitted_count(4, 0.3) == 2
    np.testing.assert_allclose(learner.buffer_rewards, rewards[expected])
