"""MoCo v3 parts: InfoNCE against a hand-written reference and analytic values, EMA, LARS, the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ie_env.learn.config import LearnConfig
from ie_env.learn.encoders import ConvNet
from ie_env.learn.moco import LARS, MoCoV3, build_mlp, infonce_loss, lr_at, update_momentum


def _infonce_manual(q: np.ndarray, k: np.ndarray, temperature: float) -> float:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(q)):
        logits = [float(np.dot(q[i], k[j])) / temperature for j in range(len(k))]
        m = max(logits)
        log_denominator = m + math.log(sum(math.exp(x - m) for x in logits))
        total += -(logits[i] - log_denominator)
    return total / len(q)


class TestInfoNCE:
    @pytest.mark.parametrize("n", [2, 5, 16])
    @pytest.mark.parametrize("dim", [3, 32])
    @pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
    def test_matches_manual_reference(self, n: int, dim: int, temperature: float) -> None:
        rng = np.random.default_rng(n * 100 + dim)
        q = rng.standard_normal((n, dim))
        k = rng.standard_normal((n, dim))
        got = infonce_loss(torch.tensor(q), torch.tensor(k), temperature).item()
        assert got == pytest.approx(_infonce_manual(q, k, temperature), rel=1e-9, abs=1e-12)

    @pytest.mark.parametrize("n", [2, 7, 64])
    def test_identical_embeddings_give_log_n(self, n: int) -> None:
        # All logits equal -> the positive is one of n equally likely classes.
        q = torch.ones(n, 8)
        assert infonce_loss(q, q.clone(), 0.3).item() == pytest.approx(math.log(n), rel=1e-6)

    @pytest.mark.parametrize("temperature", [0.2, 1.0])
    def test_orthogonal_positives_analytic(self, temperature: float) -> None:
        n = 6
        e = torch.eye(n, dtype=torch.float64)
        expected = math.log(1 + (n - 1) * math.exp(-1 / temperature))
        assert infonce_loss(e, e, temperature).item() == pytest.approx(expected, rel=1e-12)

    def test_scale_invariant_in_inputs(self) -> None:
        q, k = torch.randn(4, 5), torch.randn(4, 5)
        assert infonce_loss(3 * q, 0.5 * k, 1.0).item() == pytest.approx(
            infonce_loss(q, k, 1.0).item(), rel=1e-5
        )


class TestMomentum:
    def test_ema_update_semantics(self) -> None:
        torch.manual_seed(0)
        online, target = nn.Linear(3, 2), nn.Linear(3, 2)
        old_t = [p.detach().clone() for p in target.parameters()]
        old_o = [p.detach().clone() for p in online.parameters()]
        update_momentum(online, target, 0.9)
        for p_t, t0, o0 in zip(target.parameters(), old_t, old_o, strict=True):
            torch.testing.assert_close(p_t.detach(), 0.9 * t0 + 0.1 * o0)
        for p_o, o0 in zip(online.parameters(), old_o, strict=True):
            torch.testing.assert_close(p_o.detach(), o0)  # the online network is not touched

    def test_momentum_one_keeps_and_zero_copies(self) -> None:
        online, target = nn.Linear(3, 2), nn.Linear(3, 2)
        before = target.weight.detach().clone()
        update_momentum(online, target, 1.0)
        torch.testing.assert_close(target.weight.detach(), before)
        update_momentum(online, target, 0.0)
        torch.testing.assert_close(target.weight.detach(), online.weight.detach())

    def test_repeated_updates_converge_geometrically(self) -> None:
        online, target = nn.Linear(2, 1, bias=False), nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            online.weight.fill_(1.0)
            target.weight.fill_(0.0)
        for _ in range(10):
            update_momentum(online, target, 0.5)
        torch.testing.assert_close(target.weight.detach(), torch.full((1, 2), 1 - 0.5**10))

    def test_model_key_branch_is_a_frozen_copy(self) -> None:
        model = MoCoV3(ConvNet(4), 16, LearnConfig(proj_hidden_dim=8, proj_dim=4, pred_hidden_dim=8))
        for p_q, p_k in zip(
            model.base_encoder.parameters(), model.momentum_encoder.parameters(), strict=True
        ):
            assert torch.equal(p_q, p_k)
            assert p_q.data_ptr() != p_k.data_ptr()
            assert not p_k.requires_grad


class TestModel:
    def test_loss_gradients_reach_query_branch_only(self) -> None:
        torch.manual_seed(0)
        cfg = LearnConfig(proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=16, temperature=0.5)
        model = MoCoV3(ConvNet(4), 16, cfg)
        x1, x2 = torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)
        loss = model(x1, x2)
        # symmetric loss, scaled by 2 tau as in MoCo v3: bounded by 2 tau * 2 log(batch) when near uniform
        assert 0 < loss.item() < 2 * 0.5 * 2 * math.log(6) * 1.5
        loss.backward()
        assert all(p.grad is not None for p in model.base_encoder.parameters())
        assert all(p.grad is not None for p in model.predictor.parameters())
        assert all(p.grad is None for p in model.momentum_encoder.parameters())

    def test_mlp_shapes(self) -> None:
        mlp = build_mlp(3, 10, 32, 7)
        assert mlp(torch.randn(4, 10)).shape == (4, 7)
        assert isinstance(mlp[-1], nn.BatchNorm1d) and not mlp[-1].affine
        assert isinstance(build_mlp(2, 7, 16, 7, last_bn=False)[-1], nn.Linear)


class TestLARS:
    def test_vector_params_get_plain_momentum_sgd(self) -> None:
        p = nn.Parameter(torch.tensor([1.0, -2.0]))
        opt = LARS([p], lr=0.1, weight_decay=0.5, momentum=0.9)
        p.grad = torch.tensor([0.5, 0.5])
        opt.step()
        torch.testing.assert_close(p.detach(), torch.tensor([0.95, -2.05]))

    def test_matrix_params_use_trust_ratio_and_weight_decay(self) -> None:
        w0 = torch.tensor([[3.0, 4.0]])
        p = nn.Parameter(w0.clone())
        opt = LARS([p], lr=0.1, weight_decay=0.1, momentum=0.9, trust_coefficient=0.001)
        p.grad = torch.tensor([[1.0, 0.0]])
        opt.step()
        dp = torch.tensor([[1.0, 0.0]]) + 0.1 * w0
        expected = w0 - 0.1 * (0.001 * w0.norm() / dp.norm()) * dp
        torch.testing.assert_close(p.detach(), expected)

    def test_rejects_bad_lr(self) -> None:
        with pytest.raises(ValueError, match="lr"):
            LARS([nn.Parameter(torch.zeros(1))], lr=0.0)


def test_lr_schedules() -> None:
    constant = LearnConfig(lr_schedule="constant", base_lr=0.8, batch_size=256)
    assert lr_at(constant, 0, 100) == lr_at(constant, 99, 100) == pytest.approx(0.8)
    cosine = LearnConfig(lr_schedule="cosine", base_lr=0.8, batch_size=128)
    assert lr_at(cosine, 0, 100) == pytest.approx(0.4)
    assert lr_at(cosine, 50, 100) == pytest.approx(0.2)
    assert lr_at(cosine, 99, 100) < 0.001
