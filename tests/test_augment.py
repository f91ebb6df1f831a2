"""The batched augmentation draws the reference pipeline's distributions and computes
torchvision's ops."""

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms import v2

from hardneg_bench.config import AugmentConfig
from hardneg_bench.data.augment import (
    BRIGHTNESS,
    CONTRAST,
    HUE,
    SATURATION,
    AugmentParams,
    BatchAugment,
    adjust_hue,
    blend_jitter,
    blur_kernel_size,
    gaussian_blur,
    grayscale,
    normalize_batch,
    reference_transform,
)

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
DRAWS = 20_000


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


# 1.95 * sqrt(2 / 20000) is the 0.1% critical value; a wrong distribution lands far above it
KS_LIMIT = 0.025


@pytest.mark.parametrize(
    "height,width,scale,ratio",
    [(32, 32, (0.08, 1.0), (3 / 4, 4 / 3)), (96, 64, (0.2, 1.0), (3 / 4, 4 / 3)), (32, 32, (0.9, 1.0), (2.5, 4.0))],
)
def test_crop_boxes_match_random_resized_crop(height, width, scale, ratio):
    cfg = AugmentConfig(crop_scale=scale, crop_ratio=ratio)
    params = BatchAugment(cfg, MEAN, STD, 32).sample_params(DRAWS, height, width, torch.Generator().manual_seed(0))
    top, left, h, w = params.crop.T.double().numpy()
    torch.manual_seed(1)
    reference = np.array([v2.RandomResizedCrop.get_params(torch.empty(3, height, width), list(scale), list(ratio)) for _ in range(DRAWS)], dtype=float)
    r_top, r_left, r_h, r_w = reference.T
    assert ks_statistic(h * w / (height * width), r_h * r_w / (height * width)) < KS_LIMIT
    assert ks_statistic(np.log(w / h), np.log(r_w / r_h)) < KS_LIMIT
    assert ks_statistic(top / height, r_top / height) < KS_LIMIT
    assert ks_statistic(left / width, r_left / width) < KS_LIMIT
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()


def test_probabilities_and_factor_ranges():
    cfg = AugmentConfig(flip_p=0.5, jitter=(0.4, 0.3, 0.2, 0.1), jitter_p=0.8, grayscale_p=0.2, blur_p=0.3, blur_sigma=(0.1, 2.0))
    p = BatchAugment(cfg, MEAN, STD, 32).sample_params(DRAWS, 32, 32, torch.Generator().manual_seed(2))
    tolerance = 4 * math.sqrt(0.25 / DRAWS)  # four binomial standard deviations
    for flags, rate in ((p.flip, 0.5), (p.jitter, 0.8), (p.gray, 0.2), (p.blur_sigma > 0, 0.3)):
        assert abs(flags.float().mean().item() - rate) < tolerance
    for column, (low, high) in enumerate([(0.6, 1.4), (0.7, 1.3), (0.8, 1.2), (-0.1, 0.1)]):
        values = p.jitter_factors[:, column].numpy()
        uniform = np.random.default_rng(column).uniform(low, high, DRAWS)
        assert values.min() >= low and values.max() <= high
        assert ks_statistic(values, uniform) < KS_LIMIT
    sigmas = p.blur_sigma[p.blur_sigma > 0].numpy()
    assert ks_statistic(sigmas, np.random.default_rng(9).uniform(0.1, 2.0, len(sigmas))) < 2 * KS_LIMIT
    orders = [tuple(o) for o in p.jitter_order.tolist()]
    counts = np.array([orders.count(o) for o in set(orders)])
    assert len(counts) == 24 and all(sorted(o) == [0, 1, 2, 3] for o in set(orders))
    assert abs(counts - DRAWS / 24).max() < 5 * math.sqrt(DRAWS / 24)


@pytest.fixture
def images():
    torch.manual_seed(3)
    return torch.rand(6, 3, 20, 20)


@pytest.mark.parametrize(
    "op,theirs,factors",
    [
        (BRIGHTNESS, TF.adjust_brightness, [0.6, 0.9, 1.0, 1.2, 1.4, 0.7]),
        (CONTRAST, TF.adjust_contrast, [0.6, 0.9, 1.0, 1.2, 1.4, 0.7]),
        (SATURATION, TF.adjust_saturation, [0.0, 0.5, 1.0, 1.3, 1.6, 0.8]),
        (HUE, TF.adjust_hue, [-0.5, -0.1, 0.0, 0.05, 0.3, 0.5]),
    ],
)
def test_colour_ops_match_torchvision(images, op, theirs, factors):
    if op == HUE:
        out = adjust_hue(images.clone(), torch.tensor(factors))
    else:
        out = blend_jitter(images.clone(), torch.full((len(factors),), op), torch.tensor(factors))
    for image, factor, got in zip(images, factors, out):
        assert torch.allclose(got, theirs(image, factor), atol=1e-5)


def test_mixed_blend_ops_in_one_batch(images):
    ops = torch.tensor([BRIGHTNESS, CONTRAST, SATURATION, BRIGHTNESS, CONTRAST, SATURATION])
    factors = torch.tensor([0.7, 1.3, 0.2, 1.0, 1.0, 1.0])
    out = blend_jitter(images.clone(), ops, factors)
    functions = {BRIGHTNESS: TF.adjust_brightness, CONTRAST: TF.adjust_contrast, SATURATION: TF.adjust_saturation}
    for image, op, factor, got in zip(images, ops.tolist(), factors.tolist(), out):
        assert torch.allclose(got, functions[op](image, factor), atol=1e-6)
    assert torch.equal(out[3:], images[3:])  # factor 1 is exactly the identity


def _reference_apply(image: torch.Tensor, params: AugmentParams, i: int, crop_size: int, kernel_size: int) -> torch.Tensor:
    """One image through torchvision's functional ops with the batch's drawn parameters."""
    top, left, h, w = params.crop[i].long().tolist()
    x = TF.resized_crop(image, top, left, h, w, [crop_size, crop_size], antialias=False)
    if params.flip[i]:
        x = TF.horizontal_flip(x)
    if params.jitter[i]:
        functions = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        for op in params.jitter_order[i].tolist():
            x = functions[op](x, params.jitter_factors[i, op].item())
    if params.gray[i]:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    sigma = params.blur_sigma[i].item()
    if sigma > 0:
        x = TF.gaussian_blur(x, [kernel_size, kernel_size], [sigma, sigma])
    return TF.normalize(x, list(MEAN), list(STD))


def test_whole_batch_matches_torchvision_per_image():
    """Every image of a batch, with the parameters drawn for it, equals torchvision's ops applied
    to it alone in the drawn order (full-image crops, so no border sampling differs)."""
    torch.manual_seed(8)
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_p=0.8, grayscale_p=0.2, blur_p=0.5)
    augment = BatchAugment(cfg, MEAN, STD, 16)
    params = augment.sample_params(64, 16, 16, torch.Generator().manual_seed(9))
    assert params.jitter.any() and (~params.jitter).any() and params.gray.any() and (params.blur_sigma > 0).any()
    out = augment.apply(images, params)
    for i, image in enumerate(images):
        expected = _reference_apply(image.float() / 255, params, i, 16, augment.kernel_size)
        assert torch.allclose(out[i], expected, atol=1e-4), i


def _ramps() -> torch.Tensor:
    # a red ramp across, a green ramp down, blue diagonally: crops move the channel means and
    # the spread
    ramp = torch.linspace(20, 235, 32)
    return torch.stack([ramp.expand(32, 32), ramp.view(32, 1).expand(32, 32), (ramp + ramp.view(32, 1)).expand(32, 32) / 2]).round().to(torch.uint8)


def _orange() -> torch.Tensor:
    # one colour: crops change nothing, so every colour op shows in the channel means
    return torch.tensor([200, 120, 40], dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32).contiguous()


@pytest.mark.parametrize("make_image", [_ramps, _orange])
def test_output_statistics_match_the_pil_pipeline(make_image):
    """The whole pipeline, end to end: per-view statistics of one image's views from the batched
    augmentation and from torchvision's per-image PIL pipeline come from the same distributions
    (defaults: crop, flip, jitter 0.4/0.4/0.4/0.1 at p 0.8, grayscale 0.2; blur at p 0.5)."""
    draws = 4000
    image = make_image()
    cfg = AugmentConfig(blur_p=0.5)
    ours = BatchAugment(cfg, MEAN, STD, 32)(image.expand(draws, -1, -1, -1), torch.Generator().manual_seed(11))
    transform = reference_transform(cfg, MEAN, STD, 32)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    theirs = torch.stack([transform(pil) for _ in range(draws)])
    limit = 1.95 * math.sqrt(2 / draws)  # the 0.1% critical value of the KS test
    # Integer crop boxes make the statistics discrete, and the PIL path rounds to uint8 after each
    # op: the same noise (width 0.05 in normalised units) smooths both samples so
    # that those rounding-sized shifts of the atoms do not count as a different distribution.
    noise = np.random.default_rng(12).uniform(-0.025, 0.025, (2, draws))
    for name, statistic in {
        "mean": lambda v: v.mean(dim=(1, 2, 3)),
        "spread": lambda v: v.std(dim=(1, 2, 3)),
        **{f"channel {c}": (lambda v, c=c: v[:, c].mean(dim=(1, 2))) for c in range(3)},
    }.items():
        assert ks_statistic(statistic(ours).numpy() + noise[0], statistic(theirs).numpy() + noise[1]) < limit, name


def test_grayscale_and_blur_match_torchvision(images):
    assert torch.allclose(grayscale(images), TF.rgb_to_grayscale(images), atol=1e-6)
    sigmas = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.0])
    out = gaussian_blur(images, 5, sigmas)
    for image, sigma, got in zip(images, sigmas.tolist(), out):
        expected = image if sigma == 0 else TF.gaussian_blur(image, [5, 5], [sigma, sigma])
        assert torch.allclose(got, expected, atol=1e-5)


def test_resized_crop_and_flip_match_torchvision(images):
    augment = BatchAugment(AugmentConfig(), MEAN, STD, 28)
    crop = torch.tensor([[0, 0, 20, 20], [2, 3, 10, 14], [5, 1, 15, 8], [0, 0, 20, 20], [4, 4, 12, 12], [1, 6, 19, 13]], dtype=torch.float)
    flip = torch.tensor([False, False, True, True, False, True])
    out = augment.resized_crop(images, crop, flip)
    for image, (top, left, h, w), flipped, got in zip(images, crop.long().tolist(), flip, out):
        expected = TF.resized_crop(image, top, left, h, w, [28, 28], antialias=False)
        if flipped:
            expected = TF.horizontal_flip(expected)
        # identical sampling; only the outermost ring of output pixels may read one pixel beyond
        # the box (grid_sample clamps at the image border, torchvision at the box border)
        assert torch.allclose(got[:, 2:-2, 2:-2], expected[:, 2:-2, 2:-2], atol=1e-5)
        if (top, left, h, w) == (0, 0, 20, 20):
            assert torch.allclose(got, expected, atol=1e-5)


def test_deterministic_per_generator_and_identity_when_disabled():
    torch.manual_seed(4)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    augment = BatchAugment(AugmentConfig(), MEAN, STD, 24)
    a = augment(images, torch.Generator().manual_seed(5))
    assert a.shape == (16, 3, 24, 24) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, augment(images, torch.Generator().manual_seed(5)))
    assert not torch.allclose(a, augment(images, torch.Generator().manual_seed(6)))
    off = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0, jitter_p=0, grayscale_p=0, blur_p=0)
    same = BatchAugment(off, MEAN, STD, 32)(images, torch.Generator().manual_seed(7))
    assert torch.allclose(same, normalize_batch(images, MEAN, STD, None), atol=1e-5)


def test_reference_transform_takes_pil_and_tensors():
    cfg = AugmentConfig()
    transform = reference_transform(cfg, MEAN, STD, 24)
    tensor_image = torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8)
    pil_image = Image.fromarray(tensor_image.permute(1, 2, 0).numpy())
    for image in (tensor_image, pil_image):
        out = transform(image)
        assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    assert blur_kernel_size(cfg, 32) == 3 and blur_kernel_size(cfg, 96) == 9 and blur_kernel_size(cfg, 224) == 23
    names = [type(t).__name__ for t in reference_transform(AugmentConfig(blur_p=0, grayscale_p=0), MEAN, STD, 24).transforms]
    assert "RandomGrayscale" not in names and all("Blur" not in n for n in names)
