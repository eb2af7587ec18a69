"""Embedding images with a backbone: batched, in eval mode, L2-normalised float32 features.

The backbone runs under :func:`ie_env.runtime.autocast` (bfloat16 where the device runs it natively,
``IE_ENV_BF16=0`` turns it off); features are cast to float32 before they are normalised.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ie_env.learn.augment import prepare_eval
from ie_env.runtime import autocast


@torch.no_grad()
def embed_tensor(
    backbone: nn.Module,
    data: torch.Tensor,
    feature_dim: int,
    *,
    batch_size: int,
    device: torch.device,
    progress: bool = False,
    desc: str = "embedding images",
) -> np.ndarray:
    """Return the L2-normalised backbone features of prepared uint8 images.

    The backbone runs in eval mode (BatchNorm uses its running statistics) and is put back in the mode
    it was in.

    Args:
        backbone: maps a normalised ``(B, 3, S, S)`` batch to ``(B, feature_dim)``.
        data: uint8 ``(N, 3, S, S)`` CPU tensor (see ``augment.images_to_tensor``).
        feature_dim: the backbone's output size.
        batch_size: images per forward pass.
        device: where the backbone is.
        progress: show a progress bar (per image).
        desc: the progress bar's label.

    Returns:
        float32 array of shape (N, feature_dim).
    """
    out = np.zeros((len(data), feature_dim), dtype=np.float32)
    if len(data) == 0:
        return out
    was_training = backbone.training
    backbone.eval()
    try:
        with tqdm(total=len(data), desc=desc, unit="img", disable=not progress) as bar:
            for start in range(0, len(data), batch_size):
                x = prepare_eval(data[start : start + batch_size].to(device, non_blocking=True))
                x = x.contiguous(memory_format=torch.channels_last)
                with autocast(device):
                    features = backbone(x)
                out[start : start + batch_size] = F.normalize(features.float(), dim=1).cpu().numpy()
                bar.update(len(x))
    finally:
        backbone.train(was_training)
    return out
