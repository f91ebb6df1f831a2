"""Testing a fine-tuned detector as MoCo's ``train_net.py`` does (facebookresearch/moco@132aea9
detection/train_net.py lines 40-49): VOC 2007 test with detectron2's ``PascalVOCDetectionEvaluator``
(:mod:`.voc_eval`), COCO val2017 with its ``COCOEvaluator`` (:mod:`.coco_eval`: boxes, and masks
or keypoints when the detector predicts them).

One image at a time (detectron2's test loader: batch 1 per process), at the test size of the
detector's transform. With several processes each tests a contiguous share of the images
(detectron2 ``InferenceSampler``); process 0 gathers them in order, evaluates and hands every
process the metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .. import distributed
from ..engine.runtime import autocast
from .coco_eval import CocoImagePredictions, coco_category_ids, coco_results, evaluate_coco_results
from .datasets import CocoDetection, VocDetection
from .voc_eval import ImageDetections, VocImageTruth, evaluate_voc

VOC_TEST_YEAR = 2007
"""voc0712 is tested on VOC 2007 test: the 11-point metric (detectron2's evaluator for 2007)."""
MASK_THRESHOLD = 0.5
"""A pixel belongs to a predicted mask when its probability is at least this: detectron2's
``paste_masks_in_image`` threshold (facebookresearch/detectron2@02b5c4e
detectron2/layers/mask_ops.py, called with 0.5 by modeling/postprocessing.py)."""
KEYPOINT_OFFSET = 0.5
"""Our keypoint targets carry detectron2's +0.5 (datasets.py); its evaluator takes it off the
predictions before writing them (evaluation/coco_evaluation.py lines 444-448)."""


def shard(size: int, rank: int, world: int) -> range:
    """Process ``rank``'s images: detectron2 ``InferenceSampler._get_local_indices``, contiguous
    shares of at most ceil(size / world)."""
    share = (size - 1) // world + 1
    return range(min(share * rank, size), min(share * (rank + 1), size))


def _voc_image(target: dict, output: dict) -> tuple[VocImageTruth, ImageDetections]:
    truth = VocImageTruth(target["boxes"].numpy().astype(np.float64), target["labels"].numpy() - 1, target["difficult"].numpy())
    return truth, ImageDetections(output["boxes"].numpy(), output["scores"].numpy(), output["labels"].numpy() - 1)


def _coco_image(target: dict, output: dict, category_ids: np.ndarray) -> dict[str, list[dict]]:
    """The image's COCO result records by IoU type: ``bbox``, and ``segm`` / ``keypoints`` when
    the detector predicts masks / keypoints."""
    masks = keypoints = None
    if "masks" in output:
        masks = (output["masks"][:, 0] >= MASK_THRESHOLD).numpy().astype(np.uint8)
    if "keypoints" in output:
        keypoints = torch.cat([output["keypoints"][..., :2] - KEYPOINT_OFFSET, output["keypoints_scores"][..., None]], dim=-1).numpy()
    image = CocoImagePredictions(int(target["image_id"]), output["boxes"].numpy(), output["scores"].numpy(), category_ids[output["labels"].numpy() - 1], masks, keypoints)
    types = ["bbox"] + (["segm"] if masks is not None else []) + (["keypoints"] if keypoints is not None else [])
    return {iou_type: coco_results([image], iou_type) for iou_type in types}


@torch.no_grad()
def _predict(model: nn.Module, data, device: torch.device, amp_dtype: torch.dtype | None) -> list[Any]:
    """This process's share of the test images, each as its evaluator's input."""
    category_ids = coco_category_ids(data.coco) if isinstance(data, CocoDetection) else None
    out = []
    for index in shard(len(data), distributed.rank(), distributed.world_size()):
        image, target = data[index]
        with autocast(amp_dtype, device):
            (output,) = model([image.to(device).float().div_(255)])
        output = {k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in output.items()}
        out.append(_voc_image(target, output) if category_ids is None else _coco_image(target, output, category_ids))
    return out


def _metrics(data, images: list[Any]) -> dict:
    """The evaluator's figures in percent (COCO's mask and keypoint figures prefixed ``mask_`` and
    ``keypoint_``; None where pycocotools reports -1)."""
    if isinstance(data, VocDetection):
        truths, detections = zip(*images) if images else ((), ())
        return evaluate_voc(truths, detections, data.classes, VOC_TEST_YEAR).as_dict()
    metrics: dict = {}
    for iou_type, prefix in (("bbox", ""), ("segm", "mask_"), ("keypoints", "keypoint_")):
        if images and iou_type in images[0]:
            results = [record for image in images for record in image[iou_type]]
            metrics.update({prefix + k: v for k, v in evaluate_coco_results(data.coco, results, iou_type).as_dict().items()})
    return metrics


def evaluate_detector(model: nn.Module, data, device: torch.device, amp_dtype: torch.dtype | None) -> dict:
    """The detector's figures on the test split ``data`` (VOC or COCO), in every process."""
    model.eval()
    images = _predict(model, data, device, amp_dtype)
    if distributed.world_size() == 1:
        return _metrics(data, images)
    shares = [None] * distributed.world_size() if distributed.is_main() else None
    dist.gather_object(images, shares, dst=0)
    metrics = [_metrics(data, [image for share in shares for image in share]) if distributed.is_main() else None]
    dist.broadcast_object_list(metrics, src=0)
    return metrics[0]
