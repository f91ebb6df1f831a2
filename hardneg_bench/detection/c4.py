"""The R50-C4 detector of MoCo's detection configs, from torchvision's detection parts.

detectron2's C4 model (facebookresearch/detectron2@02b5c4e detectron2/modeling/roi_heads/roi_heads.py
``Res5ROIHeads``, l. 342-526): the backbone is the ResNet up to res4 (stride 16); every region is
cropped from res4 by RoIAlign to 14x14, then res5 (first block stride 2: 7x7) computes its features,
which the box predictor reads averaged over space and the mask head reads as they are (box and
mask share the crop and res5). MoCo adds one BatchNorm after res5
(facebookresearch/moco@132aea9 detection/train_net.py ``Res5ROIHeadsExtraNorm``).

Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1``-``layer4``), so an
encoder's state dict maps onto ``backbone.*`` and ``roi_heads.box_head.layer4.*`` by prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss, maskrcnn_inference, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import ResNet
from torchvision.ops import RoIAlign

if TYPE_CHECKING:
    from .models import DetectorSpec

STRIDE = 16
"""res4's stride: ``pooler_scales = 1 / stride`` of the one input feature (roi_heads.py l. 393)."""


class C4Backbone(nn.Module):
    """Stem, res2, res3, res4 of a torchvision ResNet (detectron2 ``RESNETS.OUT_FEATURES: ["res4"]``,
    config/defaults.py l. 485): one feature map of stride 16."""

    def __init__(self, trunk: ResNet) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3 = trunk.layer1, trunk.layer2, trunk.layer3
        self.out_channels = trunk.layer3[-1].conv3.out_channels
        """Read by torchvision's detectors; 1024 for ResNet-50."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


class Res5Head(nn.Module):
    """res5 (torchvision's ``layer4``; its first block has stride 2 on the 3x3 convolution, as
    detectron2's ``stride_per_block=[2, 1, 1]`` with ``STRIDE_IN_1X1: False``, roi_heads.py l. 445
    and the moco configs) and MoCo's extra BatchNorm on its output (train_net.py l. 34-37)."""

    def __init__(self, layer4: nn.Sequential, norm: nn.Module) -> None:
        super().__init__()
        self.layer4 = layer4
        self.norm = norm
        self.out_channels = layer4[-1].conv3.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.layer4(x))


class C4RoIAlign(RoIAlign):
    """detectron2's ``ROIAlignV2`` (``aligned=True``, poolers.py l. 170-173) on the one feature map.
    departs: torchvision's ``MultiScaleRoIAlign`` has no ``aligned`` option and infers the scale
    from the padded image; this crops with ``aligned=True`` and the fixed scale 1/16, as detectron2."""

    def forward(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        (feature,) = features.values()
        return super().forward(feature, boxes)


class Res5RoIHeads(RoIHeads):
    """torchvision's RoIHeads (sampling, losses, post-processing) with detectron2's Res5ROIHeads
    flow: res5 runs once per region and its output feeds both the box predictor (averaged over
    space, l. 480) and, in training, the mask predictor on the foreground regions' rows (l. 485-495:
    the BatchNorm statistics of res5 are those of all sampled regions, as there). At test time the
    mask head sees res5 recomputed on the predicted boxes (``forward_with_given_boxes``, l. 521-524).
    Keypoints are not supported: detectron2 asserts ``not cfg.MODEL.KEYPOINT_ON`` here (l. 397)."""

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        res5 = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(res5.mean(dim=(2, 3)))
        if self.training:
            # departs: torchvision's losses use smooth L1 with beta 1/9; detectron2's SMOOTH_L1_BETA
            # is 0 (plain L1) for the RPN and the box head (config/defaults.py l. 230, 304).
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
            if self.mask_predictor is not None:
                foreground = [image_labels > 0 for image_labels in labels]
                losses["loss_mask"] = maskrcnn_loss(
                    self.mask_predictor(res5[torch.cat(foreground)]),
                    [p[fg] for p, fg in zip(proposals, foreground)],
                    [t["masks"] for t in targets],
                    [t["labels"] for t in targets],
                    [m[fg] for m, fg in zip(matched_idxs, foreground)],
                )
            return [], losses
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        result = [{"boxes": b, "labels": c, "scores": s} for b, c, s in zip(boxes, labels, scores)]
        if self.mask_predictor is not None:
            mask_logits = self.mask_predictor(self.box_head(self.box_roi_pool(features, boxes, image_shapes)))
            for detections, masks in zip(result, maskrcnn_inference(mask_logits, labels)):
                detections["masks"] = masks
        return result, {}


def _detectron2_init(box_predictor: FastRCNNPredictor, mask_predictor: MaskRCNNPredictor | None) -> None:
    """detectron2's initialisation of the predictors (fast_rcnn.py l. 241-244: class scores
    N(0, 0.01), box deltas N(0, 0.001); mask_head.py l. 264-269: the deconvolution MSRA-filled, as
    torchvision already does, the mask logits N(0, 0.001)); biases 0."""
    layers = [(box_predictor.cls_score, 0.01), (box_predictor.bbox_pred, 0.001)]
    if mask_predictor is not None:
        layers.append((mask_predictor.mask_fcn_logits, 0.001))
        nn.init.zeros_(mask_predictor.conv5_mask.bias)
    for layer, std in layers:
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)


def build_c4(trunk: ResNet, transform: GeneralizedRCNNTransform, spec: DetectorSpec, head_width: int) -> GeneralizedRCNN:
    """The C4 detector of ``spec`` on ``trunk`` (whose BatchNorm layers it keeps, trainable) with
    ``head_width`` channels in the mask head's deconvolution."""
    backbone = C4Backbone(trunk)
    # departs: torchvision's anchors are rounded to integers (detectron2's are not,
    # anchor_generator.py l. 181); sizes and aspect ratios (h/w) are the config's.
    anchors = AnchorGenerator((spec.anchor_sizes,), (spec.anchor_aspect_ratios,))
    rpn = RegionProposalNetwork(
        anchors,
        # StandardRPNHead: a 3x3 convolution keeping the channels (RPN.CONV_DIMS [-1], config/defaults.py l. 247), N(0, 0.01) init
        RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=spec.rpn_iou_thresholds[1],
        bg_iou_thresh=spec.rpn_iou_thresholds[0],
        batch_size_per_image=spec.rpn_batch_size_per_image,
        positive_fraction=spec.rpn_positive_fraction,
        # one feature map: torchvision's per-level pre-NMS top-k is detectron2's per-image one
        pre_nms_top_n={"training": spec.rpn_pre_nms_topk_train, "testing": spec.rpn_pre_nms_topk_test},
        post_nms_top_n={"training": spec.rpn_post_nms_topk_train, "testing": spec.rpn_post_nms_topk_test},
        nms_thresh=spec.rpn_nms_thresh,
    )  # departs: torchvision's RPN losses average over the sampled anchors, detectron2's over 256 per image
    res5 = Res5Head(trunk.layer4, nn.BatchNorm2d(trunk.layer4[-1].conv3.out_channels))
    num_classes = spec.num_classes + 1
    # departs: torchvision counts the background as class 0 and regresses boxes for it too
    # (detectron2: background last, num_classes x 4 box deltas).
    box_predictor = FastRCNNPredictor(res5.out_channels, num_classes)
    # MaskRCNNConvUpsampleHead with NUM_CONV 0 (config/defaults.py l. 353): a 2x2 stride-2 deconvolution to CONV_DIM
    # channels, ReLU, 1x1 logits per class (mask_head.py l. 256-262); 14x14 masks from 7x7 res5.
    mask_predictor = MaskRCNNPredictor(res5.out_channels, head_width, num_classes) if spec.task == "mask" else None
    _detectron2_init(box_predictor, mask_predictor)
    roi_heads = Res5RoIHeads(
        C4RoIAlign((spec.pooler_resolution,) * 2, 1 / STRIDE, spec.pooler_sampling_ratio, aligned=True),
        res5,
        box_predictor,
        fg_iou_thresh=spec.roi_iou_threshold,
        bg_iou_thresh=spec.roi_iou_threshold,
        batch_size_per_image=spec.roi_batch_size_per_image,
        positive_fraction=spec.roi_positive_fraction,
        bbox_reg_weights=spec.bbox_reg_weights,
        score_thresh=spec.score_thresh_test,
        nms_thresh=spec.nms_thresh_test,
        detections_per_img=spec.detections_per_image,
        mask_predictor=mask_predictor,
    )
    return GeneralizedRCNN(backbone, rpn, roi_heads, transform)
