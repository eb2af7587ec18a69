"""MoCo v3 in plain torch: heads, InfoNCE, the EMA key encoder, LARS.

References:
    - [0] MoCo v3, Chen, Xie, He 2021, https://arxiv.org/abs/2104.02057 (official code: facebookresearch/moco-v3)
    - [1] Internet Explorer, Li et al. 2023 (https://arxiv.org/abs/2302.14051): MoCo v3 on ResNet-50,
      tau = 1, momentum 0.9985, LARS.

The query branch is backbone -> projector -> predictor; the key branch is an EMA copy of backbone +
projector (the standard MoCo v3 design; the Internet Explorer paper writes the two encoders' names
f_q/f_k the other way round, the computation is the same).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ie_env.learn.config import LearnConfig


def infonce_loss(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with in-batch negatives (the paper's Eq. 1), mean over the batch.

    ``L_i = -log( exp(q_i.k_i / t) / sum_j exp(q_i.k_j / t) )`` with ``q`` and ``k`` L2-normalised here.

    Args:
        q: queries. Shape: (batch_size, dim).
        k: keys; ``k[i]`` is the positive of ``q[i]``, every other row a negative. Shape: (batch_size, dim).
        temperature: tau > 0.
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    logits = q @ k.t() / temperature
    labels = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, labels)


def build_mlp(
    num_layers: int, in_dim: int, hidden_dim: int, out_dim: int, last_bn: bool = True
) -> nn.Sequential:
    """MoCo v3 MLP: (Linear -> BN -> ReLU) x (num_layers - 1) -> Linear [-> BN without affine]."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        d_in = in_dim if i == 0 else hidden_dim
        d_out = out_dim if i == num_layers - 1 else hidden_dim
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Backbone followed by the projector; ``backbone`` alone gives the features used for rewards."""

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections ``(B, proj_dim)`` of a normalised batch."""
        return self.projector(self.backbone(x))


class MoCoV3(nn.Module):
    """MoCo v3: query encoder + predictor, EMA key encoder, symmetric InfoNCE.

    Args:
        backbone: maps images to ``(B, feature_dim)``.
        feature_dim: backbone output size.
        config: head sizes and temperature.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, config: LearnConfig) -> None:
        super().__init__()
        self.temperature = config.temperature
        projector = build_mlp(3, feature_dim, config.proj_hidden_dim, config.proj_dim)
        self.base_encoder = Encoder(backbone, projector)
        self.predictor = build_mlp(2, config.proj_dim, config.pred_hidden_dim, config.proj_dim, last_bn=False)
        self.momentum_encoder = copy.deepcopy(self.base_encoder)
        for p in self.momentum_encoder.parameters():
            p.requires_grad_(False)

    @property
    def backbone(self) -> nn.Module:
        """The query branch's backbone (what is embedded for rewards and evaluation)."""
        return self.base_encoder.backbone

    @torch.no_grad()
    def update_momentum(self, m: float) -> None:
        """EMA step: ``key = m * key + (1 - m) * query`` for every parameter."""
        update_momentum(self.base_encoder, self.momentum_encoder, m)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Symmetric loss of two views ``(B, 3, S, S)``: ``2 tau (L(q1, k2) + L(q2, k1))`` as in MoCo v3's code.

        The key encoder should be EMA-updated (``update_momentum``) before this call, as MoCo v3 does.
        """
        q1 = self.predictor(self.base_encoder(x1))
        q2 = self.predictor(self.base_encoder(x2))
        with torch.no_grad():
            k1 = self.momentum_encoder(x1)
            k2 = self.momentum_encoder(x2)
        scale = 2 * self.temperature
        return scale * (infonce_loss(q1, k2, self.temperature) + infonce_loss(q2, k1, self.temperature))


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, m: float) -> None:
    """``target.param = m * target.param + (1 - m) * online.param`` for every parameter.

    Buffers (BN running statistics) are left alone, as in MoCo v3's code: the key encoder runs in train
    mode and normalises with batch statistics.
    """
    for p_o, p_t in zip(online.parameters(), target.parameters(), strict=True):
        p_t.mul_(m).add_(p_o.detach(), alpha=1 - m)


class LARS(torch.optim.Optimizer):
    """LARS as in MoCo v3's code: weight decay and trust ratio only on weights with ``ndim > 1``.

    Args:
        params: parameters or groups.
        lr: learning rate.
        weight_decay: L2 weight decay added to the gradient of matrices/kernels.
        momentum: heavy-ball momentum.
        trust_coefficient: eta in the trust ratio ``eta * ||w|| / ||g||``.
    """

    def __init__(
        self,
        params,
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"Illegal lr: {lr!r}")
        defaults = dict(
            lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if p.ndim > 1:
                    dp = dp.add(p, alpha=group["weight_decay"])
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(
                        param_norm > 0.0,
                        torch.where(
                            update_norm > 0, group["trust_coefficient"] * param_norm / update_norm, one
                        ),
                        one,
                    )
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(dp)
                p.add_(mu, alpha=-group["lr"])
        return loss


def build_optimizer(model: MoCoV3, config: LearnConfig) -> torch.optim.Optimizer:
    """The configured optimiser over the trainable parameters (query encoder + predictor)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "lars":
        return LARS(params, lr=config.lr, weight_decay=config.weight_decay, momentum=config.sgd_momentum)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.sgd_momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_at(config: LearnConfig, step: int, total_steps: int) -> float:
    """Learning rate at ``step`` of a phase of ``total_steps``: constant (paper) or cosine to 0."""
    if config.lr_schedule == "constant" or total_steps <= 1:
        return config.lr
    import math

    return config.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
