"""Image preparation and MoCo v3's two asymmetric augmented views, as batched tensor ops.

Every augmentation works on a whole batch at once (one ``grid_sample`` for crop+flip, per-image colour
factors as broadcast tensors, one grouped convolution for blur), on whatever device the batch is on,
so the data pipeline never becomes a per-image Python loop. Random parameters are drawn from an
injected CPU ``torch.Generator`` (identical streams on CPU and CUDA).

The views follow MoCo v3 / BYOL, as the paper uses them: RandomResizedCrop (min area ``min_crop_scale``),
horizontal flip 0.5, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2, Gaussian blur
(p 1.0 / 0.1, sigma 0.1-2.0 scaled by size/224), solarize (p 0.0 / 0.2). Deviations, for speed: the
jitter ops run in a fixed order and hue is rotated in YIQ space instead of HSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)


def images_to_tensor(images: np.ndarray, size: int, chunk: int = 1024) -> torch.Tensor:
    """Convert uint8 images to a uint8 ``(N, 3, size, size)`` CPU tensor.

    Args:
        images: uint8 array ``(N, H, W, 3)`` RGB; ``(N, H, W)`` gray and ``(N, H, W, 4)`` RGBA are accepted
            (gray is replicated, alpha dropped). ``N`` may be 0.
        size: output side. Non-square images are centre-cropped to a square first; images of another size
            are resized with antialiased bilinear interpolation.
        chunk: images resized per batch (bounds memory).

    Raises:
        ValueError: the array is not uint8 or has the wrong shape.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=3)
    if arr.ndim != 4 or arr.shape[3] not in (3, 4):
        raise ValueError(f"images must have shape (N, H, W, 3), got {arr.shape}")
    arr = arr[..., :3]
    n, h, w = arr.shape[:3]
    if n == 0:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    arr = arr[:, top : top + side, left : left + side]
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. a read-only memory map of a corpus: torch needs its own copy
        arr = arr.copy()
    out = torch.from_numpy(arr).permute(0, 3, 1, 2)
    if side == size:
        return out.contiguous()
    pieces = []
    for start in range(0, n, chunk):
        part = out[start : start + chunk].float()
        part = F.interpolate(
            part, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False
        )
        pieces.append(part.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(pieces)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of a float batch in [0, 1]."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def prepare_eval(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> normalised float, no augmentation (for embedding and rewards)."""
    return normalize(batch.float().div_(255.0))


@dataclass(frozen=True)
class ViewSpec:
    """Probabilities that differ between MoCo v3's two views."""

    blur_p: float
    solarize_p: float


VIEW1 = ViewSpec(blur_p=1.0, solarize_p=0.0)
VIEW2 = ViewSpec(blur_p=0.1, solarize_p=0.2)


class TwoViewAugment:
    """Make MoCo v3's two augmented views of a uint8 batch.

    Args:
        image_size: output side of each view.
        min_crop_scale: RandomResizedCrop minimal area fraction.
        strength: multiplies the colour-jitter strengths.

    Example:
        >>> aug = TwoViewAugment(32)
        >>> v1, v2 = aug(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.Generator().manual_seed(0))
        >>> tuple(v1.shape)
        (4, 3, 32, 32)
    """

    def __init__(self, image_size: int, min_crop_scale: float = 0.2, strength: float = 1.0) -> None:
        self.image_size = image_size
        self.min_crop_scale = min_crop_scale
        self.jitter = (0.4 * strength, 0.4 * strength, 0.2 * strength, 0.1 * strength)
        self.blur_kernel = max(3, int(0.1 * image_size) | 1)
        self.blur_sigma = (0.1 * image_size / 224, 2.0 * image_size / 224)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return two normalised float views ``(B, 3, S, S)`` of a uint8 batch ``(B, 3, H, W)``."""
        x = batch.float().div_(255.0)
        return self.view(x, VIEW1, generator), self.view(x, VIEW2, generator)

    def view(self, x: torch.Tensor, spec: ViewSpec, generator: torch.Generator) -> torch.Tensor:
        """One augmented, normalised view of a float batch in [0, 1]."""
        b = x.shape[0]

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator).to(x.device, non_blocking=True)

        x = self.resized_crop_flip(x, generator)
        x = self.color_jitter(x, rand(b) < 0.8, rand(b, 4))
        gray = rand(b) < 0.2
        x = torch.where(gray.view(b, 1, 1, 1), _grayscale(x).expand_as(x), x)
        x = self.blur(x, rand(b) < spec.blur_p, rand(b))
        if spec.solarize_p > 0:
            sol = (rand(b) < spec.solarize_p).view(b, 1, 1, 1)
            x = torch.where(sol & (x >= 0.5), 1.0 - x, x)
        return normalize(x)

    def resized_crop_flip(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """RandomResizedCrop (torchvision's sampling, 10 tries, centre fallback) + horizontal flip 0.5."""
        b = x.shape[0]
        tries = 10
        area = torch.empty(b, tries).uniform_(self.min_crop_scale, 1.0, generator=generator)
        log_r = torch.empty(b, tries).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
        ratio = torch.exp(log_r)
        w = torch.sqrt(area * ratio)
        h = torch.sqrt(area / ratio)
        ok = (w <= 1.0) & (h <= 1.0)
        first = torch.argmax(ok.int(), dim=1)
        any_ok = ok.any(dim=1)
        rows = torch.arange(b)
        w = torch.where(any_ok, w[rows, first], torch.ones(b))
        h = torch.where(any_ok, h[rows, first], torch.ones(b))
        cx = (torch.rand(b, generator=generator) * (1 - w) + w / 2) * 2 - 1
        cy = (torch.rand(b, generator=generator) * (1 - h) + h / 2) * 2 - 1
        flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = w * flip
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = h
        theta[:, 1, 2] = cy
        theta = theta.to(x.device, non_blocking=True)
        size = (b, x.shape[1], self.image_size, self.image_size)
        grid = F.affine_grid(theta, list(size), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def color_jitter(self, x: torch.Tensor, apply: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast, saturation, hue with per-image factors, applied where ``apply``."""
        b = x.shape[0]
        bri, con, sat, hue = self.jitter
        view = (b, 1, 1, 1)
        out = x * (1 + bri * (2 * u[:, 0] - 1)).view(view)
        out = out.clamp(0, 1)
        mean = _grayscale(out).mean(dim=(2, 3), keepdim=True)
        out = ((out - mean) * (1 + con * (2 * u[:, 1] - 1)).view(view) + mean).clamp(0, 1)
        g = _grayscale(out)
        out = ((out - g) * (1 + sat * (2 * u[:, 2] - 1)).view(view) + g).clamp(0, 1)
        out = _hue_rotate(out, hue * (2 * u[:, 3] - 1)).clamp(0, 1)
        return torch.where(apply.view(view), out, x)

    def blur(self, x: torch.Tensor, apply: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur, one grouped convolution for the whole batch; identity where not ``apply``."""
        b, c, hgt, wid = x.shape
        k = self.blur_kernel
        lo, hi = self.blur_sigma
        sigma = (lo + (hi - lo) * u).to(x.device)
        pos = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
        kern = torch.exp(-(pos.view(1, k) ** 2) / (2 * sigma.view(b, 1) ** 2))
        kern = kern / kern.sum(dim=1, keepdim=True)
        delta = (pos == 0).to(x.dtype).view(1, k).expand(b, k)
        kern = torch.where(apply.view(b, 1), kern, delta)
        kern = kern.repeat_interleave(c, dim=0)
        pad = k // 2
        y = x.reshape(1, b * c, hgt, wid)
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), kern.view(b * c, 1, 1, k), groups=b * c)
        y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), kern.view(b * c, 1, k, 1), groups=b * c)
        return y.view(b, c, hgt, wid)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    r, g, b = _LUMA
    return (r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]).contiguous()


def _hue_rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``turns`` (fraction of a full turn, per image) in YIQ space."""
    to_yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    angle = 2 * math.pi * turns.to(x.device, x.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    b = x.shape[0]
    rot = torch.zeros(b, 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1] = cos
    rot[:, 1, 2] = -sin
    rot[:, 2, 1] = sin
    rot[:, 2, 2] = cos
    mat = from_yiq @ rot @ to_yiq  # (b, 3, 3)
    return torch.einsum("bij,bjhw->bihw", mat, x)
