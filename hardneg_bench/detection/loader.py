"""The training images as detectron2's default training loader hands them to the model, in an order
that is a function of the seed alone (so a resumed run reads what an uninterrupted one reads).

``D2`` is facebookresearch/detectron2@02b5c4e. Per process, detectron2's ``TrainingSampler``
(data/samplers/distributed_sampler.py) draws an endless stream of random permutations of the
dataset from one seed shared by all processes, and process r takes its elements r, r + N, ...;
``AspectRatioGroupedDataset`` (data/common.py) puts each image in one of two buckets (wider than
tall, or not) and hands a bucket out as a batch when it holds the process's share of the batch
(D2 defaults.py line 128: ASPECT_RATIO_GROUPING True). The default ``DatasetMapper``
(data/dataset_mapper.py, data/detection_utils.py ``build_augmentation``) resizes the shorter side
to a size drawn per image (here torchvision's transform inside the detector draws it) and flips
the image horizontally with probability 0.5 (INPUT.RANDOM_FLIP "horizontal", D2 defaults.py line
68): the flips are drawn here, with the order, from the same seed.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .datasets import CocoDetection, Item, VocDetection

COCO_PERSON_KEYPOINT_FLIP: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
"""Which keypoint each COCO person keypoint becomes in a mirrored image: detectron2's
``COCO_PERSON_KEYPOINT_NAMES`` (nose, left/right eye, ear, shoulder, elbow, wrist, hip, knee,
ankle) with its ``COCO_PERSON_KEYPOINT_FLIP_MAP`` pairs swapped (D2 data/datasets/builtin_meta.py
lines 157-180)."""

MODEL_KEYS = ("boxes", "labels", "masks", "keypoints")
"""What a target gives the detector (VOC's ``difficult`` and the image id are the evaluator's)."""

Placed = tuple[int, bool]
"""A dataset index and whether the image is flipped."""


def flip_keypoints(keypoints: torch.Tensor, width: int, height: int, flip: bool, flip_map: Sequence[int]) -> torch.Tensor:
    """(N, K, 3) keypoints (x, y, visibility) as D2 detection_utils.py
    ``transform_keypoint_annotations`` (lines 337-382) transforms them: x mirrored to
    ``width - x`` when flipped, a point outside [0, width] x [0, height] made unlabelled, each
    point swapped with its mirror twin (``flip_map``), and every unlabelled point's x, y and
    visibility set to 0."""
    keypoints = keypoints.clone()
    if flip:
        keypoints[..., 0] = width - keypoints[..., 0]
    x, y = keypoints[..., 0], keypoints[..., 1]
    inside = (x >= 0) & (y >= 0) & (x <= width) & (y <= height)
    keypoints[..., 2] = torch.where(inside, keypoints[..., 2], 0)
    if flip:
        keypoints = keypoints[:, list(flip_map)]
    return keypoints * (keypoints[..., 2:] != 0)


def flip_item(image: torch.Tensor, target: dict[str, Any], flip: bool, flip_map: Sequence[int]) -> Item:
    """``image`` (3, H, W) and its target's boxes (XYXY), masks (N, H, W) and keypoints mirrored
    left to right when ``flip`` (D2 transforms/transform.py ``HFlipTransform``: coordinates
    x -> W - x, a box's corners then sorted, pixels reversed along the width); only the keys the
    detector reads (:data:`MODEL_KEYS`) are kept."""
    height, width = image.shape[-2:]
    target = {key: target[key] for key in MODEL_KEYS if key in target}
    if flip:
        image = image.flip(-1)
        boxes = target["boxes"]
        target["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
    if "keypoints" in target:
        target["keypoints"] = flip_keypoints(target["keypoints"], width, height, flip, flip_map)
    return image, target


class TrainingImages(Dataset[Item]):
    """``data``'s training items, each flipped or not as the batch plan says."""

    def __init__(self, data: Dataset[Item], flip_map: Sequence[int] = COCO_PERSON_KEYPOINT_FLIP) -> None:
        self.data, self.flip_map = data, flip_map

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, placed: Placed) -> Item:
        index, flip = placed
        image, target = self.data[index]
        return flip_item(image, target, flip, self.flip_map)


def is_wide(data: Dataset[Item]) -> list[bool]:
    """Whether each image is wider than tall (D2 common.py ``AspectRatioGroupedDataset``'s bucket),
    from the annotations' sizes, without reading an image."""
    if isinstance(data, VocDetection):
        return [image.width > image.height for image in data.images]
    if isinstance(data, CocoDetection):
        return [data.coco.imgs[i]["width"] > data.coco.imgs[i]["height"] for i in data.image_ids]
    raise TypeError(f"no image sizes known for {type(data).__name__}")


def _stream(size: int, seed: int) -> Iterator[Placed]:
    """D2 ``TrainingSampler._infinite_indices``: permutation after permutation of ``size``
    images from one generator, each image with its flip drawn after its permutation."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(size, generator=generator).tolist()
        flips = (torch.rand(size, generator=generator) < 0.5).tolist()
        yield from zip(order, flips)


def batch_plan(wide: Sequence[bool], batch: int, seed: int, rank: int = 0, world: int = 1) -> Iterator[list[Placed]]:
    """This process's batches, the first of the run first: its share (every ``world``-th element
    from ``rank``) of the stream grouped by orientation into batches of ``batch``."""
    buckets: tuple[list[Placed], list[Placed]] = ([], [])
    for placed in islice(_stream(len(wide), seed), rank, None, world):
        bucket = buckets[0 if wide[placed[0]] else 1]
        bucket.append(placed)
        if len(bucket) == batch:
            yield bucket[:]
            bucket.clear()


def training_loader(data: Dataset[Item], batch: int, seed: int, start: int, workers: int, pin: bool, rank: int = 0, world: int = 1) -> DataLoader:
    """Batches of (uint8 image, target) lists of this process, from its ``start``-th batch; images
    decoded in ``workers`` processes."""
    plan = islice(batch_plan(is_wide(data), batch, seed, rank, world), start, None)  # the earlier batches drawn, no image read
    return DataLoader(TrainingImages(data), batch_sampler=plan, num_workers=workers, collate_fn=list, pin_memory=pin)
