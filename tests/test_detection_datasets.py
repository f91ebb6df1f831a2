"""PASCAL VOC 07+12 and COCO 2017 read from tiny files written in exactly their released formats:
VOC's XML annotations and image set files, COCO's instances and person-keypoints JSON with a
polygon and an (uncompressed, crowd) RLE object. Every expected value is computed here from what
was written: boxes, labels, flags, masks, keypoints, which images and objects training keeps, and
a missing folder or file as one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hardneg_bench.config import ConfigError
from hardneg_bench.data.base import DatasetMissingError
from hardneg_bench.detection.datasets import DETECTION_DATASETS, detection_dataset

# detectron2's CLASS_NAMES (facebookresearch/detectron2@02b5c4e295e990042a714712c21dc79b731e8833
# detectron2/data/datasets/pascal_voc.py lines 17-21), transcribed for this test
DETECTRON2_VOC = "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person pottedplant sheep sofa train tvmonitor".split()


def colour(key: int) -> tuple[int, int, int]:
    return (key * 53) % 256, (key * 97 + 30) % 256, (key * 31 + 120) % 256


def write_jpeg(path: Path, width: int, height: int, key: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), colour(key)).save(path, quality=95)


def assert_image(image: torch.Tensor, width: int, height: int, key: int) -> None:
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, height, width)
    assert (image.int() - torch.tensor(colour(key)).view(3, 1, 1)).abs().max() <= 6


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --- PASCAL VOC ----------------------------------------------------------------------------------

VOC_OBJECT = """	<object>
		<name>{name}</name>
		<pose>{pose}</pose>
		<truncated>{truncated}</truncated>
{difficult}		<bndbox>
			<xmin>{xmin}</xmin>
			<ymin>{ymin}</ymin>
			<xmax>{xmax}</xmax>
			<ymax>{ymax}</ymax>
		</bndbox>
{parts}	</object>
"""
VOC_PART = """		<part>
			<name>head</name>
			<bndbox>
				<xmin>1</xmin>
				<ymin>1</ymin>
				<xmax>5</xmax>
				<ymax>5</ymax>
			</bndbox>
		</part>
"""


def voc_xml(year: str, image_id: str, width: int, height: int, objects: list[dict]) -> str:
    """An annotation as the VOC tar files hold it (folder, filename, source, size, segmented,
    objects with pose, truncated, difficult, bndbox; VOC2012 persons may have parts)."""
    body = "".join(
        VOC_OBJECT.format(
            name=o["name"], pose=o.get("pose", "Unspecified"), truncated=o.get("truncated", 0),
            difficult="" if o["difficult"] is None else f"\t\t<difficult>{o['difficult']}</difficult>\n",
            xmin=o["box"][0], ymin=o["box"][1], xmax=o["box"][2], ymax=o["box"][3],
            parts=VOC_PART if o.get("parts") else "",
        )
        for o in objects
    )
    return (
        f"<annotation>\n\t<folder>{year}</folder>\n\t<filename>{image_id}.jpg</filename>\n"
        f"\t<source>\n\t\t<database>The {year} Database</database>\n\t\t<annotation>PASCAL {year}</annotation>\n\t\t<image>flickr</image>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<segmented>0</segmented>\n{body}</annotation>\n"
    )


# (year, image set) -> [(image id, width, height, objects)], image sets listed in this (unsorted) order
VOC_IMAGES = {
    ("VOC2007", "trainval"): [
        ("000012", 40, 30, [{"name": "car", "box": (1, 1, 40, 30), "difficult": 0, "truncated": 1, "pose": "Rear"}]),
        ("000005", 36, 28, [{"name": "chair", "box": (3, 4, 20, 25), "difficult": 0}, {"name": "chair", "box": (10, 2, 15, 9), "difficult": 1, "pose": "Left"}]),
        ("000009", 32, 24, [{"name": "tvmonitor", "box": (5, 6, 7, 8), "difficult": 0}, {"name": "aeroplane", "box": (2, 2, 31, 23), "difficult": 0}]),
    ],
    ("VOC2007", "test"): [
        ("000004", 30, 20, [{"name": "dog", "box": (2, 3, 12, 18), "difficult": 1}]),
        ("000001", 34, 26, [{"name": "person", "box": (4, 4, 30, 25), "difficult": 0}, {"name": "horse", "box": (1, 2, 33, 26), "difficult": 0}]),
    ],
    ("VOC2012", "trainval"): [
        ("2008_000008", 38, 22, [{"name": "person", "box": (6, 3, 17, 21), "difficult": None, "parts": True}, {"name": "sofa", "box": (1, 10, 38, 22), "difficult": 0}]),
        ("2008_000002", 28, 28, []),  # no object: left out of training
        ("2008_000003", 26, 30, [{"name": "bird", "box": (8, 9, 20, 29), "difficult": 1}]),
    ],
}


def write_voc(root: Path, years: tuple[str, ...] = ("VOC2007", "VOC2012")) -> dict[str, int]:
    """The VOCdevkit folders of ``years``; returns each image id's colour key."""
    keys = {}
    for (year, image_set), images in VOC_IMAGES.items():
        if year not in years:
            continue
        folder = root / "VOCdevkit" / year
        (folder / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (folder / "Annotations").mkdir(exist_ok=True)
        (folder / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{image_id}\n" for image_id, *_ in images))
        for image_id, width, height, objects in images:
            keys[image_id] = len(keys)
            (folder / "Annotations" / f"{image_id}.xml").write_text(voc_xml(year, image_id, width, height, objects))
            write_jpeg(folder / "JPEGImages" / f"{image_id}.jpg", width, height, keys[image_id])
    return keys


def test_voc_classes_are_detectron2s_in_its_order(tmp_path):
    write_voc(tmp_path)
    data = detection_dataset("voc0712", "test", tmp_path)
    assert list(data.classes) == DETECTRON2_VOC and data.num_classes == 21


@pytest.mark.parametrize("split, sets", [("train", [("VOC2007", "trainval"), ("VOC2012", "trainval")]), ("test", [("VOC2007", "test")])])
def test_voc_splits_boxes_labels_and_difficult_flags(tmp_path, split, sets):
    keys = write_voc(tmp_path)
    data = detection_dataset("voc0712", split, tmp_path)
    # 07+12 trainval for training (without the image that has no object), 07 test for testing, in
    # the order of the image set files
    expected = [image for s in sets for image in VOC_IMAGES[s] if split == "test" or image[3]]
    assert len(data) == len(expected) == (5 if split == "train" else 2)
    for (image, target), (image_id, width, height, objects) in zip(data, expected):
        assert_image(image, width, height, keys[image_id])
        assert target["image_id"] == image_id
        # xmin and ymin minus 1 (1-based inclusive pixels), xmax and ymax as written
        boxes = [[o["box"][0] - 1, o["box"][1] - 1, o["box"][2], o["box"][3]] for o in objects]
        assert target["boxes"].dtype == torch.float32 and target["boxes"].tolist() == boxes
        assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [DETECTRON2_VOC.index(o["name"]) + 1 for o in objects]
        # difficult objects stay in training too (detectron2 keeps them); no tag reads as not difficult
        assert target["difficult"].dtype == torch.bool and target["difficult"].tolist() == [o["difficult"] == 1 for o in objects]


def test_voc_missing_2012_is_one_line_and_the_test_split_needs_only_2007(tmp_path):
    write_voc(tmp_path, years=("VOC2007",))
    with pytest.raises(DatasetMissingError) as err:
        detection_dataset("voc0712", "train", tmp_path)
    message = one_line(err)
    assert str(tmp_path / "VOCdevkit" / "VOC2012") + " is missing" in message
    assert "host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar" in message and "voc0712" in message
    assert len(detection_dataset("voc0712", "test", tmp_path)) == 2
    # a listed annotation that is not there
    (tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000001.xml").unlink()
    with pytest.raises(DatasetMissingError) as err:
        detection_dataset("voc0712", "test", tmp_path)
    assert str(tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000001.xml") in one_line(err)


def test_voc_refuses_entities_and_reports_a_wrong_image_size(tmp_path):
    write_voc(tmp_path, years=("VOC2007",))
    annotations = tmp_path / "VOCdevkit" / "VOC2007" / "Annotations"
    (annotations / "000004.xml").write_text('<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY dog "dog">]>\n' + voc_xml("VOC2007", "000004", 30, 20, [{"name": "&dog;", "box": (2, 3, 12, 18), "difficult": 0}]))
    with pytest.raises(DatasetMissingError) as err:
        detection_dataset("voc0712", "test", tmp_path)
    assert "000004.xml declares a DOCTYPE or entities" in one_line(err)
    (annotations / "000004.xml").write_text(voc_xml("VOC2007", "000004", 30, 20, []))
    write_jpeg(tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000004.jpg", 31, 20, 0)
    data = detection_dataset("voc0712", "test", tmp_path)
    with pytest.raises(DatasetMissingError) as err:
        data[0]
    assert "000004.jpg is 31x20 pixels but its annotation says 30x20" in one_line(err)


# --- COCO 2017 -----------------------------------------------------------------------------------

COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # COCO's 80 category ids
SIZES = {5: (32, 24), 7: (30, 20), 13: (24, 24), 42: (20, 16), 99: (26, 18)}  # image id -> (width, height)


def rectangle(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def crowd_mask(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[2:6, 3:9] = 1
    mask[12:, 20:] = 1
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd format: run lengths of the column-major pixels, starting with a run of 0s."""
    pixels = mask.flatten(order="F").tolist()
    counts, current, run = [], 0, 0
    for p in pixels:
        if p != current:
            counts.append(run)
            current, run = p, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def instance_annotations() -> list[dict]:
    """Image 7: a rectangle polygon person, a crowd RLE person and a flat box; 13: crowd only;
    42: nothing; 5: a polygon of category 90 running past the right edge and one too small to cover
    a pixel centre; 99: only a polygon of two points (invalid, so the object is left out
    everywhere)."""
    w7, h7 = SIZES[7]
    return [
        {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [4.0, 3.0, 10.0, 8.0], "area": 80.0, "segmentation": [rectangle(4, 3, 14, 11)]},
        {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 1, "bbox": [3.0, 2.0, 27.0, 18.0], "area": 64.0, "segmentation": uncompressed_rle(crowd_mask(w7, h7))},
        {"id": 3, "image_id": 7, "category_id": 3, "iscrowd": 0, "bbox": [6.0, 6.0, 0.0, 5.0], "area": 0.0, "segmentation": [[6.0, 6.0, 6.0, 11.0, 6.0, 8.0]]},
        {"id": 4, "image_id": 13, "category_id": 1, "iscrowd": 1, "bbox": [3.0, 2.0, 17.0, 18.0], "area": 64.0, "segmentation": uncompressed_rle(crowd_mask(*SIZES[13]))},
        {"id": 5, "image_id": 5, "category_id": 90, "iscrowd": 0, "bbox": [20.25, 10.25, 20.0, 9.5], "area": 190.0, "segmentation": [rectangle(20.25, 10.25, 40.25, 19.75)]},
        {"id": 7, "image_id": 5, "category_id": 2, "iscrowd": 0, "bbox": [1.1, 1.1, 0.3, 0.3], "area": 0.09, "segmentation": [rectangle(1.1, 1.1, 1.4, 1.4)]},
        {"id": 6, "image_id": 99, "category_id": 2, "iscrowd": 0, "bbox": [2.0, 2.0, 5.0, 5.0], "area": 1.0, "segmentation": [[2.0, 2.0, 7.0, 7.0]]},
    ]


def keypoint_annotations() -> list[dict]:
    """Image 7: a person with labelled keypoints and a crowd; 13: a person with none labelled."""
    keypoints = [0] * 51
    keypoints[0:3] = [10, 5, 2]  # nose, visible
    keypoints[15:18] = [8, 9, 1]  # left shoulder, labelled but hidden
    keypoints[48:51] = [12, 19, 2]  # right ankle
    return [
        {"id": 11, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [4.0, 3.0, 10.0, 17.0], "area": 170.0, "segmentation": [rectangle(4, 3, 14, 20)], "num_keypoints": 3, "keypoints": keypoints},
        {"id": 12, "image_id": 7, "category_id": 1, "iscrowd": 1, "bbox": [3.0, 2.0, 27.0, 18.0], "area": 64.0, "segmentation": uncompressed_rle(crowd_mask(*SIZES[7])), "num_keypoints": 0, "keypoints": [0] * 51},
        {"id": 13, "image_id": 13, "category_id": 1, "iscrowd": 0, "bbox": [1.0, 1.0, 8.0, 9.0], "area": 72.0, "segmentation": [rectangle(1, 1, 9, 10)], "num_keypoints": 0, "keypoints": [0] * 51},
    ]


def write_coco(root: Path, split: str, instances: bool = True, keypoints: bool = True) -> None:
    folder = root / "coco"
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h, "license": 1, "coco_url": "", "date_captured": ""} for i, (w, h) in SIZES.items()]
    for image in images:
        write_jpeg(folder / f"{split}2017" / image["file_name"], image["width"], image["height"], image["id"])
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    info = {"info": {"year": 2017, "version": "1.0"}, "licenses": [{"id": 1, "name": "", "url": ""}], "images": images}
    if instances:
        categories = [{"id": c, "name": "person" if c == 1 else f"thing{c}", "supercategory": "thing"} for c in COCO_IDS]
        (folder / "annotations" / f"instances_{split}2017.json").write_text(json.dumps({**info, "annotations": instance_annotations(), "categories": categories}))
    if keypoints:
        names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
        person = {"id": 1, "name": "person", "supercategory": "person", "keypoints": names, "skeleton": [[16, 14], [14, 12]]}
        (folder / "annotations" / f"person_keypoints_{split}2017.json").write_text(json.dumps({**info, "annotations": keypoint_annotations(), "categories": [person]}))


def xyxy(ann: dict) -> list[float]:
    x, y, w, h = ann["bbox"]
    return [x, y, x + w, y + h]


def expected_objects(annotations: list[dict], image_id: int, training: bool) -> list[dict]:
    """The objects an image keeps: the two-point polygon never; crowd ones and (boxes clipped to
    the image) flat boxes not in training."""
    width, height = SIZES[image_id]
    out = []
    for ann in annotations:
        if ann["image_id"] != image_id or ann["id"] == 6 or (training and ann["iscrowd"]):
            continue
        box = xyxy(ann)
        if training:
            box = [min(max(v, 0.0), width if i % 2 == 0 else height) for i, v in enumerate(box)]
            if box[2] - box[0] <= 1e-5 or box[3] - box[1] <= 1e-5:
                continue
        out.append({**ann, "box": box})
    return out


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_boxes_labels_crowds_and_empty_images(tmp_path, split):
    write_coco(tmp_path, split)
    data = detection_dataset("coco2017", split, tmp_path, task="boxes")
    assert data.num_classes == 81 and data.classes[0] == "person"
    # labels 1..80 follow the sorted category ids: 1 -> 1, 3 -> 3, 90 -> 80
    assert data.category_to_label == {c: i + 1 for i, c in enumerate(COCO_IDS)} and data.category_to_label[90] == 80
    # training drops 13 (crowd only), 42 (nothing) and 99 (its one object is invalid); val keeps all, sorted by id
    ids = [5, 7] if split == "train" else [5, 7, 13, 42, 99]
    assert [target["image_id"] for _, target in data] == ids
    for (image, target), image_id in zip(data, ids):
        assert_image(image, *SIZES[image_id], image_id)
        objects = expected_objects(instance_annotations(), image_id, training=split == "train")
        assert target["boxes"].dtype == torch.float32 and torch.allclose(target["boxes"], torch.tensor([o["box"] for o in objects]).reshape(-1, 4))
        assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [COCO_IDS.index(o["category_id"]) + 1 for o in objects]
        assert target["iscrowd"].dtype == torch.bool and target["iscrowd"].tolist() == [bool(o["iscrowd"]) for o in objects]
    image_7 = data[ids.index(7)][1]
    # in training only the rectangle person is left of image 7; the box past the edge is clipped
    assert (image_7["labels"].tolist(), image_7["iscrowd"].tolist()) == (([1], [False]) if split == "train" else ([1, 1, 3], [False, True, False]))
    assert data[0][1]["boxes"][0].tolist() == ([20.25, 10.25, 32.0, 19.75] if split == "train" else [20.25, 10.25, 40.25, 19.75])


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_masks_from_polygons_and_rle(tmp_path, split):
    write_coco(tmp_path, split)
    data = detection_dataset("coco2017", split, tmp_path, task="masks")
    _, target = data[1]  # image 7
    width, height = SIZES[7]
    # the pixels whose centres lie in the rectangle (4, 3)-(14, 11): columns 4..13, rows 3..10
    rect = np.zeros((height, width), np.uint8)
    rect[3:11, 4:14] = 1
    expected = [rect] if split == "train" else [rect, crowd_mask(width, height), np.zeros((height, width), np.uint8)]
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (len(expected), height, width)
    assert np.array_equal(target["masks"].numpy(), np.stack(expected))
    # category 90's rectangle (20.25, 10.25)-(40.25, 19.75) runs past the right edge of the 32 x 24
    # image (centres 20.5..31.5 across, 10.5..19.5 down); the 0.3 x 0.3 square covers no pixel
    # centre, so training drops it (its mask is empty)
    _, target = data[0]
    edge = np.zeros((24, 32), np.uint8)
    edge[10:20, 20:] = 1
    expected = [edge] if split == "train" else [edge, np.zeros_like(edge)]
    assert np.array_equal(target["masks"].numpy(), np.stack(expected))
    assert target["labels"].tolist() == ([80] if split == "train" else [80, 2])


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_person_keypoints(tmp_path, split):
    write_coco(tmp_path, split)
    data = detection_dataset("coco2017", split, tmp_path, task="keypoints")
    assert data.classes == ("person",) and data.num_classes == 2
    # training needs a labelled keypoint: image 13's person has none, so only image 7 is left
    ids = [7] if split == "train" else [5, 7, 13, 42, 99]
    assert [target["image_id"] for _, target in data] == ids
    for _, target in data:
        objects = [a for a in keypoint_annotations() if a["image_id"] == target["image_id"] and not (split == "train" and a["iscrowd"])]
        # (x, y, v) per keypoint, x and y plus 0.5 as detectron2 reads them
        expected = np.array([a["keypoints"] for a in objects], np.float32).reshape(-1, 17, 3)
        expected[:, :, :2] += 0.5
        assert target["keypoints"].dtype == torch.float32 and np.array_equal(target["keypoints"].numpy(), expected)
        assert target["boxes"].tolist() == [xyxy(a) for a in objects] and target["labels"].tolist() == [1] * len(objects)
    assert data[ids.index(7)][1]["keypoints"][0, [0, 5, 16]].tolist() == [[10.5, 5.5, 2.0], [8.5, 9.5, 1.0], [12.5, 19.5, 2.0]]


def test_coco_missing_annotations_are_one_line(tmp_path):
    write_coco(tmp_path, "train", instances=False)
    with pytest.raises(DatasetMissingError) as err:
        detection_dataset("coco2017", "train", tmp_path, task="boxes")
    message = one_line(err)
    assert str(tmp_path / "coco" / "annotations" / "instances_train2017.json") + " is missing" in message
    assert "cocodataset.org" in message and "annotations_trainval2017.zip" in message and "coco2017" in message
    assert len(detection_dataset("coco2017", "train", tmp_path, task="keypoints")) == 1  # its own file is there
    with pytest.raises(DatasetMissingError) as err:
        detection_dataset("coco2017", "val", tmp_path, task="keypoints")
    assert str(tmp_path / "coco" / "annotations" / "person_keypoints_val2017.json") + " is missing" in one_line(err)
    (tmp_path / "coco" / "annotations" / "instances_train2017.json").write_text("{not json")
    with pytest.raises(DatasetMissingError) as err:
        detection_dataset("coco2017", "train", tmp_path)
    assert "instances_train2017.json is not a COCO annotation file" in one_line(err)


def test_registry_names_splits_and_tasks(tmp_path):
    assert {name: (spec.splits, spec.tasks) for name, spec in DETECTION_DATASETS.items()} == {
        "voc0712": (("train", "test"), ("boxes",)),
        "coco2017": (("train", "val"), ("boxes", "masks", "keypoints")),
    }
    for args, words in [(("voc07", "train"), "unknown detection dataset 'voc07'"), (("voc0712", "val"), "no split 'val'"), (("voc0712", "train", "masks"), "no task 'masks'")]:
        with pytest.raises(ConfigError) as err:
            detection_dataset(args[0], args[1], tmp_path, *args[2:])
        assert words in one_line(err)


def test_torchvision_mask_and_keypoint_rcnn_train_on_the_items(tmp_path):
    """The items are what torchvision's detection models take: a tiny Mask R-CNN and Keypoint
    R-CNN compute every training loss on them, finite."""
    from torchvision.models.detection import KeypointRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    write_coco(tmp_path, "train")
    torch.manual_seed(0)
    heads = {
        "masks": (MaskRCNN, "loss_mask", lambda classes: {"mask_roi_pool": MultiScaleRoIAlign(["0"], 14, 2), "mask_head": MaskRCNNHeads(8, [8], 1), "mask_predictor": MaskRCNNPredictor(8, 8, classes)}),
        "keypoints": (KeypointRCNN, "loss_keypoint", lambda classes: {"keypoint_roi_pool": MultiScaleRoIAlign(["0"], 14, 2), "keypoint_head": KeypointRCNNHeads(8, [8]), "keypoint_predictor": KeypointRCNNPredictor(8, 17)}),
    }
    for task, (model_class, loss, head) in heads.items():
        data = detection_dataset("coco2017", "train", tmp_path, task=task)
        backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU())
        backbone.out_channels = 8
        model = model_class(
            backbone, min_size=32, max_size=48, rpn_anchor_generator=AnchorGenerator(((8, 16),), ((0.5, 1.0, 2.0),)),
            box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), box_head=TwoMLPHead(8 * 7 * 7, 16), box_predictor=FastRCNNPredictor(16, data.num_classes), **head(data.num_classes),
        ).train()
        images, targets = zip(*data)
        losses = model([image.float() / 255 for image in images], list(targets))
        assert loss in losses and all(torch.isfinite(v) for v in losses.values()), losses
