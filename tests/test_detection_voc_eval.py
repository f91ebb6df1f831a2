"""detectron2's VOC AP (hardneg_bench.detection.voc_eval) against hand-computed cases and a loop.

Boxes are given in the detectron2 loader's convention (XML xmin - 1, ymin - 1, xmax, ymax); in
that convention detectron2's "+1" IoU is the plain continuous IoU, which the hand values use.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardneg_bench.config import ConfigError
from hardneg_bench.detection.voc_eval import ImageDetections, VocImageTruth, evaluate_voc

FAR = (60.0, 60.0, 70.0, 70.0)
"""A box that overlaps none of the ground truth below: always a false positive."""


def truth(boxes, labels=None, difficult=None) -> VocImageTruth:
    n = len(boxes)
    return VocImageTruth(
        boxes=np.asarray(boxes, dtype=np.float64).reshape(n, 4),
        labels=np.asarray(labels if labels is not None else [0] * n, dtype=np.int64),
        difficult=np.asarray(difficult if difficult is not None else [False] * n, dtype=bool),
    )


def dets(boxes, scores, labels=None) -> ImageDetections:
    n = len(boxes)
    return ImageDetections(
        boxes=np.asarray(boxes, dtype=np.float32).reshape(n, 4),
        scores=np.asarray(scores, dtype=np.float32),
        labels=np.asarray(labels if labels is not None else [0] * n, dtype=np.int64),
    )


def single(truths, detections, year=2012, names=("a",)):
    return evaluate_voc(truths, detections, list(names), year)


# --- one class, a known ranking ------------------------------------------------------------------

G1, G2, G3, G4 = (0, 0, 10, 10), (20, 20, 30, 30), (0, 0, 10, 10), (40, 40, 50, 50)
RANKED_TRUTH = [truth([G1, G2]), truth([G3, G4])]
# ranks: 0.9 TP (G1), 0.8 FP, 0.7 TP (G3), 0.6 FP, 0.5 TP (G2); every IoU is 1 or 0
RANKED_DETS = [dets([G1, FAR, G2], [0.9, 0.8, 0.5]), dets([G3, FAR], [0.7, 0.6])]
# by hand, npos = 4: after each rank
PRECISION = [1, 1 / 2, 2 / 3, 2 / 4, 3 / 5]
RECALL = [1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4]


def test_ranked_detections_11_point_ap_by_hand():
    # t = 0, .1, .2: best precision over all ranks = 1; t = .3, .4, .5: ranks with recall >= t are
    # 3-5 -> max(2/3, 2/4, 3/5) = 2/3; t = .6, .7: rank 5 -> 3/5; t = .8, .9, 1: not reached -> 0
    assert max(PRECISION) == 1 and max(PRECISION[2:]) == 2 / 3 and PRECISION[4] == 3 / 5
    expected = (3 * 1 + 3 * (2 / 3) + 2 * (3 / 5)) / 11 * 100
    result = single(RANKED_TRUTH, RANKED_DETS, year=2007)
    assert result.ap50 == pytest.approx(expected)
    # all IoUs are 0 or 1, so every threshold gives the same AP
    assert result.ap == pytest.approx(expected) and result.ap75 == pytest.approx(expected)


def test_ranked_detections_area_ap_by_hand_differs_from_11_point():
    # recall steps 0 -> 1/4 -> 2/4 -> 3/4 (-> 1 at precision 0); envelope at each step's end:
    # max precision from that rank on = 1, then max(2/3, 2/4, 3/5) = 2/3, then 3/5
    assert RECALL == [0.25, 0.25, 0.5, 0.5, 0.75]
    area = (1 / 4 * 1 + 1 / 4 * (2 / 3) + 1 / 4 * (3 / 5)) * 100
    eleven = (3 * 1 + 3 * (2 / 3) + 2 * (3 / 5)) / 11 * 100
    assert abs(area - eleven) > 0.1
    assert single(RANKED_TRUTH, RANKED_DETS, year=2012).ap50 == pytest.approx(area)
    assert single(RANKED_TRUTH, RANKED_DETS, year=2007).ap50 == pytest.approx(eleven)


def test_11_point_thresholds_are_numpys_arange_values():
    # ten objects, three found then one false positive: recall .1, .2, .3, .3 at precision 1, 1, 1,
    # 3/4. detectron2's fourth point is np.arange(0, 1.1, .1)[3] = 0.30000000000000004 > 3/10, so
    # only t = 0, .1, .2 are reached: 3/11 (a point at exactly .3 would make it 4/11)
    objects = [(20 * k, 0, 20 * k + 10, 10) for k in range(10)]
    found = dets(objects[:3] + [FAR], [0.9, 0.8, 0.7, 0.6])
    assert single([truth(objects)], [found], year=2007).ap50 == pytest.approx(3 / 11 * 100)


def test_a_duplicate_detection_is_a_false_positive():
    # 0.9 finds G1, 0.8 finds G1 again (FP), 0.7 finds G2: precision 1, 1/2, 2/3 at recall
    # 1/2, 1/2, 1 -> area 1/2 * 1 + 1/2 * 2/3
    image = truth([G1, G2])
    with_duplicate = single([image], [dets([G1, G1, G2], [0.9, 0.8, 0.7])])
    assert with_duplicate.ap50 == pytest.approx((1 / 2 + 1 / 2 * 2 / 3) * 100)
    assert single([image], [dets([G1, G2], [0.9, 0.7])]).ap50 == pytest.approx(100)


def test_a_detection_of_a_difficult_object_is_ignored():
    difficult_box = (40, 40, 50, 50)
    image = truth([G1, G2, difficult_box], difficult=[False, False, True])
    # ranks: FP, (difficult: neither), TP, TP -> counted: precision 0, 1/2, 2/3 at recall 0, 1/2, 1
    # (npos = 2: the difficult object does not count); area = 1/2 * 2/3 + 1/2 * 2/3
    boxes, scores = [FAR, difficult_box, G1, G2], [0.95, 0.9, 0.8, 0.7]
    expected = (1 / 2 * 2 / 3 + 1 / 2 * 2 / 3) * 100
    assert single([image], [dets(boxes, scores)]).ap50 == pytest.approx(expected)
    without = single([image], [dets([FAR, G1, G2], [0.95, 0.8, 0.7])])
    assert without.ap50 == pytest.approx(expected)
    # were it a false positive, the area would be 1/2 * 1/2 + 1/2 * 1/2
    assert expected != pytest.approx(50)


def test_a_class_without_detections_has_ap_zero():
    image = truth([G1, G2], labels=[0, 1])
    result = single([image], [dets([G1], [0.9], labels=[0])], names=("a", "b"))
    assert result.per_class_ap50 == {"a": pytest.approx(100), "b": 0.0}
    assert result.ap50 == pytest.approx(50)


@pytest.mark.parametrize("year", [2007, 2012])
def test_iou_exactly_at_a_threshold_is_not_a_match(year):
    # ground truth XML (1, 1, 10, 10): 10 x 10 pixels. A detection (0, 0, 10, 20) is written
    # (1, 1, 10, 20): 10 x 20 pixels sharing 100 -> IoU 100/200 = 0.5, and detectron2 needs > 0.5.
    # (Forgetting the +1 shift but keeping the +1 widths would give 121/231 > 0.5.)
    image = [truth([(0, 0, 10, 10)])]
    assert single(image, [dets([(0, 0, 10, 20)], [0.9])], year).ap50 == 0.0
    # ymax 19.96 is written "20.0" (%.1f): the same IoU of exactly 0.5 (unrounded it would match)
    assert single(image, [dets([(0, 0, 10, 19.96)], [0.9])], year).ap50 == 0.0
    # 10 x 19 pixels: IoU 100/190 = 0.526, a match at 0.50 only: AP = 100 at 1 threshold of 10
    just_over = single(image, [dets([(0, 0, 10, 19)], [0.9])], year)
    assert (just_over.ap50, just_over.ap75) == (pytest.approx(100), 0.0)
    assert just_over.ap == pytest.approx(100 * 1 / 10)
    # written (1, 1, 10, 7.5): 10 x 7.5 = 75 pixels inside 100 -> IoU exactly 0.75: a match at
    # 0.50, 0.55, 0.60, 0.65, 0.70 but not at 0.75
    at_75 = single(image, [dets([(0, 0, 10, 7.5)], [0.9])], year)
    assert (at_75.ap50, at_75.ap75, at_75.ap) == (pytest.approx(100), 0.0, pytest.approx(50))


def test_ap_is_the_mean_over_thresholds_of_the_class_mean():
    # class a: IoU 0.75 -> 100 at 5 thresholds of 10; class b: IoU 100/190 -> 100 at 1 of 10
    image = truth([(0, 0, 10, 10), (30, 30, 40, 40)], labels=[0, 1])
    found = dets([(0, 0, 10, 7.5), (30, 30, 40, 49)], [0.9, 0.8], labels=[0, 1])
    result = single([image], [found], names=("a", "b"))
    per_threshold = [(100 * (t < 75) + 100 * (t < 55)) / 2 for t in range(50, 100, 5)]
    assert per_threshold[:2] == [100, 50]
    assert result.ap == pytest.approx(sum(per_threshold) / 10)  # (5 * 100 + 1 * 100) / 2 / 10 = 30
    assert (result.ap50, result.ap75) == (pytest.approx(100), 0.0)
    assert result.as_dict() == {"AP": result.ap, "AP50": result.ap50, "AP75": result.ap75}


def test_scores_are_compared_as_written_with_three_decimals():
    # 0.9004 (a false positive) and 0.9001 (a true positive) are both written "0.900": the tie
    # keeps file order, so the true positive listed first ranks first (AP 100, not 11-point 1/2)
    image = [truth([G1])]
    assert single(image, [dets([G1, FAR], [0.9001, 0.9004])], year=2007).ap50 == pytest.approx(100)
    assert single(image, [dets([FAR, G1], [0.9004, 0.9001])], year=2007).ap50 == pytest.approx(50)


def test_a_class_with_only_difficult_objects_gets_detectron2s_value():
    image = [truth([G1], difficult=[True])]
    found = [dets([G2], [0.9])]
    assert single(image, found, year=2007).ap50 == 0.0  # recall 0/0 = NaN reaches no point
    assert math.isnan(single(image, found, year=2012).ap50)  # NaN recall steps


def test_bad_year_and_shapes_are_rejected():
    with pytest.raises(ConfigError, match="2007 or 2012"):
        single(RANKED_TRUTH, RANKED_DETS, year=2010)
    with pytest.raises(ValueError, match="shape"):
        VocImageTruth(np.zeros((2, 4)), np.zeros(3, np.int64), np.zeros(2, bool))


# --- property: the vectorised evaluator against a plain per-detection loop ------------------------


def _iou(a, b) -> float:
    """Continuous IoU of two loader-convention boxes (= detectron2's shifted "+1" IoU)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _loop_ap(truths, detections, cls, thresh, use_07) -> float:
    objects = [
        (i, tuple(box), bool(hard))
        for i, t in enumerate(truths)
        for box, label, hard in zip(t.boxes, t.labels, t.difficult)
        if label == cls
    ]
    npos = sum(not hard for _, _, hard in objects)
    ranked = sorted(
        (
            (float(score), i, tuple(box))
            for i, d in enumerate(detections)
            for box, score, label in zip(d.boxes, d.scores, d.labels)
            if label == cls
        ),
        reverse=True,
    )
    matched, tp, fp, points = set(), 0, 0, []
    for _, image, box in ranked:
        best, best_j = -1.0, None
        for j, (obj_image, obj_box, _) in enumerate(objects):
            if obj_image == image and _iou(box, obj_box) > best:
                best, best_j = _iou(box, obj_box), j
        if best_j is not None and best > thresh:
            if objects[best_j][2]:
                continue  # difficult: counts neither way (a repeated point changes no AP)
            if best_j in matched:
                fp += 1
            else:
                tp += 1
                matched.add(best_j)
        else:
            fp += 1
        points.append((tp / npos, tp / (tp + fp)))
    if use_07:
        ts = np.arange(0.0, 1.1, 0.1)  # detectron2's eleven points, numpy's values
        return sum(max([p for r, p in points if r >= t], default=0.0) for t in ts) / 11
    ap, previous = 0.0, 0.0
    for k, (r, _) in enumerate(points):
        ap += (r - previous) * max(p for _, p in points[k:])
        previous = r
    return ap


_coord = st.integers(0, 16)
_box = st.tuples(_coord, _coord, st.integers(1, 10), st.integers(1, 10)).map(
    lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3])
)


@st.composite
def _problem(draw):
    n_images = draw(st.integers(1, 3))
    truths, detections = [], []
    for image in range(n_images):
        object_ = st.tuples(_box, st.integers(0, 1), st.booleans())
        objects = draw(st.lists(object_, min_size=2 * (image == 0), max_size=4))
        if image == 0:  # every class has an object that is not difficult
            objects[0] = (objects[0][0], 0, False)
            objects[1] = (objects[1][0], 1, False)
        truths.append(truth(*zip(*objects)) if objects else truth([]))
        near = st.sampled_from([o[0] for o in objects]) if objects else _box
        found = draw(st.lists(st.tuples(st.one_of(_box, near), st.integers(0, 1)), max_size=5))
        detections.append(found)
    n_dets = sum(len(f) for f in detections)
    scores = draw(st.lists(st.integers(1, 999), min_size=n_dets, max_size=n_dets, unique=True))
    it = iter(s / 1000 for s in scores)  # distinct, exact in three decimals: no ties
    detections = [
        dets([box for box, _ in found], [next(it) for _ in found], [c for _, c in found])
        for found in detections
    ]
    return truths, detections, draw(st.sampled_from([2007, 2012]))


@settings(max_examples=60, deadline=None)
@given(_problem())
def test_matches_a_per_detection_loop(problem):
    truths, detections, year = problem
    result = evaluate_voc(truths, detections, ["a", "b"], year)
    loop = {
        t: [_loop_ap(truths, detections, c, t / 100, year == 2007) * 100 for c in (0, 1)]
        for t in range(50, 100, 5)
    }
    assert list(result.per_class_ap50) == ["a", "b"]
    assert list(result.per_class_ap50.values()) == pytest.approx(loop[50])
    assert result.ap50 == pytest.approx(np.mean(loop[50]))
    assert result.ap75 == pytest.approx(np.mean(loop[75]))
    assert result.ap == pytest.approx(np.mean([np.mean(v) for v in loop.values()]))
