"""The built-in datasets: 32x32 RGB images of geometric shapes, generated in about a second.

Each image is one shape drawn with an anti-aliased edge (from a signed distance function) over a
textured background. Per image, independently: the shape's colour, position, scale and rotation,
and the background's two colours and grating (frequency, orientation, phase). So the class is the
shape alone; colour, position, scale, rotation and texture are nuisances that a good
self-supervised representation should discount.

Two choices keep the shape learnable by a tiny CNN in a minute of CPU (measured while designing
it): shapes are always lighter than their background (any hue), so edges have one polarity; and
the texture is low-contrast, so that SimCLR's two crops of an image match on the shape rather
than on a shared, more distinctive background (with a 0.25 texture contrast and random
light/dark order, a 30-epoch SimCLR probe stayed within 4 points of a random encoder).

``shapes`` has 10 classes; ``shapes-novel``, its transfer target, has 10 other shapes under the same
nuisances. Every split is a pure function of the dataset, split and class, so two machines
generate identical bytes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .base import DatasetSpec, ImageTensorSet, Split

SIZE = 32
TRAIN_PER_CLASS, TEST_PER_CLASS = 500, 200
SEED = 20240611
SHAPE_RADIUS = (0.45, 0.85)
"""Range of the shape's radius, in half image widths."""
SHAPE_BRIGHTNESS, BACKGROUND_BRIGHTNESS = (0.65, 1.0), (0.1, 0.45)
"""Ranges of the brightest channel: shapes are lighter than their background, in any hue."""
TEXTURE_CONTRAST = 0.1
"""Largest per-channel difference between the background's two colours."""

Points = tuple[np.ndarray, np.ndarray]
SDF = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------
# Signed distance functions in the shape's own frame (the shape fits in the unit disc):
# negative inside, positive outside.


def circle(cx: float, cy: float, r: float) -> SDF:
    return lambda x, y: np.hypot(x - cx, y - cy) - r


def box(cx: float, cy: float, hx: float, hy: float) -> SDF:
    def sdf(x, y):
        qx, qy = np.abs(x - cx) - hx, np.abs(y - cy) - hy
        return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)

    return sdf


def convex(*vertices: tuple[float, float]) -> SDF:
    """A convex polygon given counter-clockwise: the largest signed distance to its edge lines."""
    edges = []
    for (x0, y0), (x1, y1) in zip(vertices, vertices[1:] + vertices[:1]):
        nx, ny = y1 - y0, x0 - x1
        norm = np.hypot(nx, ny)
        edges.append((nx / norm, ny / norm, (nx * x0 + ny * y0) / norm))
    return lambda x, y: np.max([nx * x + ny * y - c for nx, ny, c in edges], axis=0)


def regular(n: int, radius: float) -> SDF:
    angles = np.pi / 2 + 2 * np.pi * np.arange(n) / n
    return convex(*[(radius * np.cos(a), radius * np.sin(a)) for a in angles])


def star(points: int, outer: float, inner: float) -> SDF:
    """Radius alternating between ``outer`` (tips) and ``inner`` (notches), linear in angle."""
    sector = 2 * np.pi / points

    def sdf(x, y):
        offset = np.abs(np.mod(np.arctan2(y, x), sector) - sector / 2) / (sector / 2)  # 1 at a tip, 0 mid-notch
        return np.hypot(x, y) - (inner + (outer - inner) * offset)

    return sdf


def union(*parts: SDF) -> SDF:
    return lambda x, y: np.min([p(x, y) for p in parts], axis=0)


def subtract(shape: SDF, hole: SDF) -> SDF:
    return lambda x, y: np.maximum(shape(x, y), -hole(x, y))


SHAPE_CLASSES: dict[str, SDF] = {
    "circle": circle(0, 0, 0.8),
    "triangle": regular(3, 0.95),
    "square": box(0, 0, 0.62, 0.62),
    "star": star(5, 0.98, 0.42),
    "plus": union(box(0, 0, 0.85, 0.24), box(0, 0, 0.24, 0.85)),
    "ring": lambda x, y: np.abs(np.hypot(x, y) - 0.62) - 0.2,
    "crescent": subtract(circle(0, 0, 0.82), circle(0.38, 0, 0.62)),
    "heart": union(circle(-0.3, 0.22, 0.4), circle(0.3, 0.22, 0.4), convex((-0.66, 0.08), (0, -0.88), (0.66, 0.08))),
    "arrow": union(box(-0.4, 0, 0.48, 0.17), convex((0.05, 0.62), (0.05, -0.62), (0.92, 0))),
    "L": union(box(-0.4, 0.05, 0.2, 0.75), box(-0.05, -0.55, 0.55, 0.2)),
}

NOVEL_CLASSES: dict[str, SDF] = {
    "ellipse": lambda x, y: (np.hypot(x / 0.92, y / 0.45) - 1) * 0.45,
    "diamond": convex((0, 0.92), (-0.5, 0), (0, -0.92), (0.5, 0)),
    "T": union(box(0, 0.55, 0.65, 0.18), box(0, -0.15, 0.2, 0.7)),
    "hourglass": union(convex((-0.6, 0.75), (0, 0), (0.6, 0.75)), convex((0, 0), (-0.6, -0.75), (0.6, -0.75))),
    "semicircle": lambda x, y: np.maximum(np.hypot(x, y + 0.25) - 0.85, -(y + 0.25)),
    "frame": subtract(box(0, 0, 0.68, 0.68), box(0, 0, 0.38, 0.38)),
    "bar": box(0, 0, 0.92, 0.2),
    "dots": union(circle(-0.45, 0, 0.36), circle(0.45, 0, 0.36)),
    "star4": star(4, 0.98, 0.3),
    "H": union(box(-0.5, 0, 0.17, 0.72), box(0.5, 0, 0.17, 0.72), box(0, 0, 0.45, 0.15)),
}


# --------------------------------------------------------------------------------------------
# Rendering


def _pixel_centres() -> Points:
    """Pixel centres in image coordinates [-1, 1], y up."""
    c = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
    x, y = np.meshgrid(c, -c)
    return x, y


def _colours(rng: np.random.Generator, n: int, brightness: tuple[float, float]) -> np.ndarray:
    """(n, 3) colours of random hue and saturation whose brightest channel lies in ``brightness``."""
    colour = rng.uniform(0, 1, size=(n, 3))
    return colour / colour.max(1, keepdims=True) * rng.uniform(*brightness, size=(n, 1))


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, H, W, 3) dark textures: a sinusoidal grating between two nearby dark colours."""
    base = _colours(rng, n, BACKGROUND_BRIGHTNESS)
    second = np.clip(base + rng.uniform(-TEXTURE_CONTRAST, TEXTURE_CONTRAST, size=(n, 3)), 0, 1)
    x, y = _pixel_centres()
    frequency = rng.uniform(1.0, 5.0, size=(n, 1, 1))
    angle = rng.uniform(0, np.pi, size=(n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    wave = 0.5 + 0.5 * np.sin(np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)) + phase)
    return base[:, None, None, :] + (second - base)[:, None, None, :] * wave[..., None]


def render_class(sdf: SDF, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uint8 (n, 3, H, W) images of one shape with random nuisances."""
    scale = rng.uniform(*SHAPE_RADIUS, size=(n, 1, 1))
    centre = rng.uniform(-1, 1, size=(n, 2, 1, 1)) * (1 - 0.8 * scale[:, None])
    angle = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    x, y = _pixel_centres()
    dx, dy = x - centre[:, 0], y - centre[:, 1]
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / scale
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / scale
    distance_px = sdf(u, v) * scale * SIZE / 2  # signed distance in pixels
    alpha = np.clip(0.5 - distance_px, 0, 1)[..., None]
    colour = _colours(rng, n, SHAPE_BRIGHTNESS)
    image = _background(rng, n) * (1 - alpha) + colour[:, None, None, :] * alpha
    image += rng.normal(0, 0.02, size=image.shape)
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)


def render_shapes(classes: dict[str, SDF], n_per_class: int, seed: int) -> ImageTensorSet:
    """``n_per_class`` images of every class in ``classes``; class i draws its nuisances from the
    random stream (seed, i), so the output depends on nothing else."""
    images, labels = [], []
    for label, sdf in enumerate(classes.values()):
        rng = np.random.default_rng([seed, label])
        images.append(render_class(sdf, n_per_class, rng))
        labels.append(np.full(n_per_class, label))
    return ImageTensorSet(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)).long())


@lru_cache(maxsize=8)
def _split(dataset: str, split: str) -> ImageTensorSet:
    classes = SHAPE_CLASSES if dataset == "shapes" else NOVEL_CLASSES
    stream = {"shapes": 0, "shapes-novel": 1}[dataset] * 2 + (split == "test")
    n = TEST_PER_CLASS if split == "test" else TRAIN_PER_CLASS
    return render_shapes(classes, n, SEED + stream)


def _loader(dataset: str):
    def load(split: Split, root: Path, download: bool) -> ImageTensorSet:
        # pretrain and train are the same images; test comes from another random stream
        return _split(dataset, "test" if split == "test" else "train")

    return load


# A fixed input normalisation, NOT the datasets' statistics: these were measured on an earlier
# renderer (light and dark shapes, 0.49-0.50 / 0.29-0.30) and kept when the shapes became lighter
# than a dark background, because every result in results/ and the README was made with them.
# The current train splits measure (images.float() / 255).mean((0, 2, 3)) = (0.240, 0.238, 0.236)
# and .std(...) = (0.199, 0.199, 0.200) for shapes, (0.227, 0.226, 0.230) / (0.185, 0.184, 0.184)
# for shapes-novel. Switching to them changes the results: re-run results/shapes.md and results/shapes-runs.md if you do.
MEAN, STD = (0.5, 0.5, 0.5), (0.29, 0.29, 0.29)
_SIZES = {"pretrain": 10 * TRAIN_PER_CLASS, "train": 10 * TRAIN_PER_CLASS, "test": 10 * TEST_PER_CLASS}


def _spec(name: str, description: str, transfer_target: str | None) -> DatasetSpec:
    return DatasetSpec(name, description, 10, SIZE, MEAN, STD, _loader(name), split_sizes=_SIZES, transfer_target=transfer_target, builtin=True)


SHAPES = _spec("shapes", "built-in: 10 shapes under random colour, position, scale, rotation and background texture", "shapes-novel")
SHAPES_NOVEL = _spec("shapes-novel", "built-in: 10 other shapes under the same nuisances (transfer target of shapes)", None)
