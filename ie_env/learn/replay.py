"""The replay buffer: which new images are kept after a training phase, and where they are kept.

After each training phase the best ``buffer_fraction`` of the phase's new images, ranked by the image
reward they had when they were scored, join the buffer, which persists across iterations and is
sampled (with the target-train set) in later phases. :func:`admitted_indices` is the one admission
rule: the learner uses it for its image tensors and the full world for its store's ``in_buffer``
flags, so both always agree on which images were admitted.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# The count's product is rounded to this many decimals before ``ceil``, so that float error
# (``0.1 * 30 == 3.0000000000000004``) never admits one image more than the fraction says.
_COUNT_DECIMALS = 9


def admitted_count(n: int, fraction: float) -> int:
    """Return how many of ``n`` new images join the buffer: ``ceil(fraction * n)``.

    Rounding up means any positive fraction keeps at least one image of a non-empty phase, and half
    of an odd count keeps the middle image (``fraction=0.5, n=5`` keeps 3).

    Args:
        n: number of new images, >= 0.
        fraction: share to keep, in [0, 1].

    Raises:
        ValueError: ``n`` is negative or ``fraction`` outside [0, 1].
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    return min(n, math.ceil(round(fraction * n, _COUNT_DECIMALS)))


def admitted_indices(rewards: np.ndarray, fraction: float) -> np.ndarray:
    """Return the indices of the images admitted to the buffer, best reward first.

    Args:
        rewards: image rewards of the new images. Shape: (n,).
        fraction: share to keep (``LearnConfig.buffer_fraction``).

    Returns:
        int64 indices into ``rewards`` of the top :func:`admitted_count` images, sorted by decreasing
        reward; ties keep the earlier image first.
    """
    rewards = np.asarray(rewards, dtype=np.float64).ravel()
    keep = admitted_count(len(rewards), fraction)
    return np.argsort(-rewards, kind="stable")[:keep].astype(np.int64)


class ReplayBuffer:
    """Admitted images as a uint8 ``(N, 3, S, S)`` CPU tensor, with the rewards they were admitted with.

    Args:
        image_size: side ``S`` of the stored images.
        capacity: optional cap; when exceeded the oldest images are dropped first. None: unbounded.
    """

    def __init__(self, image_size: int, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.images = torch.zeros((0, 3, image_size, image_size), dtype=torch.uint8)
        self.rewards = np.zeros(0, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.images)

    def admit(self, images: torch.Tensor, rewards: np.ndarray, fraction: float) -> np.ndarray:
        """Add the best ``fraction`` of ``images`` by ``rewards`` (see :func:`admitted_indices`).

        Args:
            images: uint8 ``(n, 3, S, S)`` tensor of the phase's new images.
            rewards: their image rewards. Shape: (n,).
            fraction: share to keep.

        Returns:
            The indices into ``images`` that were admitted, best first.
        """
        order = admitted_indices(rewards, fraction)
        if len(order) == 0:
            return order
        self.images = torch.cat([self.images, images[torch.from_numpy(order)]])
        self.rewards = np.concatenate([self.rewards, np.asarray(rewards, dtype=np.float32)[order]])
        if self.capacity is not None and len(self.images) > self.capacity:
            self.images = self.images[-self.capacity :].clone()
            self.rewards = self.rewards[-self.capacity :].copy()
        return order

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Independent copies of the images and rewards (for checkpoints and resets)."""
        return {"buffer": self.images.clone(), "buffer_rewards": torch.from_numpy(self.rewards.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a :meth:`state_dict`."""
        self.images = state["buffer"].clone()
        self.rewards = state["buffer_rewards"].numpy().astype(np.float32).copy()
