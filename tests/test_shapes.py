"""The built-in datasets: deterministic, balanced, disjoint classes, real nuisances."""

import time

import numpy as np
import torch

from hardneg_bench.data.shapes import NOVEL_CLASSES, SHAPE_CLASSES, SHAPES, SHAPES_NOVEL, render_shapes


def test_same_seed_same_bytes_other_seed_other_images():
    a = render_shapes(SHAPE_CLASSES, 20, seed=1)
    b = render_shapes(SHAPE_CLASSES, 20, seed=1)
    c = render_shapes(SHAPE_CLASSES, 20, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert (a.images != c.images).float().mean() > 0.5


def test_splits_shapes_labels_and_balance():
    for spec in (SHAPES, SHAPES_NOVEL):
        for split in ("pretrain", "train", "test"):
            data = spec.load(split, None, False)
            assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 32, 32)
            assert len(data) == spec.split_sizes[split]
            assert data.labels.bincount().tolist() == [len(data) // 10] * 10
        train, test = spec.load("train", None, False), spec.load("test", None, False)
        assert torch.equal(spec.load("pretrain", None, False).images, train.images)
        # no test image equals a training image
        train_rows = {bytes(row) for row in train.images.flatten(1).numpy()}
        assert not any(bytes(row) in train_rows for row in test.images.flatten(1).numpy())


def test_class_sets_are_disjoint_and_ten_each():
    assert len(SHAPE_CLASSES) == len(NOVEL_CLASSES) == 10
    assert not set(SHAPE_CLASSES) & set(NOVEL_CLASSES)
    assert SHAPES.transfer_target == SHAPES_NOVEL.name


def test_generation_is_fast():
    started = time.perf_counter()
    render_shapes(SHAPE_CLASSES, 500, seed=3)
    render_shapes(NOVEL_CLASSES, 200, seed=4)
    assert time.perf_counter() - started < 5


def test_every_shape_covers_part_of_its_frame():
    c = np.linspace(-1, 1, 201)
    x, y = np.meshgrid(c, c)
    disc = np.hypot(x, y) <= 1
    for name, sdf in {**SHAPE_CLASSES, **NOVEL_CLASSES}.items():
        inside = (sdf(x, y) < 0) & disc
        assert 0.1 < inside.sum() / disc.sum() < 0.8, name
        outside = np.hypot(x, y) > 1.01
        assert not ((sdf(x, y) < 0) & outside).any(), f"{name} leaves the unit disc"


def test_nuisances_vary_within_a_class():
    data = render_shapes(SHAPE_CLASSES, 200, seed=5)
    images = data.images[data.labels == 0].float() / 255  # circles
    mean_colour = images.mean(dim=(2, 3))
    assert mean_colour.std(0).min() > 0.05  # colours differ
    # the darkest/brightest location differs: position and texture vary
    centres = images.mean(1).flatten(1).argmax(1)
    assert len(set(centres.tolist())) > 50
    # different classes differ beyond nuisances: class-mean images are not all alike
    per_class = torch.stack([(data.images[data.labels == k].float() / 255).std(1).mean(0) for k in range(10)])
    assert per_class.flatten(1).std(0).mean() > 0.005
