"""Backbones: CIFAR-variant and torchvision ResNets, and a tiny CNN for CPU runs.

Every backbone maps images to pooled features (no classifier) and says its feature width in
``feature_dim``. ``in_channels`` and ``width`` serve CMC, whose two streams see one and two colour
channels and are half as wide (HobbitLong/CMC@7b227be models/resnet.py, ``ResNetV1``);
``norm_layer`` serves MoCo's split BatchNorm.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ..config import ConfigError

RESNETS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}
BACKBONES = ("tiny", *RESNETS)
NormLayer = Callable[[int], nn.Module]


class TinyConvNet(nn.Module):
    """Four 3x3 conv-BN-ReLU blocks (16-32-64-128 channels at width 1, the last three with stride 2)
    and a global average pool: small enough to pretrain on a laptop CPU in a minute."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        base = max(1, int(16 * width))
        channels = [in_channels, base, 2 * base, 4 * base, 8 * base]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), norm_layer(c_out), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ScaledResNet(ResNet):
    """torchvision's ResNet with every stage's width multiplied by ``width`` (the 64-channel stem
    stays, as in CMC's ResNets), without its classifier."""

    def __init__(self, block, layers, width: float, norm_layer: NormLayer) -> None:
        self.width = width  # read by _make_layer, which ResNet.__init__ calls
        super().__init__(block, layers, norm_layer=norm_layer)
        self.feature_dim = int(512 * width) * block.expansion
        self.fc = nn.Identity()

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        return super()._make_layer(block, int(planes * self.width), blocks, stride, dilate)


def resnet(name: str, stem: str, in_channels: int = 3, width: float = 1.0, norm_layer: NormLayer = nn.BatchNorm2d) -> nn.Module:
    """A ResNet without its classifier. The ``cifar`` stem replaces the 7x7 stride-2 convolution
    and the max-pool by one 3x3 stride-1 convolution, as the CIFAR variants of SimCLR, HCL/DCL and
    MoCo's CIFAR demo do for 32-96 px images."""
    block, layers = RESNETS[name]
    net = ScaledResNet(block, layers, width, norm_layer)
    if stem == "cifar":
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def resolved_stem(stem: str, image_size: int) -> str:
    """The ResNet stem ``stem`` stands for: ``auto`` is the CIFAR stem for images up to 96 px."""
    if stem == "auto":
        return "cifar" if image_size <= 96 else "imagenet"
    return stem


def backbone_stem(backbone: str, stem: str, image_size: int) -> str | None:
    """The stem ``backbone`` is built with: a ResNet's :func:`resolved_stem`; None for the tiny CNN,
    which has one stem whatever the config says."""
    return resolved_stem(stem, image_size) if backbone in RESNETS else None


def build_backbone(name: str, stem: str, image_size: int, in_channels: int = 3, width: float = 1.0, norm_layer: NormLayer = nn.BatchNorm2d) -> nn.Module:
    """The backbone ``name`` (a ResNet with the stem :func:`resolved_stem` picks)."""
    if name == "tiny":
        return TinyConvNet(in_channels, width, norm_layer)
    if name not in RESNETS:
        raise ConfigError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    return resnet(name, resolved_stem(stem, image_size), in_channels, width, norm_layer)
