"""PASCAL VOC box AP exactly as detectron2's ``PascalVOCDetectionEvaluator`` computes it.

MoCo's VOC numbers come from that evaluator on ``voc_2007_test``
(facebookresearch/moco@132aea9 detection/train_net.py:45-49, configs/pascal_voc_R_50_C4_24k.yaml).
``D2:N`` below is line N of facebookresearch/detectron2@02b5c4e
detectron2/evaluation/pascal_voc_evaluation.py; its arithmetic (py-faster-rcnn's ``voc_eval`` and
``voc_ap``) is unchanged since detectron2's first commit (989f52d, 2019-10-10), so it is what
MoCo's detection code (2020-03-22) ran.

detectron2 goes through text: it writes each detection as ``image score xmin+1 ymin+1 xmax ymax``
with ``%.3f`` / ``%.1f`` (D2:62-67), reads the ground truth from the XML files as is (D2:144-149),
and measures overlaps with the "+1" pixel convention (D2:266-275). Here the same numbers are
computed in memory: the ground truth comes in the detectron2 loader's convention (the XML box with
1 subtracted from xmin and ymin, detectron2 data/datasets/pascal_voc.py:63-69) and gets that 1 back,
the detections get the same +1 and the same rounding. The net effect of shift plus "+1" widths is
the plain continuous IoU of the loader-convention boxes, computed on the rounded detections.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hardneg_bench.config import ConfigError

IOU_THRESHOLDS_PERCENT = tuple(range(50, 100, 5))
"""The IoU thresholds 0.50, 0.55, ..., 0.95, in percent (D2:101)."""

_XML_SHIFT = np.array([1.0, 1.0, 0.0, 0.0])
"""Loader convention -> 1-based XML convention: xmin + 1, ymin + 1 (D2:63-65)."""


@dataclass(frozen=True)
class VocImageTruth:
    """One image's ground truth, in the detectron2 VOC loader's convention."""

    boxes: np.ndarray
    """(G, 4) XYXY: XML xmin - 1, ymin - 1, xmax, ymax (detectron2 datasets/pascal_voc.py:68-69)."""
    labels: np.ndarray
    """(G,) int: index into the class names."""
    difficult: np.ndarray
    """(G,) bool: the XML ``difficult`` flag."""

    def __post_init__(self) -> None:
        _check_rows("ground truth", self.boxes, self.labels, self.difficult)


@dataclass(frozen=True)
class ImageDetections:
    """One image's detections in original image pixels (a detector's float32 XYXY boxes)."""

    boxes: np.ndarray
    """(D, 4) XYXY."""
    scores: np.ndarray
    """(D,)"""
    labels: np.ndarray
    """(D,) int: index into the class names."""

    def __post_init__(self) -> None:
        _check_rows("detections", self.boxes, self.scores, self.labels)


@dataclass(frozen=True)
class VocResult:
    """The evaluator's ``bbox`` result (D2:112-114), in percent, and each class's AP50."""

    ap: float
    """Mean over the ten IoU thresholds of the class-mean AP."""
    ap50: float
    ap75: float
    per_class_ap50: dict[str, float]

    def as_dict(self) -> dict[str, float]:
        """The keys detectron2 reports: ``{"AP", "AP50", "AP75"}``."""
        return {"AP": self.ap, "AP50": self.ap50, "AP75": self.ap75}


def _check_rows(what: str, boxes: np.ndarray, *columns: np.ndarray) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what}: boxes must have shape (N, 4), got {boxes.shape}")
    if any(column.shape != (boxes.shape[0],) for column in columns):
        raise ValueError(f"{what}: every per-box array must have shape ({boxes.shape[0]},)")


def use_07_metric(year: int) -> bool:
    """detectron2 accepts VOC 2007 and 2012 and uses the 11-point metric for 2007 (D2:46-47)."""
    if year not in (2007, 2012):
        raise ConfigError(f"VOC year must be 2007 or 2012 (detectron2's evaluator), got {year}")
    return year == 2007


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07: bool) -> float:
    """VOC AP of a precision/recall curve, as ``voc_ap`` (D2:155-184) computes it.

    The 11-point metric takes the best precision at recall >= t for the eleven t of
    ``np.arange(0.0, 1.1, 0.1)``: numpy's values, so t = 0.30000000000000004 is not reached by a
    recall of exactly 3/10 (likewise 0.6 and 0.7). The other metric is the area under the
    monotone (non-increasing) precision envelope.
    """
    if use_07:
        thresholds = np.arange(0.0, 1.1, 0.1)  # D2:162
        reached = rec[None, :] >= thresholds[:, None]
        best = np.where(reached, prec[None, :], 0.0).max(axis=1, initial=0.0)  # D2:163-166
        return float(sum(best / 11.0))  # left-to-right like D2:167's running sum
    mrec = np.concatenate(([0.0], rec, [1.0]))  # D2:171-172
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope, D2:175-176
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])  # D2:180
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))  # D2:183


def _float32(values: np.ndarray) -> np.ndarray:
    """A detector's float32 output (``pred_boxes``, ``scores``) as float64.

    Under numpy 1.x (MoCo's time) ``np.float32 + 1`` is a float64, so detectron2's ``xmin += 1``
    (D2:64-65) is exact; that is the shift done here (numpy 2 would round it to float32).
    """
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _through_text(values: np.ndarray, fmt: str) -> np.ndarray:
    """``values`` written with the %-format ``fmt`` and read back (D2:67 then D2:241-242)."""
    return np.char.mod(fmt, values).astype(np.float64)


def _concat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    """The per-image arrays as one, image after image (empty if there are none)."""
    return np.concatenate([np.zeros(0, dtype)] + arrays).astype(dtype)


def _best_overlaps(truth: VocImageTruth, dets: ImageDetections) -> tuple[np.ndarray, np.ndarray]:
    """Each detection's best same-class overlap ``ovmax`` and that ground truth's index ``jmax``.

    D2:259-279 for all detections of one image at once, on the boxes detectron2 writes
    (xmin + 1, ymin + 1, ``%.1f``: D2:62-67) and the XML's ground truth (D2:144-149). A ground
    truth of another class is masked out (D2:226 keeps only the class's objects, in XML order, so
    ``argmax`` picks the same first maximum); a detection without a ground truth of its class gets
    ``-inf`` (D2:256).
    """
    bb = _through_text(_float32(dets.boxes) + _XML_SHIFT, "%.1f")
    gt = np.asarray(truth.boxes, dtype=np.float64) + _XML_SHIFT
    ixmin = np.maximum(gt[None, :, 0], bb[:, None, 0])  # D2:262-268
    iymin = np.maximum(gt[None, :, 1], bb[:, None, 1])
    ixmax = np.minimum(gt[None, :, 2], bb[:, None, 2])
    iymax = np.minimum(gt[None, :, 3], bb[:, None, 3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inters = iw * ih
    uni = (  # D2:271-275
        ((bb[:, 2] - bb[:, 0] + 1.0) * (bb[:, 3] - bb[:, 1] + 1.0))[:, None]
        + ((gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0))[None, :]
        - inters
    )
    same_class = np.asarray(dets.labels)[:, None] == np.asarray(truth.labels)[None, :]
    overlaps = np.where(same_class, inters / uni, -np.inf)  # D2:277
    if overlaps.shape[1] == 0:
        return np.full(len(bb), -np.inf), np.zeros(len(bb), dtype=np.int64)
    return overlaps.max(axis=1), overlaps.argmax(axis=1)  # D2:278-279


def _precision_recall(
    ovmax: np.ndarray, jmax: np.ndarray, difficult: np.ndarray, npos: int, ovthresh: float
) -> tuple[np.ndarray, np.ndarray]:
    """D2:253-297 for one class at one threshold; detections already in descending score order.

    ``jmax`` indexes ``difficult`` (one global numbering over all images). A detection over the
    threshold (strictly, D2:281) whose ground truth is difficult is neither TP nor FP (D2:282); of
    those whose ground truth is not, the first in score order is a TP and later ones are FPs
    (D2:283-287); a detection at or below the threshold is an FP (D2:288-289).
    """
    hit = ovmax > ovthresh
    hits = np.flatnonzero(hit)
    counted = hits[~difficult[jmax[hits]]]
    _, first = np.unique(jmax[counted], return_index=True)
    tp = np.zeros(len(ovmax))
    tp[counted[first]] = 1.0
    fp = (~hit).astype(np.float64)
    fp[counted] = 1.0 - tp[counted]
    tp, fp = np.cumsum(tp), np.cumsum(fp)  # D2:292-293
    with np.errstate(divide="ignore", invalid="ignore"):  # npos = 0: detectron2 divides anyway
        rec = tp / float(npos)  # D2:294
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)  # D2:297
    return rec, prec


def evaluate_voc(
    truths: Sequence[VocImageTruth],
    detections: Sequence[ImageDetections],
    class_names: Sequence[str],
    year: int,
) -> VocResult:
    """detectron2's ``PascalVOCDetectionEvaluator.evaluate`` (D2:70-115) on in-memory inputs.

    ``truths[i]`` and ``detections[i]`` are the same image. Per class, the detections keep
    detectron2's file order (images in the given order, each image's detections in order) before
    the ``np.argsort(-score)`` of D2:245 (not stable: detectron2 breaks ties between equal
    rounded scores the same way). A class without a non-difficult ground truth gets what
    detectron2 computes (0 with the 11-point metric; NaN with the area metric if it has
    detections).
    """
    if len(truths) != len(detections):
        raise ValueError(f"{len(truths)} ground-truth images, {len(detections)} detection images")
    use_07 = use_07_metric(year)
    overlaps = [_best_overlaps(truth, dets) for truth, dets in zip(truths, detections)]
    offsets = np.cumsum([0] + [len(truth.labels) for truth in truths])
    ovmax = _concat([o for o, _ in overlaps], np.float64)
    jmax = _concat([j + offset for (_, j), offset in zip(overlaps, offsets)], np.int64)
    scores = _through_text(_concat([_float32(d.scores) for d in detections], np.float64), "%.3f")
    labels = _concat([np.asarray(d.labels) for d in detections], np.int64)
    gt_labels = _concat([np.asarray(t.labels) for t in truths], np.int64)
    difficult = _concat([np.asarray(t.difficult) for t in truths], bool)

    aps: dict[int, list[float]] = defaultdict(list)  # threshold -> AP per class, D2:94
    for cls in range(len(class_names)):
        npos = int(np.sum((gt_labels == cls) & ~difficult))  # D2:231
        mine = np.flatnonzero(labels == cls)
        order = mine[np.argsort(-scores[mine])]  # D2:245
        for thresh in IOU_THRESHOLDS_PERCENT:
            rec, prec = _precision_recall(
                ovmax[order], jmax[order], difficult, npos, thresh / 100.0  # D2:107
            )
            aps[thresh].append(voc_ap(rec, prec, use_07) * 100)  # D2:110
    mean_ap = {iou: float(np.mean(x)) for iou, x in aps.items()}  # D2:113
    return VocResult(
        ap=float(np.mean(list(mean_ap.values()))),  # D2:114
        ap50=mean_ap[50],
        ap75=mean_ap[75],
        per_class_ap50=dict(zip(class_names, aps[50])),
    )

