"""solo-learn (vturrisi/solo-learn): PyTorch Lightning checkpoints of its methods.

Layout, from vturrisi/solo-learn@c980e9e solo/methods/base.py ``BaseMethod.__init__``: the
backbone is ``self.backbone`` (a torchvision-named ResNet with ``fc = nn.Identity()``), so the
Lightning ``state_dict`` holds ``backbone.<torchvision name>``; besides it ``classifier.*`` (the
online linear probe) and, per method, ``projector.*``, ``predictor.*``, ``momentum_backbone.*``,
``momentum_projector.*``, ``prototypes.*``, ``queue``/``queue_ptr`` (mocov2plus, nnclr ...), all
ignored (the projectors differ per method: none is imported as our head). Inputs: ImageNet
normalisation, solo-learn's default for ImageNet(-100) and custom datasets.

Only the ImageNet stem is imported. For CIFAR solo-learn swaps conv1 for
``Conv2d(3, 64, kernel_size=3, stride=1, padding=2)`` and maxpool for Identity: padding 2, where
our CIFAR stem pads by 1, so the weights would load but the features differ (34x34 maps on 32-px
images). Such a file (conv1 3x3) is refused in one line rather than imported unfaithfully; its
CIFAR transforms also use CIFAR statistics, which the file cannot tell.
"""

from __future__ import annotations

from .base import Format, LayoutError, Rule, record_of, resnet_spec, split_keys, state_dict_in

NAME = "solo-learn"
SOURCE = "vturrisi/solo-learn@c980e9e solo/methods/base.py"
RULES = (
    Rule("backbone.fc.", None, "an fc left in the backbone"),
    Rule("backbone.", "backbone"),
    Rule("momentum_backbone.", None, "the momentum backbone"),
    Rule("momentum_projector.", None, "the momentum projector"),
    Rule("projector.", None, "the method's projector"),
    Rule("predictor.", None, "the method's predictor"),
    Rule("prototypes.", None, "SwAV/DeepClusterV2 prototypes"),
    Rule("classifier.", None, "the online linear classifier"),
    Rule("queue", None, "the queue"),
    Rule("queue_ptr", None, "the queue pointer"),
)


def _state_dict(payload):
    return payload.get("state_dict") if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict) else payload


def detect(payload) -> bool:
    sd = _state_dict(payload)
    return isinstance(sd, dict) and "backbone.conv1.weight" in sd


def read(payload) -> tuple[dict, str]:
    sd = state_dict_in(_state_dict(payload), None)
    backbone = split_keys(sd, RULES, NAME).get("backbone", {})
    spec = resnet_spec(backbone)
    if spec.stem == "cifar":
        raise LayoutError("key 'backbone.conv1.weight' is solo-learn's 3x3 CIFAR stem, which pads by 2 where ours pads by 1: the features would differ, not imported")
    return record_of(spec, backbone, None, "imagenet"), "imagenet"


FORMAT = Format(NAME, SOURCE, detect, read)
