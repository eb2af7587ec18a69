"""bfloat16 autocast and the thread policy: one detection, an off switch, no process-wide side effects."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ie_env import runtime
from ie_env.config import EnvConfig
from ie_env.learn.config import LearnConfig
from ie_env.learn.trainer import Learner

NATIVE = runtime._bf16_native("cpu")
needs_bf16 = pytest.mark.skipif(not NATIVE, reason="this CPU has no native bfloat16")


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def _learner(**kwargs) -> Learner:
    config = LearnConfig(image_size=16, batch_size=16, convnet_width=8, warmup_steps=2)
    return Learner(config, _images(32), seed=0, device="cpu", **kwargs)


class TestDetection:
    @pytest.mark.parametrize("value", ["0", "false", "off", "No"])
    def test_the_off_switch_turns_bf16_off(self, monkeypatch, value) -> None:
        monkeypatch.setenv(runtime.BF16_ENV_VAR, value)
        assert not runtime.bf16_enabled("cpu")
        assert runtime.precision_tag("cpu") == "fp32"
        with runtime.autocast("cpu"):
            assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.float32

    @needs_bf16
    def test_native_cpu_runs_matmuls_in_bf16(self, monkeypatch) -> None:
        monkeypatch.delenv(runtime.BF16_ENV_VAR, raising=False)
        assert runtime.precision_tag(torch.device("cpu")) == "bf16"
        with runtime.autocast("cpu"):
            assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16

    def test_bf16_allowed_sets_and_restores_the_switch(self, monkeypatch) -> None:
        monkeypatch.setenv(runtime.BF16_ENV_VAR, "1")
        with runtime.bf16_allowed(False):
            assert not runtime.bf16_enabled("cpu")
        assert runtime.bf16_enabled("cpu") == NATIVE
        monkeypatch.delenv(runtime.BF16_ENV_VAR)
        with runtime.bf16_allowed(False):
            pass
        assert runtime.BF16_ENV_VAR not in os.environ


class TestLearnerPrecision:
    @needs_bf16
    def test_bf16_embeddings_are_float32_and_match_fp32(self) -> None:
        learner = _learner()
        images = _images(64, seed=1)
        with runtime.bf16_allowed(True):
            bf16 = learner.embed(images)
        with runtime.bf16_allowed(False):
            fp32 = learner.embed(images)
        assert bf16.dtype == np.float32
        cosine = (bf16 * fp32).sum(axis=1)
        assert cosine.min() > 0.995
        assert not np.array_equal(bf16, fp32)  # it really ran in another precision

    @needs_bf16
    def test_bf16_training_keeps_float32_weights_and_a_finite_loss(self) -> None:
        learner = _learner()
        with runtime.bf16_allowed(True):
            stats = learner.train(_images(16, seed=2), np.zeros(16, np.float32), steps=2)
        assert np.isfinite(stats.loss)
        assert all(p.dtype == torch.float32 for p in learner.model.parameters())

    @needs_bf16
    def test_the_warmup_cache_key_names_the_precision(self) -> None:
        learner = _learner()
        with runtime.bf16_allowed(True):
            bf16 = learner.warmup_key(2, "t")
        with runtime.bf16_allowed(False):
            fp32 = learner.warmup_key(2, "t")
        assert bf16 != fp32

    def test_efficientnet_trains_in_fp32_on_cpu_and_the_convnet_in_bf16(self, monkeypatch) -> None:
        """EfficientNet's bf16 backward is slower than fp32 on CPU, so its training skips autocast."""
        from ie_env.learn import phase

        monkeypatch.setattr(phase, "bf16_enabled", lambda device: True)
        assert phase.training_precision("convnet", torch.device("cpu")) == "bf16"
        assert phase.training_precision("efficientnet_lite0", torch.device("cpu")) == "fp32"
        assert phase.training_precision("efficientnet_lite0", "cuda:0") == "bf16"
        monkeypatch.setattr(phase, "bf16_enabled", lambda device: False)
        assert phase.training_precision("convnet", "cpu") == "fp32"

    def test_a_fp32_training_step_runs_outside_autocast(self, monkeypatch) -> None:
        from ie_env.learn import phase

        seen = []
        monkeypatch.setattr(phase, "training_precision", lambda encoder, device: "fp32")
        monkeypatch.setattr(phase, "autocast", lambda device: seen.append(device) or runtime.autocast(device))
        learner = _learner()
        learner.train(_images(16, seed=1), steps=1)
        assert seen == []
        monkeypatch.setattr(phase, "training_precision", lambda encoder, device: "bf16")
        learner.train(_images(16, seed=2), steps=1)
        assert len(seen) == 1


class TestThreads:
    def test_default_threads_policy(self, monkeypatch) -> None:
        monkeypatch.delenv(runtime.THREADS_ENV_VAR, raising=False)
        assert runtime.default_threads() == runtime.available_cores()
        assert runtime.default_threads(3) == 3
        monkeypatch.setenv(runtime.THREADS_ENV_VAR, "2")
        assert runtime.default_threads() == 2
        assert runtime.default_threads(5) == 5  # explicit wins
        for bad in ("0", "-1", "two"):
            monkeypatch.setenv(runtime.THREADS_ENV_VAR, bad)
            with pytest.raises(ValueError, match=runtime.THREADS_ENV_VAR):
                runtime.default_threads()
        for bad in (0, -2, 1.5, True):
            with pytest.raises(ValueError, match="threads"):
                runtime.default_threads(bad)

    def test_use_threads_sets_the_process_count(self) -> None:
        before = torch.get_num_threads()
        try:
            assert runtime.use_threads(1) == 1
            assert torch.get_num_threads() == 1
        finally:
            torch.set_num_threads(before)

    def test_the_learner_leaves_the_process_thread_count_alone(self) -> None:
        before = torch.get_num_threads()
        target = 2 if before != 2 else 3
        learner = _learner(threads=target)
        learner.train(_images(16, seed=3), None, steps=1)
        learner.embed(_images(8))
        assert torch.get_num_threads() == before
        with pytest.raises(ValueError, match="threads"):
            _learner(threads=0)

    def test_env_config_threads_default_leaves_the_process_alone(self) -> None:
        assert EnvConfig().threads is None
        assert EnvConfig(threads=2).threads == 2
        with pytest.raises(ValueError, match="threads"):
            EnvConfig(threads=0)
