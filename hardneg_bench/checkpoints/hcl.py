"""HCL (joshr17/HCL, image/): the state dict of ``nn.DataParallel(Model)``.

Layout, from joshr17/HCL@7b4647f: image/main.py ``torch.save(model.state_dict(), ...)`` after
``model = nn.DataParallel(Model(feature_dim))``, so keys are ``module.f.<i>...`` and
``module.g.<i>...``; image/model.py ``Model``: ``f`` = Sequential of torchvision ``resnet50()``'s
children without the Linear and the MaxPool, conv1 replaced by a 3x3 stride-1 convolution, so
``f.0`` conv1, ``f.1`` bn1, (``f.2`` relu), ``f.3``-``f.6`` layer1-4, (``f.7`` avgpool); ``g`` =
Linear(2048, 512, bias=False), BatchNorm1d(512), ReLU, Linear(512, 128): our BatchNorm projection
head. Inputs: CIFAR-10 mean and kuangliu's std (image/utils.py ``transforms.Normalize``).

The DCL code (chingyaoc/DCL@7d6345f model.py, main.py) writes the identical layout, so the keys
cannot tell the two apart: detection reports ``hcl``; name ``format="dcl"`` for a DCL file.
"""

from __future__ import annotations

from .base import Format, LayoutError, Rule, linear_head, record_of, resnet_spec, split_keys, state_dict_in

NAME = "hcl"
SOURCE = "joshr17/HCL@7b4647f image/model.py, image/main.py"
NORMALIZATION = "cifar10-kuangliu"
STAGES = {"0": "conv1", "1": "bn1", "3": "layer1", "4": "layer2", "5": "layer3", "6": "layer4"}
"""``f``'s indices: resnet50's children without fc and maxpool (relu at 2 and avgpool at 7 hold no
weights)."""
RULES = (Rule("module.f.", "backbone"), Rule("module.g.", "head"))


def detect(payload) -> bool:
    return isinstance(payload, dict) and "module.f.0.weight" in payload and any(isinstance(k, str) and k.startswith("module.g.") for k in payload)


def _torchvision_name(key: str, file_key: str) -> str:
    index, _, rest = key.partition(".")
    if index not in STAGES:
        raise LayoutError(f"key {file_key!r}: module.f.{index} is not a weighted stage of the HCL/DCL encoder (0, 1, 3-6)")
    return f"{STAGES[index]}.{rest}"


def read_model(payload, name: str) -> tuple[dict, str]:
    parts = split_keys(state_dict_in(payload, None), RULES, name)
    backbone = {_torchvision_name(k, v[0]): v for k, v in parts.get("backbone", {}).items()}
    spec = resnet_spec(backbone)
    head = linear_head(parts.get("head", {}), "0", "3", batchnorm="1")
    return record_of(spec, backbone, head, NORMALIZATION), NORMALIZATION


def read(payload) -> tuple[dict, str]:
    return read_model(payload, NAME)


FORMAT = Format(NAME, SOURCE, detect, read)
