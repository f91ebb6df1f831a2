"""A tiny detection dataset and the pipeline that fine-tunes on it, shared by the detection stage's
tests: VOC files written in the released layout (bright squares on a dark background, read by the
real loader) and a run whose encoder is the tiny variant's ResNet-50."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.evaluations.registry import EVALUATIONS
from hardneg_bench.pipeline import Pipeline
from hardneg_bench.recipes import resolve_config
from hardneg_bench.store import RunStore

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)
SIDE, SQUARE = 48, 32
"""Images of 48 x 48 px with 32 x 32 squares on the 16 px grid: each square is one of the
detector's 32 px anchors (stride 16), the easiest boxes there are."""
ENCODER_SETTINGS = ["model.backbone=resnet50", "model.width=0.0625", "model.stem=imagenet"]
"""A ResNet-50 with the ImageNet stem at 1/16 width: the tiny variant's encoder."""


def squares(count: int, seed: int) -> list[list[tuple[int, int]]]:
    """Per image, the top-left corners of its squares (one or two, on the 16 px grid, apart)."""
    rng = np.random.default_rng(seed)
    corners = [(x, y) for x in range(0, SIDE - SQUARE + 1, 16) for y in range(0, SIDE - SQUARE + 1, 16)]
    out = []
    for i in range(count):
        first = corners[rng.integers(len(corners))]
        apart = [c for c in corners if abs(c[0] - first[0]) >= SQUARE or abs(c[1] - first[1]) >= SQUARE]
        out.append([first] + ([apart[rng.integers(len(apart))]] if i % 2 and apart else []))
    return out


def voc_annotation(image_id: str, boxes: list[tuple[int, int]]) -> str:
    """A VOC XML file: the size and one ``car`` object per square, its box 1-based inclusive."""
    objects = "".join(
        f"<object><name>car</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin><xmax>{x + SQUARE}</xmax><ymax>{y + SQUARE}</ymax></bndbox></object>"
        for x, y in boxes
    )
    return f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename><size><width>{SIDE}</width><height>{SIDE}</height><depth>3</depth></size><segmented>0</segmented>{objects}</annotation>"


def write_squares_voc(root: Path, layout: dict[tuple[str, str], list[list[tuple[int, int]]]]) -> None:
    """``VOCdevkit/<year>/`` with each image set's images (squares at the given corners) as the
    VOC tar files unpack them."""
    for (year, image_set), images in layout.items():
        folder = root / "VOCdevkit" / year
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        ids = [f"{image_set}_{i:06d}" for i in range(len(images))]
        (folder / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{i}\n" for i in ids))
        for image_id, boxes in zip(ids, images):
            pixels = np.full((SIDE, SIDE, 3), 20, np.uint8)
            for x, y in boxes:
                pixels[y : y + SQUARE, x : x + SQUARE] = 230
            Image.fromarray(pixels).save(folder / "JPEGImages" / f"{image_id}.jpg", quality=95)
            (folder / "Annotations" / f"{image_id}.xml").write_text(voc_annotation(image_id, boxes))


def squares_voc(root: Path, train: int, seed: int = 0) -> Path:
    """``train`` images split between VOC2007 and VOC2012 trainval, and the same images again as
    VOC2007 test."""
    images = squares(train, seed)
    write_squares_voc(root, {("VOC2007", "trainval"): images[: train // 2], ("VOC2012", "trainval"): images[train // 2 :], ("VOC2007", "test"): images})
    return root


def pipeline(root: Path, data: Path, *overrides: str) -> Pipeline:
    cfg = resolve_config("simclr", "shapes", overrides=[*ENCODER_SETTINGS, "transfer=[voc0712:detection]", *overrides])
    return Pipeline(cfg, RunStore(root), CPU, data, download=False)


def detection_records(p: Pipeline) -> list[dict]:
    """The detection stages of the pipeline's random-init ResNet-50 (its encoder stored first)."""
    return p.evaluation(EVALUATIONS["detection"], p.random_init_encoder(), "voc0712")
