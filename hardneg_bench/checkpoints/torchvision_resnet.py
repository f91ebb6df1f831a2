"""A plain torchvision ResNet state dict (``resnet18``/``resnet50``, with or without ``fc``).

Layout: pytorch/vision torchvision/models/resnet.py ``ResNet`` (``conv1``, ``bn1``,
``layer1``-``layer4``, ``fc``), the state dict torchvision's own weights ship as; ``fc.*`` (the
classifier) is dropped. The stem comes from conv1's kernel (3x3: the CIFAR variant with the
max-pool removed, as our ``cifar`` stem). Inputs: ImageNet normalisation (torchvision's
reference models). Read from ``.pth`` or ``.safetensors``.
"""

from __future__ import annotations

from .base import Format, record_of, resnet_spec, state_dict_in

NAME = "torchvision"
SOURCE = "pytorch/vision torchvision/models/resnet.py ResNet"
IGNORED = "fc."
"""The classifier."""


def detect(payload) -> bool:
    return isinstance(payload, dict) and "conv1.weight" in payload and "layer1.0.conv1.weight" in payload


def read(payload) -> tuple[dict, str]:
    sd = state_dict_in(payload, None)
    backbone = {k: (k, v) for k, v in sd.items() if not k.startswith(IGNORED)}
    return record_of(resnet_spec(backbone), backbone, None, "imagenet"), "imagenet"


FORMAT = Format(NAME, SOURCE, detect, read)
