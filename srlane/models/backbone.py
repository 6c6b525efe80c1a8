"""ResNet-18/34/50 backbone in torchvision's parameter layout (``backbone.model.*``)."""
from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from srlane.config import ConfigError

logger = logging.getLogger(__name__)

_ARCHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, channels * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand, as torchvision's ResNet-50 (stride on the 3x3)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, channels * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class ResNet(nn.Module):
    """torchvision-compatible ResNet trunk (no pooling head); returns layer1..layer4 outputs."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        if depth not in _ARCHS:
            raise ValueError(f"backbone depth must be one of {sorted(_ARCHS)}, got {depth}")
        kind, blocks = _ARCHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        layers = []
        for i, n in enumerate(blocks):
            channels = 64 * 2 ** i
            stage = [block(in_channels, channels, 1 if i == 0 else 2)]
            in_channels = channels * block.expansion
            stage += [block(in_channels, channels) for _ in range(n - 1)]
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_channels = tuple(64 * 2 ** i * block.expansion for i in range(4))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class ResNetBackbone(nn.Module):
    """Wraps :class:`ResNet` as ``self.model`` so names read ``backbone.model.*`` as released."""

    def __init__(self, depth: int = 18, pretrained: bool | str | None = False) -> None:
        super().__init__()
        self.model = ResNet(depth)
        self.out_channels = self.model.out_channels
        path = find_pretrained(depth, pretrained)
        if path is not None:
            load_torchvision_weights(self.model, path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x)


BACKBONES = {f"resnet{depth}": depth for depth in _ARCHS}  # model.backbone.type -> ResNet depth


def build_backbone(cfg: Mapping[str, Any], pretrained: bool = True) -> ResNetBackbone:
    """The backbone of ``model.backbone``: ``type`` (a name of BACKBONES) and ``pretrained``;
    ``pretrained=False`` starts from random weights whatever the config says (weights that a
    checkpoint replaces: the ImageNet files are never looked for)."""
    name = cfg.get("type", "resnet18")
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone.type must be one of {', '.join(BACKBONES)}, got {name!r}")
    return ResNetBackbone(BACKBONES[name], cfg.get("pretrained", False) if pretrained else False)


def find_pretrained(depth: int, pretrained: bool | str | None) -> str | None:
    """Resolve ``pretrained`` to a local file, or None (random init, with one warning).

    A string is a path to torchvision-layout weights (must exist); True looks in the torch hub
    cache for ``resnet{depth}-*.pth``. The network is never used.
    """
    if not pretrained:
        return None
    if isinstance(pretrained, (str, os.PathLike)):
        path = os.fspath(pretrained)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model.backbone.pretrained: no such file {path!r}")
        return path
    pattern = os.path.join(torch.hub.get_dir(), "checkpoints", f"resnet{depth}-*.pth")
    found = sorted(glob.glob(pattern))
    if not found:
        logger.warning("ImageNet weights for resnet%d not found (looked for %s); the backbone "
                       "starts from random weights. Put torchvision's file there or set "
                       "model.backbone.pretrained to its path.", depth, pattern)
        return None
    return found[0]


def load_torchvision_weights(model: ResNet, path: str) -> None:
    """Load a torchvision ResNet state dict (its ``fc.*`` classifier is ignored)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: not a torchvision resnet state dict for this depth "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    logger.info("loaded ImageNet backbone weights from %s", path)
