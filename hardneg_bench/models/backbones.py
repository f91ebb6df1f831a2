"""Backbones: CIFAR-variant and torchvision ResNets, and a tiny CNN for CPU runs.

Every backbone maps images to pooled features (no classifier) and says its feature width in
``feature_dim``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from ..config import ConfigError

RESNETS = {"resnet18": models.resnet18, "resnet50": models.resnet50}
BACKBONES = ("tiny", *RESNETS)


class TinyConvNet(nn.Module):
    """Four 3x3 conv-BN-ReLU blocks (16-32-64-128 channels, the last three with stride 2) and a
    global average pool: small enough to pretrain on a laptop CPU in a minute."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        channels = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def resnet(name: str, stem: str) -> nn.Module:
    """A torchvision ResNet without its classifier. The ``cifar`` stem replaces the 7x7 stride-2
    convolution and the max-pool by one 3x3 stride-1 convolution, as the CIFAR variants of SimCLR,
    HCL/DCL and MoCo's CIFAR demo do for 32-96 px images."""
    net = RESNETS[name]()
    if stem == "cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net


def build_backbone(name: str, stem: str, image_size: int) -> nn.Module:
    """The backbone ``name``; stem ``auto`` picks the CIFAR stem for images up to 96 px."""
    if name == "tiny":
        return TinyConvNet()
    if name not in RESNETS:
        raise ConfigError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    if stem == "auto":
        stem = "cifar" if image_size <= 96 else "imagenet"
    return resnet(name, stem)
