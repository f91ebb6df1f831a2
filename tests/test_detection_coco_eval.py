"""COCO AP through pycocotools' COCOeval (hardneg_bench.detection.coco_eval) on hand-made cases.

Objects are rectangles on a 200 x 200 image: small (< 32^2 pixels), medium, large (> 96^2).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

pytest.importorskip("pycocotools")

import pycocotools.mask as mask_util  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from hardneg_bench.detection.coco_eval import (  # noqa: E402
    CocoImagePredictions,
    coco_category_ids,
    evaluate_coco,
    xyxy_to_xywh,
)

SIZE = 200
# XYWH, 100, 1600 and 10000 pixels
SMALL, MEDIUM, LARGE = (5, 5, 10, 10), (60, 20, 40, 40), (90, 90, 100, 100)
PERSON = 1


def rectangle_mask(xywh) -> np.ndarray:
    x, y, w, h = xywh
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y : y + h, x : x + w] = True
    return mask


def skeleton(xywh) -> np.ndarray:
    """17 keypoints spread inside the box: (17, 3) x, y, visibility 2."""
    x, y, w, h = xywh
    t = np.arange(17) / 16
    return np.stack([x + t * w, y + (1 - t) * h, np.full(17, 2.0)], axis=1)


def ground_truth(objects, categories=(1, 3)) -> COCO:
    """``objects``: (XYWH, category id) on image 7; areas from the masks; ids from 1 (COCOeval
    takes a matched id 0 for 'unmatched')."""
    annotations = []
    for k, (xywh, category) in enumerate(objects, start=1):
        mask = rectangle_mask(xywh)
        annotations.append(
            {
                "id": k,
                "image_id": 7,
                "category_id": category,
                "bbox": list(map(float, xywh)),
                "area": float(mask.sum()),
                "iscrowd": 0,
                "segmentation": mask_util.encode(np.asfortranarray(mask, dtype=np.uint8)),
                "keypoints": skeleton(xywh).reshape(-1).tolist(),
                "num_keypoints": 17,
            }
        )
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 7, "width": SIZE, "height": SIZE}],
        "annotations": annotations,
        "categories": [{"id": c, "name": f"c{c}"} for c in categories],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def predict(objects, scores) -> CocoImagePredictions:
    """Predictions equal to ``objects`` (XYWH, category): XYXY boxes, masks, keypoints."""
    xywh = np.array([o[0] for o in objects], dtype=np.float64).reshape(-1, 4)
    return CocoImagePredictions(
        image_id=7,
        boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
        scores=np.asarray(scores, dtype=np.float32),
        category_ids=np.array([o[1] for o in objects], dtype=np.int64),
        masks=np.array([rectangle_mask(o[0]) for o in objects], dtype=bool).reshape(-1, SIZE, SIZE),
        keypoints=np.array([skeleton(o[0]) for o in objects]).reshape(-1, 17, 3),
    )


ALL_SIZES = [(SMALL, 1), (MEDIUM, 3), (LARGE, 1), ((120, 10, 50, 50), 3)]


def test_xyxy_to_xywh_by_hand():
    boxes = np.array([[10.5, 20.0, 30.5, 25.0], [0.0, 0.0, 200.0, 100.0]])
    assert xyxy_to_xywh(boxes).tolist() == [[10.5, 20.0, 20.0, 5.0], [0.0, 0.0, 200.0, 100.0]]


def test_contiguous_classes_map_to_sorted_category_ids():
    gt = ground_truth([], categories=(3, 1, 90))
    assert coco_category_ids(gt).tolist() == [1, 3, 90]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_predicting_the_ground_truth_gives_100(iou_type):
    found = predict(ALL_SIZES, [0.9, 0.8, 0.7, 0.6])
    result = evaluate_coco(ground_truth(ALL_SIZES), [found], iou_type).as_dict()
    assert result == {k: pytest.approx(100) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


def test_predicting_the_ground_truth_keypoints_gives_100():
    people = [(MEDIUM, PERSON), (LARGE, PERSON)]
    gt = ground_truth(people, categories=(PERSON,))
    result = evaluate_coco(gt, [predict(people, [0.9, 0.8])], "keypoints")
    assert (result.ap, result.ap50, result.ap75) == (pytest.approx(100),) * 3
    assert (result.ap_medium, result.ap_large) == (pytest.approx(100),) * 2
    assert result.ap_small is None  # COCOeval has no small range for keypoints


def test_a_box_given_as_xywh_instead_of_xyxy_is_missed():
    # LARGE's XYWH read as XYXY is the box (90, 90)-(100, 100): IoU 100/10000, no match
    wrong = predict([(LARGE, 1)], [0.9])
    wrong = CocoImagePredictions(7, np.array([LARGE], np.float64), wrong.scores, wrong.category_ids)
    assert evaluate_coco(ground_truth([(LARGE, 1)]), [wrong], "bbox").ap == 0.0


def test_half_the_objects_found_by_hand():
    # four medium objects, two found at IoU 1: precision 1 up to recall 1/2, nothing beyond. Of
    # COCOeval's 101 recall points 0, .01, ..., 1, the 51 up to .50 get precision 1 and the 50
    # above get 0, at every IoU threshold
    objects = [((10 + 45 * k, 10, 40, 40), 1) for k in range(4)]
    result = evaluate_coco(ground_truth(objects), [predict(objects[:2], [0.9, 0.8])], "bbox")
    expected = 51 / 101 * 100
    assert (result.ap, result.ap50, result.ap75, result.ap_medium) == (pytest.approx(expected),) * 4
    assert result.ap_small is None and result.ap_large is None  # no such objects: COCOeval's -1


def test_101_point_interpolation_by_hand():
    # two medium objects; ranks: TP, FP (a medium box elsewhere), TP -> precision 1, 1/2, 2/3 at
    # recall 1/2, 1/2, 1; made non-increasing from the right: 1, 2/3, 2/3. Recall points up to .50
    # take the first rank (1), the 50 points above .50 the third (2/3)
    objects = [((10, 10, 40, 40), 1), ((60, 10, 40, 40), 1)]
    found = predict([objects[0], ((10, 120, 40, 40), 1), objects[1]], [0.9, 0.8, 0.7])
    result = evaluate_coco(ground_truth(objects), [found], "bbox")
    assert result.ap == pytest.approx((51 * 1 + 50 * 2 / 3) / 101 * 100)


def test_mask_ap_takes_a_detections_area_from_its_mask():
    # a false positive ranked first whose mask is a thin diagonal band (five diagonals:
    # 60 + 2 * 59 + 2 * 58 = 294 px, small) inside a medium 60 x 60 box, then the one medium
    # object found exactly. Over all sizes: precision 0, 1/2 at recall 0, 1 -> 1/2 at every recall
    # point. In the medium range the false positive's mask area is out of range, so it is
    # ignored: 100 (its box area, 3600, would count it: 50)
    diagonal = np.zeros((SIZE, SIZE), dtype=bool)
    rows, cols = np.indices((60, 60))
    diagonal[120:180, 120:180] = np.abs(rows - cols) < 3
    assert diagonal.sum() == 60 + 2 * 59 + 2 * 58 < 32**2
    found = predict([(MEDIUM, 1)], [0.8])
    x, y, w, h = MEDIUM
    predictions = CocoImagePredictions(
        image_id=7,
        boxes=np.array([[120, 120, 180, 180], [x, y, x + w, y + h]], dtype=np.float64),
        scores=np.array([0.9, 0.8]),
        category_ids=np.array([1, 1]),
        masks=np.stack([diagonal, found.masks[0]]),
    )
    result = evaluate_coco(ground_truth([(MEDIUM, 1)]), [predictions], "segm")
    assert (result.ap, result.ap_medium) == (pytest.approx(50), pytest.approx(100))


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_no_predictions_give_ap_zero(iou_type):
    gt = ground_truth(ALL_SIZES)
    for predictions in ([], [predict([], [])]):
        result = evaluate_coco(gt, predictions, iou_type).as_dict()
        expected = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": 0.0, "APm": 0.0, "APl": 0.0}
        if iou_type == "keypoints":
            expected["APs"] = None
        assert result == expected


def test_missing_masks_are_rejected():
    no_masks = CocoImagePredictions(7, np.zeros((1, 4)), np.ones(1), np.ones(1, np.int64))
    with pytest.raises(ValueError, match="masks"):
        evaluate_coco(ground_truth(ALL_SIZES), [no_masks], "segm")


def test_the_cli_and_every_evaluation_load_without_pycocotools():
    """pycocotools is the `detection` extra: a user without it still runs everything but COCO."""
    import subprocess
    import sys

    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'pycocotools': raise ImportError('no pycocotools')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import hardneg_bench.cli\n"
        "from hardneg_bench.evaluations.registry import EVALUATIONS\n"
        "print(sorted(EVALUATIONS))\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sorted(["linear", "knn", "fewshot", "detection"]))
