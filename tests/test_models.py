"""Backbones and the projection head."""

import pytest
import torch

from hardneg_bench.config import ConfigError
from hardneg_bench.models import build_backbone, projection_head


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("resnet50", 2048), ("tiny", 128)])
def test_feature_width(name, dim):
    backbone = build_backbone(name, "auto", 32).eval()
    assert backbone.feature_dim == dim
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, dim)


def test_cifar_stem_keeps_resolution_and_imagenet_stem_downsamples():
    cifar = build_backbone("resnet18", "auto", 32)
    imagenet = build_backbone("resnet18", "auto", 224)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, torch.nn.MaxPool2d)
    # the CIFAR stem's first stage sees the full 32x32 map
    seen = {}
    cifar.layer1.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    cifar.eval()(torch.randn(1, 3, 32, 32))
    assert seen["shape"][-2:] == (32, 32)
    assert build_backbone("resnet50", "cifar", 224).conv1.kernel_size == (3, 3)


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown backbone 'vit'"):
        build_backbone("vit", "auto", 32)


def test_projection_head_layers():
    with_bn = projection_head(512, 256, 128, batchnorm=True)
    assert with_bn[0].bias is None and isinstance(with_bn[1], torch.nn.BatchNorm1d)
    without = projection_head(2048, 2048, 128, batchnorm=False)
    assert without[0].bias is not None and not any(isinstance(m, torch.nn.BatchNorm1d) for m in without)
    assert with_bn(torch.randn(4, 512)).shape == (4, 128)
