"""COCO box, mask and keypoint AP with pycocotools' ``COCOeval``, called as detectron2 calls it.

MoCo's COCO numbers come from detectron2's ``COCOEvaluator``
(facebookresearch/moco@132aea9 detection/train_net.py:45-46). ``D2:N`` below is line N of
facebookresearch/detectron2@02b5c4e detectron2/evaluation/coco_evaluation.py. pycocotools' own
``COCOeval`` runs here, as it did for MoCo: detectron2's C++ ``COCOeval_opt`` came later
(detectron2@d4829a6, 2020-06-22; MoCo's detection code is of 2020-03-22).
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

if TYPE_CHECKING:  # pycocotools is the `detection` extra: imported where COCO is evaluated, so the CLI runs without it
    from pycocotools.coco import COCO

IouType = Literal["bbox", "segm", "keypoints"]

_STATS = {
    # COCOeval.summarize's first stats, in its order (D2:337-341): keypoints have no small range
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "segm": ("AP", "AP50", "AP75", "APs", "APm", "APl"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl"),
}


@dataclass(frozen=True)
class CocoImagePredictions:
    """One image's predictions in original image pixels."""

    image_id: int
    """The COCO image id."""
    boxes: np.ndarray
    """(N, 4) XYXY."""
    scores: np.ndarray
    """(N,)"""
    category_ids: np.ndarray
    """(N,) COCO category ids (contiguous label c: ``coco_category_ids(gt)[c]``)."""
    masks: np.ndarray | None = None
    """(N, H, W) binary masks at the image's size, for ``segm``."""
    keypoints: np.ndarray | None = None
    """(N, K, 3) x, y, score in the annotation's pixel convention, for ``keypoints``. detectron2's
    loader adds 0.5 to the annotation (detectron2 data/datasets/coco.py:205-207) and its evaluator
    takes it off again (D2:443-448): a model trained on such inputs subtracts 0.5 first."""

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if (self.boxes.shape, self.scores.shape, self.category_ids.shape) != ((n, 4), (n,), (n,)):
            raise ValueError(f"image {self.image_id}: boxes (N, 4), scores (N,), category_ids (N,)")
        if self.masks is not None and (self.masks.ndim != 3 or len(self.masks) != n):
            raise ValueError(f"image {self.image_id}: masks must be (N, H, W) with N = {n}")
        kps = self.keypoints
        if kps is not None and (kps.ndim != 3 or (kps.shape[0], kps.shape[2]) != (n, 3)):
            raise ValueError(f"image {self.image_id}: keypoints must be (N, K, 3) with N = {n}")


@dataclass(frozen=True)
class CocoMetrics:
    """COCOeval's AP summary in percent; ``None`` where COCOeval reports -1 (no such objects) and
    ``ap_small`` for keypoints, which have no small range (detectron2 reports -1 as NaN, D2:349)."""

    ap: float | None
    ap50: float | None
    ap75: float | None
    ap_small: float | None
    ap_medium: float | None
    ap_large: float | None

    def as_dict(self) -> dict[str, float | None]:
        """detectron2's metric names (D2:338)."""
        return {
            "AP": self.ap,
            "AP50": self.ap50,
            "AP75": self.ap75,
            "APs": self.ap_small,
            "APm": self.ap_medium,
            "APl": self.ap_large,
        }


def coco_category_ids(coco_gt: COCO) -> np.ndarray:
    """The COCO category id of each contiguous class index, as detectron2 numbers the classes:
    the sorted category ids (detectron2 data/datasets/coco.py:81 and 102; D2:230-245 maps back)."""
    return np.array(sorted(coco_gt.getCatIds()), dtype=np.int64)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """XYXY -> COCO's XYWH: width x2 - x1, height y2 - y1, no "+1" (D2:408 through
    detectron2 structures/boxes.py:112-114)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def coco_results(predictions: Sequence[CocoImagePredictions], iou_type: IouType) -> list[dict]:
    """The result records ``COCO.loadRes`` takes, as detectron2's ``instances_to_coco_json``
    (D2:392-451) writes them for ``iou_type``.

    Masks become RLE through ``pycocotools.mask.encode`` (D2:417-420). ``segm`` records carry no
    box, so that COCOeval takes a detection's area from its mask (D2:581-589); ``bbox`` and
    ``keypoints`` records carry the XYWH box, which ``loadRes`` then uses as the detection's area.
    """
    results: list[dict] = []
    for image in predictions:
        if iou_type == "segm" and image.masks is None:
            raise ValueError(f"image {image.image_id}: segm evaluation needs masks")
        if iou_type == "keypoints" and image.keypoints is None:
            raise ValueError(f"image {image.image_id}: keypoint evaluation needs keypoints")
        boxes = xyxy_to_xywh(image.boxes).tolist()
        masks = _rles(image.masks) if iou_type == "segm" else []
        for k in range(len(boxes)):
            record = {
                "image_id": int(image.image_id),
                "category_id": int(image.category_ids[k]),
                "score": float(image.scores[k]),
            }
            if iou_type == "segm":
                record["segmentation"] = masks[k]
            else:
                record["bbox"] = boxes[k]
            if iou_type == "keypoints":
                record["keypoints"] = np.asarray(image.keypoints[k], np.float64).ravel().tolist()
            results.append(record)
    return results


def _rles(masks: np.ndarray) -> list[dict]:
    """(N, H, W) binary masks as N compressed RLEs (D2:417-420 encodes them one at a time)."""
    if not len(masks):
        return []
    import pycocotools.mask as mask_util

    return mask_util.encode(np.asfortranarray(np.transpose(masks, (1, 2, 0)), dtype=np.uint8))


def _load_results(coco_gt: COCO, results: list[dict]) -> COCO:
    """``coco_gt.loadRes(results)``; an empty result set (which ``loadRes`` cannot take: it reads
    ``results[0]``) becomes a result object without annotations, so that every object is missed."""
    from pycocotools.coco import COCO

    if results:
        return coco_gt.loadRes(results)
    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    empty.createIndex()
    return empty


def evaluate_coco(
    coco_gt: COCO, predictions: Sequence[CocoImagePredictions], iou_type: IouType
) -> CocoMetrics:
    """AP, AP50, AP75, APs, APm, APl in percent for ``iou_type`` ("bbox", "segm", "keypoints").

    As detectron2's ``_evaluate_predictions_on_coco`` (D2:567-631) with its defaults: all of
    ``coco_gt``'s images, COCOeval's own parameters (max detections 1, 10, 100; 20 for keypoints
    with the COCO OKS sigmas), then ``evaluate``, ``accumulate``, ``summarize``. With no
    predictions at all detectron2 skips COCOeval and reports NaN (D2:275-276, 343-345); here
    COCOeval runs on the empty set and gives AP 0 wherever there are objects.
    """
    return evaluate_coco_results(coco_gt, coco_results(predictions, iou_type), iou_type)


def evaluate_coco_results(coco_gt: COCO, results: list[dict], iou_type: IouType) -> CocoMetrics:
    """:func:`evaluate_coco` on result records already made by :func:`coco_results` (image by
    image, so that a whole test set's masks are held as RLEs, never as pixels)."""
    from pycocotools.cocoeval import COCOeval

    if iou_type not in _STATS:
        raise ValueError(f"iou_type must be one of {sorted(_STATS)}, got {iou_type!r}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        coco_eval = COCOeval(coco_gt, _load_results(coco_gt, results), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = {
        name: None if value < 0 else float(value * 100)  # D2:349, with -1 kept as unknown
        for name, value in zip(_STATS[iou_type], coco_eval.stats)
    }
    return CocoMetrics(
        ap=stats["AP"],
        ap50=stats["AP50"],
        ap75=stats["AP75"],
        ap_small=stats.get("APs"),
        ap_medium=stats["APm"],
        ap_large=stats["APl"],
    )
