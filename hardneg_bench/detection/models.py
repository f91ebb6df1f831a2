"""Detectors for transfer, as MoCo's detectron2 configs define them, built from torchvision parts.

Sources (read, not copied): facebookresearch/moco@132aea9 ``detection/configs/`` (``MOCO`` below)
and ``detection/train_net.py``; the detectron2 defaults those configs inherit,
facebookresearch/detectron2@02b5c4e ``detectron2/config/defaults.py`` (``D2`` below, with line
numbers). ``Base-RCNN-C4-BN.yaml`` has no ``_BASE_``: what it does not set is detectron2's default.

* ``c4``: Faster / Mask R-CNN R50-C4 (:mod:`.c4`), the model of MoCo's VOC and COCO configs.
* ``fpn``: Faster / Mask / Keypoint R-CNN R50-FPN, torchvision's ``*rcnn_resnet50_fpn`` construction
  (``weights=None, weights_backbone=None``: plain BatchNorm, all five stages trainable) with its
  own RPN and RoI settings; only the input fields and ``num_classes`` of the spec apply.

Normalisation: the configs' ``RESNETS.NORM: naiveSyncBN`` and ``BACKBONE.FREEZE_AT: 0`` (Base-RCNN-C4-BN.yaml)
make every BatchNorm a trained one whose statistics come from the batch; on one process that is
``nn.BatchNorm2d`` in training mode, which every model here has. Several processes synchronise
them as pretraining does (:func:`hardneg_bench.distributed.prepare`).

Not the model's, left to the fine-tuning that uses it: ``TEST.PRECISE_BN`` (Base-RCNN-C4-BN.yaml:
enabled; D2 l. 622: 200 iterations) recomputes the BatchNorm statistics before each evaluation,
``INPUT.RANDOM_FLIP`` (D2 l. 68) flips training images horizontally, and the solver settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ..config import ConfigError
from ..models.backbones import ScaledResNet
from .c4 import C4Backbone, build_c4

ARCHS = ("c4", "fpn")
TASKS = ("box", "mask", "keypoint")
VOC_MIN_SIZE_TRAIN = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
"""MOCO pascal_voc_R_50_C4_24k.yaml ``INPUT.MIN_SIZE_TRAIN``."""
COCO_MIN_SIZE_TRAIN = (640, 672, 704, 736, 768, 800)
"""MOCO coco_R_50_C4_2x.yaml ``INPUT.MIN_SIZE_TRAIN``."""


@dataclass(frozen=True)
class DetectorSpec:
    """A detector; the defaults are MOCO pascal_voc_R_50_C4_24k_moco.yaml resolved through its bases."""

    arch: str = "c4"
    """``c4`` (Base-RCNN-C4-BN.yaml: ``Res5ROIHeadsExtraNorm``) or ``fpn``."""
    task: str = "box"
    """``box`` (VOC config: ``MASK_ON: False``), ``mask`` (COCO config: ``MASK_ON: True``) or
    ``keypoint`` (FPN only)."""
    num_classes: int = 20
    """Foreground classes: pascal_voc_R_50_C4_24k.yaml ``ROI_HEADS.NUM_CLASSES``."""
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    """Bottleneck blocks of res2..res5: ResNet-50 (D2 l. 484 ``RESNETS.DEPTH: 50``; detectron2
    modeling/backbone/resnet.py l. 646-652)."""
    width: float = 1.0
    """Multiplies the stage widths (D2 l. 495, 506: 64 bottleneck and 256 output channels in res2)
    and the head widths; below 1 only for CPU tests (:func:`tiny`)."""
    min_size_train: tuple[int, ...] = VOC_MIN_SIZE_TRAIN
    """Shorter side in training, one drawn per image (D2 l. 59 ``MIN_SIZE_TRAIN_SAMPLING: choice``)."""
    max_size_train: int = 1333
    """D2 l. 61 ``INPUT.MAX_SIZE_TRAIN``."""
    min_size_test: int = 800
    """pascal_voc_R_50_C4_24k.yaml and coco_R_50_C4_2x.yaml ``INPUT.MIN_SIZE_TEST``."""
    max_size_test: int = 1333
    """D2 l. 65 ``INPUT.MAX_SIZE_TEST``."""
    pixel_mean: tuple[float, float, float] = (123.675, 116.280, 103.530)
    """RGB, 0-255: the moco configs' ``MODEL.PIXEL_MEAN`` with ``INPUT.FORMAT: "RGB"`` (detectron2's
    default is BGR, D2 l. 42, 84)."""
    pixel_std: tuple[float, float, float] = (58.395, 57.120, 57.375)
    """RGB, 0-255: the moco configs' ``MODEL.PIXEL_STD``."""
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    """On res4 alone (D2 l. 180 ``ANCHOR_GENERATOR.SIZES``, l. 205 ``RPN.IN_FEATURES: ["res4"]``)."""
    anchor_aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Height / width: D2 l. 187."""
    rpn_iou_thresholds: tuple[float, float] = (0.3, 0.7)
    """Background below the first, foreground from the second: D2 l. 218."""
    rpn_batch_size_per_image: int = 256
    """D2 l. 221."""
    rpn_positive_fraction: float = 0.5
    """D2 l. 223."""
    rpn_pre_nms_topk_train: int = 12000
    """D2 l. 234."""
    rpn_pre_nms_topk_test: int = 6000
    """Base-RCNN-C4-BN.yaml ``RPN.PRE_NMS_TOPK_TEST`` (= D2 l. 235)."""
    rpn_post_nms_topk_train: int = 2000
    """D2 l. 242."""
    rpn_post_nms_topk_test: int = 1000
    """Base-RCNN-C4-BN.yaml ``RPN.POST_NMS_TOPK_TEST`` (= D2 l. 243)."""
    rpn_nms_thresh: float = 0.7
    """D2 l. 245."""
    roi_batch_size_per_image: int = 512
    """D2 l. 269."""
    roi_positive_fraction: float = 0.25
    """D2 l. 271."""
    roi_iou_threshold: float = 0.5
    """Foreground from it, background below it: D2 l. 263."""
    bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    """D2 l. 302."""
    pooler_resolution: int = 14
    """RoIAlign output side on res4, before res5 halves it: D2 l. 305."""
    pooler_sampling_ratio: int = 0
    """Adaptive sampling: D2 l. 306 (``POOLER_TYPE: ROIAlignV2``, l. 308, is ``aligned=True``)."""
    score_thresh_test: float = 0.05
    """D2 l. 280."""
    nms_thresh_test: float = 0.5
    """D2 l. 283."""
    detections_per_image: int = 100
    """D2 l. 614 ``TEST.DETECTIONS_PER_IMAGE``."""
    mask_conv_dim: int = 256
    """Channels of the C4 mask head's deconvolution: D2 l. 354 (``NUM_CONV: 0``, l. 353)."""
    num_keypoints: int = 17
    """D2 l. 372 (COCO's person keypoints)."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"detector arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        if self.task not in TASKS:
            raise ConfigError(f"detector task {self.task!r} is not one of {', '.join(TASKS)}")
        if (self.arch, self.task) == ("c4", "keypoint"):
            raise ConfigError("detector task 'keypoint' needs arch 'fpn': detectron2's C4 RoI heads have no keypoint head")


VOC_R50_C4 = DetectorSpec()
"""MOCO pascal_voc_R_50_C4_24k_moco.yaml."""
COCO_R50_C4 = DetectorSpec(task="mask", num_classes=80, min_size_train=COCO_MIN_SIZE_TRAIN)
"""MOCO coco_R_50_C4_2x_moco.yaml: ``MASK_ON: True``, D2 l. 255 ``NUM_CLASSES: 80``."""


def tiny(spec: DetectorSpec, image_size: int = 64) -> DetectorSpec:
    """``spec`` on a ResNet with one block per stage at 1/16 width and ``image_size`` px inputs:
    the same construction, small enough for CPU tests."""
    return replace(spec, blocks=(1, 1, 1, 1), width=0.0625, min_size_train=(image_size,), max_size_train=image_size, min_size_test=image_size, max_size_test=image_size)


class TrainTestResize(GeneralizedRCNNTransform):
    """torchvision's resize-and-normalise with detectron2's separate training and test sizes.
    departs: torchvision's transform tests at its last training size and one max size; this swaps
    both when the model switches mode. Its inputs are RGB in 0-1, so the 0-255 mean and std are
    divided by 255 (the same normalisation)."""

    def __init__(self, spec: DetectorSpec, size_divisible: int) -> None:
        mean, std = [m / 255 for m in spec.pixel_mean], [s / 255 for s in spec.pixel_std]
        super().__init__(spec.min_size_train, spec.max_size_train, mean, std, size_divisible)
        self.sizes = {True: (spec.min_size_train, spec.max_size_train), False: ((spec.min_size_test,), spec.max_size_test)}

    def train(self, mode: bool = True) -> TrainTestResize:
        self.min_size, self.max_size = self.sizes[mode]
        return super().train(mode)


def _scaled(channels: int, width: float) -> int:
    return int(channels * width)


def _fpn(trunk: ResNet, spec: DetectorSpec) -> GeneralizedRCNN:
    """torchvision's ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` /
    ``keypointrcnn_resnet50_fpn`` construction (``_resnet_fpn_extractor`` with all five stages
    trainable, then the detector's default heads), with its widths scaled by ``spec.width``."""
    w = spec.width
    stage_channels = [layer[-1].conv3.out_channels for layer in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)]
    fpn_channels = _scaled(256, w)
    backbone = BackboneWithFPN(trunk, {f"layer{i + 1}": str(i) for i in range(4)}, stage_channels, fpn_channels, LastLevelMaxPool())
    representation = _scaled(1024, w)
    box = {"box_head": TwoMLPHead(fpn_channels * 7 * 7, representation), "box_predictor": FastRCNNPredictor(representation, spec.num_classes + 1)}
    if spec.task == "box":
        return FasterRCNN(backbone, **box)
    if spec.task == "mask":
        mask_dim = _scaled(256, w)
        return MaskRCNN(backbone, **box, mask_head=MaskRCNNHeads(fpn_channels, [mask_dim] * 4, 1), mask_predictor=MaskRCNNPredictor(mask_dim, mask_dim, spec.num_classes + 1))
    keypoint_dim = _scaled(512, w)
    return KeypointRCNN(
        backbone, **box, keypoint_head=KeypointRCNNHeads(fpn_channels, [keypoint_dim] * 8), keypoint_predictor=KeypointRCNNPredictor(keypoint_dim, spec.num_keypoints)
    )


def build_detector(spec: DetectorSpec) -> GeneralizedRCNN:
    """The detector of ``spec``, randomly initialised (load an encoder with :func:`load_encoder`);
    every parameter trainable, every BatchNorm a plain one."""
    # ResNet with STRIDE_IN_1X1: False (the moco configs): torchvision's Bottleneck strides its 3x3
    # convolution, as detectron2's BottleneckBlock then does (resnet.py l. 147).
    trunk = ScaledResNet(Bottleneck, list(spec.blocks), spec.width, nn.BatchNorm2d)
    if spec.arch == "c4":
        # departs: detectron2 pads a C4 batch to no multiple (backbone.py l. 33-41: size_divisibility
        # 0); torchvision infers the anchors' stride as image size // feature size, which is 16
        # only on sizes divisible by 16.
        return build_c4(trunk, TrainTestResize(spec, 16), spec, _scaled(spec.mask_conv_dim, spec.width))
    model = _fpn(trunk, spec)
    model.transform = TrainTestResize(spec, 32)  # torchvision's FPN padding
    return model


@dataclass(frozen=True)
class EncoderLoad:
    missing: tuple[str, ...]
    """Backbone buffers the encoder lacks that are no weights (BatchNorm's ``num_batches_tracked``)."""
    unexpected: tuple[str, ...]
    """Encoder keys outside the backbone (e.g. a classifier's ``fc.*``), not loaded."""


def _trunk_parts(detector: GeneralizedRCNN) -> dict[str, nn.Module]:
    """The detector's modules that were the ResNet's, by torchvision's names."""
    if isinstance(detector.backbone, C4Backbone):
        return {**dict(detector.backbone.named_children()), "layer4": detector.roi_heads.box_head.layer4}
    return dict(detector.backbone.body.named_children())


def _describe(parts: dict[str, nn.Module]) -> str:
    blocks = tuple(len(parts[f"layer{i}"]) for i in range(1, 5))
    channels = parts["layer4"][-1].conv3.out_channels
    return "a ResNet-50" if (blocks, channels) == ((3, 4, 6, 3), 2048) else f"a ResNet with {blocks} blocks and {channels} channels"


def load_encoder(detector: GeneralizedRCNN, encoder: dict[str, torch.Tensor]) -> EncoderLoad:
    """Copies a torchvision-named ResNet state dict (``conv1``, ``bn1``, ``layer1``-``layer4``, as our
    encoders and torchvision's ResNets are named) into the detector's backbone, and res5 head for
    C4: what facebookresearch/moco@132aea9 detection/convert-pretrain-to-detectron2.py renames for
    detectron2 (stem, res2-res5). MoCo's extra norm, the RPN and the heads keep their
    initialisation. A CIFAR stem, another architecture or a missing weight is a ConfigError."""
    parts = _trunk_parts(detector)
    target = {f"{name}.{key}": value for name, module in parts.items() for key, value in module.state_dict().items()}
    stem = encoder.get("conv1.weight")
    if stem is not None and stem.shape[-2:] == (3, 3):
        raise ConfigError("encoder has the CIFAR stem (3x3 conv1, no max-pool): a detection backbone needs the ImageNet stem (7x7 stride-2 conv1, max-pool)")
    missing = sorted(k for k in target if k not in encoder)
    weights_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if weights_missing:
        raise ConfigError(f"encoder lacks {len(weights_missing)} weights of the detector's backbone ({_describe(parts)}), first {weights_missing[0]}")
    for key, value in target.items():
        if key in encoder and encoder[key].shape != value.shape:
            raise ConfigError(f"encoder is not {_describe(parts)}: {key} has shape {tuple(encoder[key].shape)}, the detector's backbone {tuple(value.shape)}")
    for name, module in parts.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in encoder.items() if k.startswith(prefix) and k in target}, strict=False)
    return EncoderLoad(tuple(missing), tuple(sorted(k for k in encoder if k not in target)))
