"""The Learner facade: scoring, training phases, replay buffer, warm-up cache, checkpoints, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ie_env.learn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ie_env.learn.config import LearnConfig
from ie_env.learn.phase import epoch_indices, phase_length
from ie_env.learn.trainer import Learner, NonFiniteLossError

TINY = LearnConfig(
    convnet_width=4,
    image_size=16,
    batch_size=8,
    proj_hidden_dim=16,
    proj_dim=8,
    pred_hidden_dim=16,
    warmup_steps=3,
    max_steps_per_iteration=4,
    reward_k=3,
    concept_top=2,
    eval_knn_k=3,
)


def _images(n: int, seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _cache_home(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path / "cache"))


def _learner(seed: int = 0, progress: bool = False, **overrides) -> Learner:
    cfg = LearnConfig(**{**TINY.to_dict(), **overrides})
    return Learner(
        cfg, _images(12, 100), target_labels=np.arange(12) % 2, seed=seed, device="cpu", progress=progress
    )


def _params(learner: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.model.parameters()]


class TestScoring:
    def test_embed_is_normalised_and_deterministic(self) -> None:
        learner = _learner()
        emb = learner.embed(_images(5, 1, size=24))  # another input size is resized
        assert emb.shape == (5, learner.feature_dim) and emb.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(emb, learner.embed(_images(5, 1, size=24)))
        assert learner.target_embeddings.shape == (12, learner.feature_dim)

    def test_score_uses_target_knn(self) -> None:
        learner = _learner()
        target = _images(12, 100)
        scores = learner.score(target[:4])
        sims = scores.embeddings @ learner.target_embeddings.T
        expected = np.sort(sims, axis=1)[:, -3:].mean(axis=1)
        np.testing.assert_allclose(scores.rewards, expected, atol=1e-5)
        assert learner.score(target[:0]).rewards.shape == (0,)

    def test_concept_score_contract(self) -> None:
        learner = _learner()
        assert learner.concept_score([]) == (0.0, "no_images")
        assert learner.concept_score([0.1, 0.9, 0.5]) == (pytest.approx(0.7), "ok")

    def test_centered_reward_needs_background(self) -> None:
        learner = _learner(reward="knn_centered")
        with pytest.raises(ValueError, match="background"):
            learner.score(_images(2, 3))
        learner.set_background(_images(10, 4))
        assert np.isfinite(learner.score(_images(2, 3)).rewards).all()


class TestTraining:
    def test_train_updates_model_buffer_and_embeddings(self) -> None:
        learner = _learner()
        before_params, before_emb = _params(learner), learner.target_embeddings.copy()
        new = _images(10, 5)
        rewards = np.linspace(0.0, 0.9, 10).astype(np.float32)
        stats = learner.train(new, rewards, steps=3)
        assert stats.steps == 3 and np.isfinite(stats.loss) and stats.images == 24 and stats.images_per_s > 0
        assert any(not torch.equal(a, b) for a, b in zip(before_params, _params(learner), strict=True))
        assert not np.allclose(learner.target_embeddings, before_emb)
        # top 50 % by reward: images 5..9, best first
        assert learner.buffer_size == 5
        np.testing.assert_allclose(learner.buffer_rewards, rewards[[9, 8, 7, 6, 5]])
        np.testing.assert_array_equal(
            learner._replay.images.permute(0, 2, 3, 1).numpy(), new[[9, 8, 7, 6, 5]]
        )

    def test_rewards_computed_when_not_given(self) -> None:
        learner = _learner()
        new = _images(4, 6)
        expected = learner.score(new).rewards
        learner.train(new, steps=1)
        np.testing.assert_allclose(np.sort(learner.buffer_rewards), np.sort(expected)[-2:], atol=1e-6)

    def test_empty_candidates_train_on_target_and_buffer(self) -> None:
        learner = _learner()
        stats = learner.train(_images(0, 0), steps=2)
        assert stats.steps == 2 and np.isfinite(stats.loss) and learner.buffer_size == 0
        default = learner.train(_images(0, 0))  # epochs_per_iteration=10 over 12 images, capped at 4 steps
        assert default.steps == 4

    def test_epoch_mixes_new_and_pcr_times_past(self) -> None:
        learner = _learner()
        rng = np.random.default_rng(0)
        idx = epoch_indices(rng, n_new=5, n_past=40, pcr=TINY.pcr)
        assert len(idx) == 15 and set(range(5)) <= set(idx.tolist())
        assert len(set(idx.tolist())) == 15  # sampled without replacement while possible
        assert sorted(epoch_indices(rng, n_new=0, n_past=7, pcr=TINY.pcr).tolist()) == list(range(7))
        assert phase_length(TINY, 10, 100, None, 2) == 2 * (30 // 8)
        with pytest.raises(ValueError, match="not both"):
            learner.train(_images(2, 1), steps=1, epochs=1)

    def test_stats_count_what_each_pool_gave(self) -> None:
        learner = _learner()  # batch 8, PCR 2: an epoch is the 10 new images and 20 from target + buffer
        first = learner.train(_images(10, 5), np.linspace(0, 1, 10, dtype=np.float32), epochs=2)
        new, target, buffer = first.images_by_pool
        assert sum(first.images_by_pool) == first.images == first.steps * 8 == 48
        # each epoch's 30 images lose a tail of 6, so 8 to 20 of the 2 x 10 new ones are seen
        assert buffer == 0 and target == first.images - new and 8 <= new <= 20
        second = learner.train(_images(0, 0), steps=5)  # no new images: an epoch is target + buffer (12 + 5)
        assert second.images_by_pool[0] == 0 and second.images_by_pool[2] > 0
        assert sum(second.images_by_pool) == second.images == 40

    def test_buffer_capacity_drops_oldest(self) -> None:
        learner = _learner(buffer_capacity=3)
        learner.train(_images(4, 1), np.array([1.0, 2.0, 3.0, 4.0]), steps=1)
        learner.train(_images(4, 2), np.array([5.0, 6.0, 7.0, 8.0]), steps=1)
        np.testing.assert_allclose(learner.buffer_rewards, [3.0, 8.0, 7.0])

    def test_same_seed_same_result(self) -> None:
        a, b = _learner(seed=3), _learner(seed=3)
        sa = a.train(_images(6, 2), steps=2)
        sb = b.train(_images(6, 2), steps=2)
        assert sa.loss == sb.loss
        np.testing.assert_array_equal(a.target_embeddings, b.target_embeddings)
        c = _learner(seed=4)
        assert c.train(_images(6, 2), steps=2).loss != sa.loss

    def test_nan_loss_stops_and_rolls_back(self, tmp_path) -> None:
        learner = _learner()
        learner.train(_images(4, 1), steps=1)
        ckpt = learner.save(tmp_path / "good.ckpt")
        before, buffer_before = _params(learner), learner.buffer_size
        orig = learner.model.forward
        calls = {"n": 0}

        def poisoned(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            loss = orig(x1, x2)
            return loss * float("nan") if calls["n"] >= 2 else loss

        learner.model.forward = poisoned  # type: ignore[method-assign]
        with pytest.raises(NonFiniteLossError, match="step 2 of 3"):
            learner.train(_images(4, 2), steps=3)
        for a, b in zip(before, _params(learner), strict=True):
            assert torch.equal(a, b)
        assert learner.buffer_size == buffer_before
        assert Learner.load(ckpt).buffer_size == buffer_before  # the last good checkpoint is intact


class TestWarmUp:
    def test_cached_once_per_target_and_config(self) -> None:
        first = _learner(seed=0)
        stats = first.warm_up()
        assert stats.steps == 3 and not stats.cached
        second = _learner(seed=7)  # another run seed shares the warm-up
        again = second.warm_up()
        assert again.cached and again.loss == stats.loss
        for a, b in zip(_params(first), _params(second), strict=True):
            assert torch.equal(a, b)
        np.testing.assert_array_equal(first.target_embeddings, second.target_embeddings)
        other = Learner(TINY, _images(12, 101), seed=0, device="cpu")  # another target: not cached
        assert not other.warm_up().cached

    def test_uncached_warm_up_is_reproducible(self) -> None:
        a, b = _learner(seed=1), _learner(seed=2)
        sa, sb = a.warm_up(cache=False), b.warm_up(cache=False)
        assert not sb.cached and sa.loss == sb.loss

    @pytest.mark.parametrize(("fraction", "sizes"), [(2 / 3, [8, 8, 16]), (0.0, [16, 16, 16])])
    def test_first_steps_train_at_low_resolution(
        self, monkeypatch: pytest.MonkeyPatch, fraction: float, sizes: list[int]
    ) -> None:
        from ie_env.learn.augment import TwoViewAugment

        seen: list[int] = []
        original = TwoViewAugment.__call__

        def spy(self, batch, generator):
            views = original(self, batch, generator)
            seen.append(views[0].shape[-1])
            return views

        monkeypatch.setattr(TwoViewAugment, "__call__", spy)
        learner = _learner(warmup_low_res_fraction=fraction)  # 3 steps at 16 px, low resolution 8 px
        learner.warm_up(cache=False)
        assert seen == sizes
        seen.clear()
        learner.train(_images(4, 1), steps=2)  # training phases after the warm-up: full resolution
        assert seen == [16, 16]

    def test_low_resolution_share_is_part_of_the_cache_key(self) -> None:
        _learner().warm_up()
        assert not _learner(warmup_low_res_fraction=0.0).warm_up().cached
        assert _learner().warm_up().cached

    def test_corrupt_cache_is_recomputed(self) -> None:
        learner = _learner()
        learner.warm_up()
        from ie_env.paths import cache_subdir

        (path,) = list(cache_subdir("warmup").glob("*.ckpt"))
        path.write_bytes(path.read_bytes()[:-10])
        with pytest.warns(UserWarning, match="warm-up cache"):
            stats = _learner().warm_up()
        assert not stats.cached and stats.steps == 3


class TestCheckpoint:
    def test_round_trip_restores_identical_outputs(self, tmp_path) -> None:
        learner = _learner(reward="knn_centered")
        learner.set_background(_images(10, 9))
        learner.train(_images(6, 1), steps=2)
        path = learner.save(tmp_path / "run" / "learner.ckpt")
        loaded = Learner.load(path, device="cpu")
        probe = _images(5, 11)
        np.testing.assert_array_equal(learner.embed(probe), loaded.embed(probe))
        np.testing.assert_array_equal(learner.score(probe).rewards, loaded.score(probe).rewards)
        assert loaded.config == learner.config and loaded.buffer_size == learner.buffer_size
        # RNG states, optimiser and momentum encoder came back too: the next phase is identical
        s1 = learner.train(_images(6, 2), steps=2)
        s2 = loaded.train(_images(6, 2), steps=2)
        assert s1.loss == s2.loss
        np.testing.assert_array_equal(learner.embed(probe), loaded.embed(probe))

    def test_state_dict_resets_to_initial(self) -> None:
        learner = _learner()
        initial = learner.state_dict()
        probe = _images(3, 12)
        emb0 = learner.embed(probe)
        loss0 = learner.train(_images(6, 1), steps=2).loss
        assert learner.buffer_size == 3
        learner.load_state_dict(initial)
        assert learner.buffer_size == 0
        np.testing.assert_array_equal(learner.embed(probe), emb0)
        assert learner.train(_images(6, 1), steps=2).loss == loss0

    @pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "missing"])
    def test_damaged_checkpoint_is_refused(self, tmp_path, damage: str) -> None:
        path = _learner().save(tmp_path / "l.ckpt")
        raw = bytearray(path.read_bytes())
        if damage == "flip":
            raw[len(raw) // 2] ^= 0xFF
            path.write_bytes(bytes(raw))
        elif damage == "truncate":
            path.write_bytes(bytes(raw[: len(raw) // 3]))
        elif damage == "garbage":
            path.write_bytes(b"not a checkpoint at all")
        else:
            path.unlink()
        with pytest.raises(CheckpointError):
            Learner.load(path)

    def test_foreign_payload_is_refused(self, tmp_path) -> None:
        path = save_checkpoint(tmp_path / "other.ckpt", {"something": torch.zeros(2)})
        assert "something" in load_checkpoint(path)
        with pytest.raises(CheckpointError, match="usable learner"):
            Learner.load(path)


def _dark_and_bright(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes any encoder separates: dark noise (label 0) and bright noise (label 1)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    low = np.where(labels == 0, 0, 190)[:, None, None, None]
    return (low + rng.integers(0, 66, (n, 16, 16, 3))).astype(np.uint8), labels


def test_evaluate_needs_labels_and_reports_both_metrics() -> None:
    train, train_y = _dark_and_bright(12, 0)
    test, test_y = _dark_and_bright(10, 1)
    learner = Learner(TINY, train, target_labels=train_y, seed=0, device="cpu")
    res = learner.evaluate(test, test_y)
    assert (res.knn_accuracy, res.linear_probe_accuracy) == (1.0, 1.0)
    assert (res.n_train, res.n_test) == (12, 10)
    flipped = learner.evaluate(test, 1 - test_y)  # the metrics use the labels: all wrong now
    assert (flipped.knn_accuracy, flipped.linear_probe_accuracy) == (0.0, 0.0)
    unlabeled = Learner(TINY, _images(12, 100), seed=0, device="cpu")
    with pytest.raises(ValueError, match="target_labels"):
        unlabeled.evaluate(_images(6, 3), np.arange(6) % 2)


class TestProgress:
    def test_long_steps_show_progress_when_asked(self, capsys: pytest.CaptureFixture[str]) -> None:
        learner = _learner(progress=True)
        learner.warm_up(cache=False)
        learner.evaluate(_images(6, 3), np.arange(6) % 2)
        err = capsys.readouterr().err
        assert "SSL training" in err and "3/3" in err  # the warm-up's steps
        assert "embedding" in err

    def test_silent_by_default_and_when_false(self, capsys: pytest.CaptureFixture[str]) -> None:
        learner = _learner()
        learner.warm_up(cache=False)
        learner.train(_images(4, 1), steps=2)
        learner.evaluate(_images(6, 3), np.arange(6) % 2)
        loud = _learner(progress=True)
        capsys.readouterr()
        loud.warm_up(cache=False, progress=False)
        loud.embed(_images(3, 2), progress=False)
        assert capsys.readouterr() == ("", "")


def test_a_restored_state_replays_training_and_stays_intact() -> None:
    """load_state_dict must not hand its tensors to the optimiser (torch keeps them as momentum buffers)."""
    learner = _learner(seed=3)
    learner.train(_images(12, 1), steps=2)  # momentum buffers now exist
    saved = learner.state_dict()
    snapshot = {
        k: v.clone() for k, v in saved["optimizer"]["state"][0].items() if isinstance(v, torch.Tensor)
    }
    losses = []
    for _ in range(3):
        learner.load_state_dict(saved)
        learner.reseed(np.random.default_rng(7))
        losses.append(learner.train(_images(12, 2), steps=3).loss)
    assert losses[0] == losses[1] == losses[2]
    for key, value in snapshot.items():
        assert torch.equal(saved["optimizer"]["state"][0][key], value)
