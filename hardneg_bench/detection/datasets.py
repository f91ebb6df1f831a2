"""Detection datasets read from their released on-disk layouts: PASCAL VOC 07+12 and COCO 2017.

They are read as detectron2 reads them (MoCo's detection transfer runs on detectron2:
facebookresearch/moco@132aea9da9bb995a411c915c0420be3db62052f3 detection/configs/
pascal_voc_R_50_C4_24k.yaml lines 10-12 train on ``('voc_2007_trainval', 'voc_2012_trainval')`` and
test on ``('voc_2007_test',)``; coco_R_50_C4_2x.yaml lines 9-10 train on ``coco_2017_train`` and
test on ``coco_2017_val``) and handed out in the format torchvision's detection models take: an
item is ``(image, target)`` with ``image`` a uint8 (3, H, W) RGB tensor and ``target`` a dict of
``boxes`` float32 (N, 4) XYXY in pixels, ``labels`` int64 (N,) in 1..C (0 is the background),
``image_id`` and, where the dataset has them, ``difficult`` bool (N,) (VOC), ``iscrowd`` bool (N,)
(COCO), ``masks`` uint8 (N, H, W) and ``keypoints`` float32 (N, 17, 3) (x, y, visibility).

Training splits are what detectron2's training loader sees: images without a non-crowd object are
dropped, and each target loses its crowd objects, has its boxes clipped to the image and loses the
objects whose box or mask is empty. Test splits keep every image and every object, flags included
(the VOC evaluator needs the difficult ones, COCO's the crowd ones).

Layout under ``--data-root``: ``VOCdevkit/VOC2007`` and ``VOCdevkit/VOC2012`` as the VOC tar files
unpack (``Annotations/*.xml``, ``JPEGImages/*.jpg``, ``ImageSets/Main/{trainval,test}.txt``), and
``coco/{train2017,val2017}/*.jpg`` with ``coco/annotations/{instances,person_keypoints}_
{train,val}2017.json`` as the COCO zips unpack inside a ``coco`` folder (detectron2's layout:
detectron2/data/datasets/builtin.py lines 43-44, 64-68). A missing or partial folder is one
:class:`DatasetMissingError` line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, cast

import numpy as np
import torch
from torch.utils.data import Dataset
from PIL import Image, ImageOps

from ..config import ConfigError
from ..data.base import DatasetMissingError
from ..data.meta_domains_released import require

if TYPE_CHECKING:
    from pycocotools.coco import COCO

# Every "detectron2" citation below is facebookresearch/detectron2@02b5c4e295e990042a714712c21dc79b731e8833.

Task = Literal["boxes", "masks", "keypoints"]
Item = tuple[torch.Tensor, dict[str, Any]]

MIN_BOX_SIDE = 1e-5
"""A box whose width or height is not above this is empty: detectron2's ``filter_empty_instances``
default ``box_threshold`` (detectron2/data/detection_utils.py line 490)."""


def read_image(name: str, path: Path, height: int, width: int) -> torch.Tensor:
    """The uint8 (3, H, W) RGB image at ``path``, read with PIL and turned upright by its EXIF
    orientation as detectron2's ``read_image`` does (detection_utils.py lines 166-185); its size
    must be the annotated one, as detectron2's ``check_image_size`` demands (lines 189-209)."""
    if not path.is_file():
        raise DatasetMissingError(f"{name}: {path} is missing; extract the image archive again")
    with Image.open(path) as file:
        pixels = np.array(ImageOps.exif_transpose(file).convert("RGB"))
    if pixels.shape[:2] != (height, width):
        raise DatasetMissingError(f"{name}: {path} is {pixels.shape[1]}x{pixels.shape[0]} pixels but its annotation says {width}x{height}; extract the archives again")
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def training_target(target: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """``target`` as detectron2's ``DatasetMapper`` hands it to training (dataset_mapper.py
    lines 124-142): boxes clipped to the image (detection_utils.py lines 302-303), then the objects
    whose box has a side of at most :data:`MIN_BOX_SIDE` or whose mask is empty are dropped
    (``filter_empty_instances``, detection_utils.py lines 489-522). Crowd objects are left out
    before (dataset_mapper.py line 129)."""
    boxes = target["boxes"].clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    keep = (boxes[:, 2] - boxes[:, 0] > MIN_BOX_SIDE) & (boxes[:, 3] - boxes[:, 1] > MIN_BOX_SIDE)
    if "masks" in target:
        keep &= target["masks"].flatten(1).bool().any(1)
    kept = {key: value[keep] if isinstance(value, torch.Tensor) else value for key, value in target.items()}
    kept["boxes"] = boxes[keep]
    return kept


# --- PASCAL VOC ----------------------------------------------------------------------------------

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
"""detectron2's ``CLASS_NAMES`` (detectron2/data/datasets/pascal_voc.py lines 17-21), in its order;
label ``i + 1`` is ``VOC_CLASSES[i]`` (detectron2 numbers them from 0, torchvision keeps 0 for the
background)."""

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/"
VOC_ARCHIVES = {
    ("VOC2007", "trainval"): "voc2007/VOCtrainval_06-Nov-2007.tar",
    ("VOC2007", "test"): "voc2007/VOCtest_06-Nov-2007.tar",
    ("VOC2012", "trainval"): "voc2012/VOCtrainval_11-May-2012.tar",
}
"""The tar file (under :data:`VOC_URL`) that brings each ``(year folder, image set)``; every one
unpacks into ``VOCdevkit/<year folder>``."""

VocSet = tuple[str, str]
VOC_SPLITS: dict[str, tuple[VocSet, ...]] = {
    "train": (("VOC2007", "trainval"), ("VOC2012", "trainval")),
    "test": (("VOC2007", "test"),),
}


@dataclass(frozen=True)
class VocImage:
    """One annotated image: ``boxes`` float32 (N, 4) XYXY, ``labels`` int64 (N,) in 1..20,
    ``difficult`` bool (N,)."""

    path: Path
    image_id: str
    height: int
    width: int
    boxes: torch.Tensor
    labels: torch.Tensor
    difficult: torch.Tensor


def parse_voc_annotation(xml_path: Path, jpeg_path: Path, image_id: str) -> VocImage:
    """One ``Annotations/<id>.xml`` as detectron2's ``load_voc_instances`` reads it
    (pascal_voc.py lines 44-73): the size from ``size/{width,height}``, every ``object`` with its
    ``name`` and ``bndbox``, xmin and ymin minus 1 (the files hold 1-based inclusive pixel indices;
    lines 64-69), xmax and ymax as written. detectron2 keeps the difficult objects for training
    (lines 57-61) and does not record the flag; here it is kept per object (a missing
    ``difficult`` reads as 0), which the VOC evaluator needs. Files declaring a DOCTYPE or entities
    are refused unread: VOC annotations have none, and nothing of an entity gets resolved."""
    if not xml_path.is_file():
        raise DatasetMissingError(f"voc0712: {xml_path} is missing; extract the VOC tar files again")
    data = xml_path.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DatasetMissingError(f"voc0712: {xml_path} declares a DOCTYPE or entities, which VOC annotations never do; it is not read")
    try:
        root = ET.fromstring(data)
        height, width = (int(root.findtext(f"size/{side}", "")) for side in ("height", "width"))
        boxes, labels, difficult = [], [], []
        for obj in root.findall("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in VOC_CLASSES:
                raise ValueError(f"object class {name!r} is not one of the 20 VOC classes")
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{c}", "")) for c in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([xmin - 1.0, ymin - 1.0, xmax, ymax])
            labels.append(VOC_CLASSES.index(name) + 1)
            difficult.append(int(obj.findtext("difficult", "0")) == 1)
    except (ET.ParseError, ValueError) as err:
        raise DatasetMissingError(f"voc0712: {xml_path} is not a VOC annotation ({err}); extract the VOC tar files again") from None
    return VocImage(
        path=jpeg_path,
        image_id=image_id,
        height=height,
        width=width,
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64),
        difficult=torch.tensor(difficult, dtype=torch.bool),
    )


def require_voc_set(root: Path, year: str, image_set: str) -> tuple[Path, Path]:
    """The folder of ``year`` and its ``image_set`` listing under ``root/VOCdevkit``; one
    :class:`DatasetMissingError` line naming the archive to get when a part is missing."""
    folder = root / "VOCdevkit" / year
    listing = folder / "ImageSets" / "Main" / f"{image_set}.txt"
    how = f"download {VOC_URL}{VOC_ARCHIVES[(year, image_set)]} and extract it in the data root (it unpacks into VOCdevkit/{year})"
    require("voc0712", [folder, listing, folder / "Annotations", folder / "JPEGImages"], how, root)
    return folder, listing


def require_voc(split: str, root: Path, task: Task) -> None:
    """The files of VOC's ``split`` are there (one error line if not), none read."""
    for year, image_set in VOC_SPLITS[split]:
        require_voc_set(Path(root), year, image_set)


class VocDetection(Dataset[Item]):
    """The images of ``sets`` (``(year folder, image set)`` pairs under ``root/VOCdevkit``), in the
    order the image set files list them, set after set (detectron2 chains its dataset dicts:
    build.py line 274). ``training`` drops the images without an object (detectron2's
    ``filter_images_with_only_crowd_annotations``, build.py lines 46-74, on by default:
    ``DATALOADER.FILTER_EMPTY_ANNOTATIONS = True``, config/defaults.py line 128) and hands out
    :func:`training_target` targets."""

    classes = VOC_CLASSES

    def __init__(self, root: Path, sets: tuple[VocSet, ...], training: bool) -> None:
        root = Path(root)
        self.training = training
        self.images: list[VocImage] = []
        for year, image_set in sets:
            folder, listing = require_voc_set(root, year, image_set)
            for image_id in listing.read_text().split():
                self.images.append(parse_voc_annotation(folder / "Annotations" / f"{image_id}.xml", folder / "JPEGImages" / f"{image_id}.jpg", image_id))
        if training:
            self.images = [image for image in self.images if len(image.labels)]

    @property
    def num_classes(self) -> int:
        """The classes a torchvision detector predicts, the background included."""
        return len(self.classes) + 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Item:
        record = self.images[index]
        image = read_image("voc0712", record.path, record.height, record.width)
        target = {"boxes": record.boxes, "labels": record.labels, "difficult": record.difficult, "image_id": record.image_id}
        return image, training_target(target, record.height, record.width) if self.training else target


# --- COCO 2017 -----------------------------------------------------------------------------------

COCO_URL = "https://cocodataset.org/#download"
COCO_SPLITS = ("train", "val")
COCO_KEYPOINTS = 17
COCO_ANNOTATIONS: dict[str, tuple[str, int]] = {
    "boxes": ("instances", 80),
    "masks": ("instances", 80),
    "keypoints": ("person_keypoints", 1),
}
"""Per task: the annotation file (``<stem>_<split>2017.json``) and how many categories it lists."""

MIN_VISIBLE_KEYPOINTS = 1
"""A keypoint training image needs this many labelled keypoints (visibility > 0):
``MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE`` (detectron2/config/defaults.py line 375),
applied when keypoints are on (build.py lines 471-476, ``filter_images_with_few_keypoints``
lines 77-108)."""


def valid_polygons(annotation: dict[str, Any]) -> dict[str, Any] | None:
    """``annotation`` without its polygons of fewer than 3 points (or an odd number of
    coordinates), or None when none is left: detectron2's ``load_coco_json`` drops such an object
    (detectron2/data/datasets/coco.py lines 185-197). RLE segmentations pass as they are."""
    segmentation = annotation.get("segmentation")
    if not isinstance(segmentation, list) or not segmentation:
        return annotation
    polygons = [p for p in segmentation if len(p) % 2 == 0 and len(p) >= 6]
    return {**annotation, "segmentation": polygons} if polygons else None


def require_coco(split: str, root: Path, task: Task) -> tuple[Path, Path]:
    """COCO's annotation file of ``task`` and image folder of ``split``; one
    :class:`DatasetMissingError` line naming the archives to get when either is missing (or
    pycocotools, which reads them)."""
    if importlib.util.find_spec("pycocotools") is None:
        raise DatasetMissingError("coco2017: reading COCO annotations needs pycocotools, which is not installed: pip install 'hardneg-bench[detection]'")
    annotations = Path(root) / "coco" / "annotations" / f"{COCO_ANNOTATIONS[task][0]}_{split}2017.json"
    images = Path(root) / "coco" / f"{split}2017"
    how = f"get {split}2017.zip and annotations_trainval2017.zip from {COCO_URL} and extract both in <data root>/coco"
    require("coco2017", [annotations, images], how, Path(root))
    return annotations, images


class CocoDetection(Dataset[Item]):
    """COCO 2017 ``split`` for ``task`` read with pycocotools, images in sorted id order
    (coco.py line 106). Labels are the category ids in sorted order numbered from 1
    (``category_to_label``; coco.py lines 81-102 number them from 0). Boxes are COCO's
    ``[x, y, w, h]`` as ``[x, y, x + w, y + h]``; ``masks`` are decoded from polygons or RLE with
    ``COCO.annToMask`` when an item is read; ``keypoints`` get 0.5 added to x and y, as
    detectron2 does to turn COCO's integer pixel indices into coordinates (coco.py lines 199-208;
    its COCO evaluator subtracts it again before writing results, evaluation/coco_evaluation.py
    lines 444-448). The train split drops the images without a non-crowd object (build.py lines
    46-74, 277-278) and, for keypoints, those with fewer than :data:`MIN_VISIBLE_KEYPOINTS`
    labelled keypoints, and hands out :func:`training_target` targets without crowd objects."""

    def __init__(self, root: Path, split: str, task: Task) -> None:
        annotations, self.image_folder = require_coco(split, root, task)
        from pycocotools.coco import COCO  # an extra: present, as require_coco checked
        categories = COCO_ANNOTATIONS[task][1]
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
                self.coco: COCO = COCO(str(annotations))
        except (ValueError, KeyError, TypeError, AssertionError) as err:  # pycocotools asserts the file holds a dict
            raise DatasetMissingError(f"coco2017: {annotations} is not a COCO annotation file ({type(err).__name__}); extract annotations_trainval2017.zip again") from None
        category_ids = sorted(self.coco.getCatIds())
        if len(category_ids) != categories:
            raise DatasetMissingError(f"coco2017: {annotations} lists {len(category_ids)} categories, not {categories}; extract annotations_trainval2017.zip again")
        self.category_to_label = {category: i + 1 for i, category in enumerate(category_ids)}
        self.classes = tuple(self.coco.cats[category]["name"] for category in category_ids)
        self.task, self.training = task, split == "train"
        self.objects: dict[int, list[dict[str, Any]]] = {}
        for image_id in sorted(self.coco.imgs):
            kept = [valid for ann in self.coco.imgToAnns[image_id] if (valid := valid_polygons(ann)) is not None]
            if self.training:
                kept = [ann for ann in kept if not ann.get("iscrowd", 0)]
            for ann in kept:
                if ann["category_id"] not in self.category_to_label:
                    raise DatasetMissingError(f"coco2017: annotation {ann.get('id')} of {annotations} has category {ann['category_id']}, which its categories do not list; extract annotations_trainval2017.zip again")
            if not self.training or self._usable(kept):
                self.objects[image_id] = kept
        self.image_ids = list(self.objects)

    def _usable(self, objects: list[dict[str, Any]]) -> bool:
        """Whether a training image stays: it has a non-crowd object (``objects`` has no crowd
        ones left) and, for keypoints, enough labelled keypoints (detectron2 counts the crowd
        objects' keypoints too; COCO's crowd objects have none labelled)."""
        visible = sum(int(v > 0) for ann in objects for v in (ann.get("keypoints") or [])[2::3])
        return bool(objects) and (self.task != "keypoints" or visible >= MIN_VISIBLE_KEYPOINTS)

    @property
    def num_classes(self) -> int:
        """The classes a torchvision detector predicts, the background included."""
        return len(self.classes) + 1

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Item:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        height, width = int(info["height"]), int(info["width"])
        image = read_image("coco2017", self.image_folder / info["file_name"], height, width)
        objects = self.objects[image_id]
        boxes = np.array([ann["bbox"] for ann in objects], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        target: dict[str, Any] = {
            "boxes": torch.from_numpy(boxes.astype(np.float32)),
            "labels": torch.tensor([self.category_to_label[ann["category_id"]] for ann in objects], dtype=torch.int64),
            "iscrowd": torch.tensor([bool(ann.get("iscrowd", 0)) for ann in objects], dtype=torch.bool),
            "image_id": image_id,
        }
        if self.task == "masks":
            masks = [self.coco.annToMask(ann) if ann.get("segmentation") else np.zeros((height, width), np.uint8) for ann in objects]
            target["masks"] = torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8)
        if self.task == "keypoints":
            keypoints = torch.tensor([ann.get("keypoints") or [0] * (3 * COCO_KEYPOINTS) for ann in objects], dtype=torch.float32).reshape(-1, COCO_KEYPOINTS, 3)
            keypoints[..., :2] += 0.5
            target["keypoints"] = keypoints
        return image, training_target(target, height, width) if self.training else target


# --- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionSpec:
    """One detection dataset: ``load(split, root, task)`` gives the split as a ``Dataset``."""

    name: str
    description: str
    splits: tuple[str, ...]
    tasks: tuple[Task, ...]
    load: Callable[[str, Path, Task], Dataset[Item]]
    location: str
    """Where its files sit under the data root (what ``reproduce --dry-run`` looks for)."""
    require: Callable[[str, Path, Task], object]
    """``require(split, root, task)``: one :class:`DatasetMissingError` line unless the split's
    files are there (nothing is parsed: a run checks this before pretraining)."""


DETECTION_DATASETS: dict[str, DetectionSpec] = {
    spec.name: spec
    for spec in (
        DetectionSpec("voc0712", "PASCAL VOC: train = VOC2007 trainval + VOC2012 trainval, test = VOC2007 test (20 classes)", tuple(VOC_SPLITS), ("boxes",), lambda split, root, task: VocDetection(root, VOC_SPLITS[split], training=split == "train"), "VOCdevkit", require_voc),
        DetectionSpec("coco2017", "COCO 2017: train2017 / val2017, boxes and masks (80 classes) or person keypoints", COCO_SPLITS, ("boxes", "masks", "keypoints"), lambda split, root, task: CocoDetection(root, split, task), "coco", require_coco),
    )
}


def detection_dataset(name: str, split: str, root: Path, task: str = "boxes") -> Dataset[Item]:
    """The ``split`` of detection dataset ``name`` read from ``root`` (``--data-root``) for
    ``task``; an unknown name, split or task is one :class:`ConfigError` line."""
    if name not in DETECTION_DATASETS:
        raise ConfigError(f"unknown detection dataset {name!r} (known: {', '.join(DETECTION_DATASETS)})")
    spec = DETECTION_DATASETS[name]
    if split not in spec.splits:
        raise ConfigError(f"detection dataset {name!r} has no split {split!r} (splits: {', '.join(spec.splits)})")
    if task not in spec.tasks:
        raise ConfigError(f"detection dataset {name!r} has no task {task!r} (tasks: {', '.join(spec.tasks)})")
    return spec.load(split, Path(root), cast(Task, task))
