"""SimCLR's contrastive augmentation, two ways that draw the same distributions.

* :func:`reference_transform`: torchvision's per-image pipeline (PIL or tensor), run in DataLoader
  workers: the path for image folders (ImageNet-100) and the reference.
* :class:`BatchAugment`: the same augmentation on a whole uint8 batch at once, every random
  parameter drawn per image from an explicit generator, every op batched: random resized crop and
  flip as one ``grid_sample``, colour jitter in a per-image random order, grayscale, per-image
  Gaussian blur as one grouped convolution. It runs wherever the batch is (CPU or GPU).

Order of the ops (both paths): crop + resize, horizontal flip, colour jitter (probability
``jitter_p``; brightness, contrast, saturation, hue in a random order), grayscale (before the
jitter with ``grayscale_before_jitter``, as CMC's and the Ring code's transforms), Gaussian blur
(probability ``blur_p``), then normalisation with the dataset's mean and std.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from ..config import AugmentConfig

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def blur_kernel_size(cfg: AugmentConfig, crop_size: int) -> int:
    """``blur_kernel_fraction`` of the crop, made odd, at least 3 (SimCLR: 10% of the side)."""
    size = int(cfg.blur_kernel_fraction * crop_size)
    return max(3, size + 1 if size % 2 == 0 else size)


def reference_transform(cfg: AugmentConfig, mean, std, crop_size: int) -> v2.Compose:
    """The per-image torchvision pipeline: a PIL image or uint8 (3, H, W) tensor in, a normalised
    float32 (3, crop_size, crop_size) tensor out."""
    ops: list = [v2.ToImage(), v2.RandomResizedCrop(crop_size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True)]
    if cfg.flip_p > 0:
        ops.append(v2.RandomHorizontalFlip(cfg.flip_p))
    colour = []
    if cfg.jitter_p > 0 and any(cfg.jitter):
        colour.append(v2.RandomApply([v2.ColorJitter(*cfg.jitter)], p=cfg.jitter_p))
    if cfg.grayscale_p > 0:
        colour.append(v2.RandomGrayscale(cfg.grayscale_p))
    ops += colour[::-1] if cfg.grayscale_before_jitter else colour
    if cfg.blur_p > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(blur_kernel_size(cfg, crop_size), sigma=cfg.blur_sigma)], p=cfg.blur_p))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


def eval_transform(mean, std, image_size: int, resize: int) -> v2.Compose:
    """Evaluation view of a folder image: resize the short side to ``resize``, centre-crop
    ``image_size`` (ImageNet's Resize(256) + CenterCrop(224)), normalise."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def _normalize_(x: torch.Tensor, mean, std) -> torch.Tensor:
    """In place, channel by channel with Python numbers: no constant tensor is copied to the
    device (a host-to-device copy would make the host wait for the GPU)."""
    for c in range(3):
        x[:, c].sub_(mean[c]).div_(std[c])
    return x


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if (size, size) == tuple(x.shape[-2:]):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def normalize_batch(images: torch.Tensor, mean, std, size: int | None, resize: int | None = None) -> torch.Tensor:
    """Square uint8 (N, 3, H, W) to normalised float32: resized (antialiased bilinear) to
    ``resize`` and centre-cropped to ``size`` (torchvision's CenterCrop offsets) when ``resize``
    is given, else resized to ``size`` when it differs from the images' side."""
    x = images.float() / 255
    if resize is not None:
        x = _resize(x, resize)
        top = int(round((resize - size) / 2.0))
        x = x[..., top : top + size, top : top + size]
    elif size is not None:
        x = _resize(x, size)
    return _normalize_(x, mean, std)


# ----------------------------------------------------------------------------------------------
# Batched colour ops on float images in [0, 1], one factor per image, as torchvision defines them


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma with torchvision's weights (and its formula)."""
    wr, wg, wb = GRAY_WEIGHTS
    return wr * x[:, 0:1] + wg * x[:, 1:2] + wb * x[:, 2:3]


BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
"""Indices of the colour-jitter ops in ``AugmentParams.jitter_factors`` and ``jitter_order``."""


def blend_jitter(x: torch.Tensor, op: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast or saturation (``op`` per image) with one ``factor`` per image: each is
    torchvision's blend ``factor * x + (1 - factor) * other``, clamped to [0, 1], where ``other`` is
    black, the image's mean grey or its grey image. A factor of 1 leaves the image unchanged."""
    gray = grayscale(x)
    op = op.view(-1, 1, 1, 1)
    other = torch.where(op == BRIGHTNESS, torch.zeros_like(gray), torch.where(op == CONTRAST, gray.mean(dim=(1, 2, 3), keepdim=True), gray))
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    chroma = maxc - minc
    flat = chroma == 0
    saturation = chroma / torch.where(flat, torch.ones_like(maxc), maxc)
    divisor = torch.where(flat, torch.ones_like(chroma), chroma)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~is_r & ~is_g
    hue = is_r * (bc - gc) + is_g * (2.0 + rc - bc) + is_b * (4.0 + gc - rc)
    hue = torch.fmod(hue / 6.0 + 1.0, 1.0)
    return torch.stack([hue, saturation, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.long() % 6
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    table = torch.stack(
        [torch.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0
    )  # (6, N, 3, H, W)
    index = sector.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, -1, -1)
    return table.gather(0, index).squeeze(0)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    hsv = _rgb_to_hsv(x)
    hue = torch.remainder(hsv[:, 0] + factor.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], 1))


def colour_jitter(x: torch.Tensor, applied: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """ColorJitter where ``applied``, with per-image ``factors`` (N, 4) and op ``order`` (N, 4), on
    the whole batch with no data-dependent shapes (so no host synchronisation on a GPU): each
    image's blend ops before its hue shift in its drawn order, the hue shift, then the rest. A
    blend a position does not use gets factor 1, which is exactly the identity."""
    hue_position = (order == HUE).long().argmax(1)
    for before_hue, positions in ((True, range(3)), (False, range(1, 4))):
        for position in positions:
            op = order[:, position]
            side = position < hue_position if before_hue else position > hue_position
            active = applied & (op != HUE) & side
            factor = factors.gather(1, op.clamp(max=SATURATION).view(-1, 1)).squeeze(1)
            x = blend_jitter(x, op, torch.where(active, factor, torch.ones_like(factor)))
        if before_hue:
            x = torch.where(applied.view(-1, 1, 1, 1), adjust_hue(x, factors[:, HUE]), x)
    return x


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (reflect padding, as torchvision); a sigma
    of 0 leaves the image unchanged."""
    n, c, h, w = x.shape
    offsets = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - (kernel_size - 1) / 2
    safe_sigma = sigma.clamp_min(1e-6).view(-1, 1)
    kernel = torch.exp(-0.5 * (offsets / safe_sigma) ** 2)
    identity = (offsets == 0).to(x.dtype).expand_as(kernel)
    kernel = torch.where((sigma > 0).view(-1, 1), kernel / kernel.sum(1, keepdim=True), identity)
    kernel = kernel.repeat_interleave(c, 0)  # (N*C, k)
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, h, w)


# ----------------------------------------------------------------------------------------------


@dataclass
class AugmentParams:
    """Per-image random parameters of one batch (N entries each)."""

    crop: torch.Tensor  # (N, 4) float: top, left, height, width in pixels
    flip: torch.Tensor  # (N,) bool
    jitter: torch.Tensor  # (N,) bool: colour jitter applied
    jitter_factors: torch.Tensor  # (N, 4): brightness, contrast, saturation factors; hue shift
    jitter_order: torch.Tensor  # (N, 4) long: a permutation of BRIGHTNESS, CONTRAST, SATURATION, HUE
    gray: torch.Tensor  # (N,) bool
    blur_sigma: torch.Tensor  # (N,) float, 0 where no blur is applied

    def rows(self, rows: slice) -> "AugmentParams":
        return AugmentParams(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def sample_crops(n: int, height: int, width: int, scale, ratio, generator: torch.Generator, device, tries: int = 10) -> torch.Tensor:
    """RandomResizedCrop's boxes: area fraction ~ U(scale), log aspect ratio ~ U(log ratio), up to
    ``tries`` attempts to fit inside the image, else the centre crop clamped to the ratio range."""
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, tries, generator=generator, device=device))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, tries, generator=generator, device=device))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(1, keepdim=True)  # index of the first fitting try
    w, h, found = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1), fits.any(1)
    top = torch.floor(torch.rand(n, generator=generator, device=device) * (height - h + 1))
    left = torch.floor(torch.rand(n, generator=generator, device=device) * (width - w + 1))
    # fallback: the whole image, cropped to the nearest allowed aspect ratio, centred
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    fallback = torch.stack([torch.full_like(w, v) for v in ((height - fh) // 2, (width - fw) // 2, fh, fw)], 1)
    boxes = torch.stack([top, left, h, w], 1)
    return torch.where(found.unsqueeze(1), boxes, fallback)


class BatchAugment:
    """The contrastive augmentation of a whole uint8 (N, 3, H, W) batch, on its device."""

    def __init__(self, cfg: AugmentConfig, mean, std, crop_size: int) -> None:
        self.cfg, self.mean, self.std, self.crop_size = cfg, mean, std, crop_size
        self.kernel_size = blur_kernel_size(cfg, crop_size)

    def sample_params(self, n: int, height: int, width: int, generator: torch.Generator) -> AugmentParams:
        cfg, device = self.cfg, generator.device
        b, c, s, h = cfg.jitter
        factors = torch.stack(
            [
                _uniform(n, max(0.0, 1 - b), 1 + b, generator, device),
                _uniform(n, max(0.0, 1 - c), 1 + c, generator, device),
                _uniform(n, max(0.0, 1 - s), 1 + s, generator, device),
                _uniform(n, -h, h, generator, device),
            ],
            1,
        )
        blur = torch.rand(n, generator=generator, device=device) < cfg.blur_p
        sigma = _uniform(n, *cfg.blur_sigma, generator, device)
        return AugmentParams(
            crop=sample_crops(n, height, width, cfg.crop_scale, cfg.crop_ratio, generator, device),
            flip=torch.rand(n, generator=generator, device=device) < cfg.flip_p,
            jitter=torch.rand(n, generator=generator, device=device) < cfg.jitter_p,
            jitter_factors=factors,
            jitter_order=torch.rand(n, 4, generator=generator, device=device).argsort(1),
            gray=torch.rand(n, generator=generator, device=device) < cfg.grayscale_p,
            blur_sigma=torch.where(blur, sigma, torch.zeros_like(sigma)),
        )

    def resized_crop(self, x: torch.Tensor, crop: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Each image's box resampled (bilinear) to crop_size, mirrored where ``flip``: one
        ``grid_sample`` for the whole batch."""
        n, _, height, width = x.shape
        top, left, h, w = crop.to(x.dtype).unbind(1)
        sign = 1 - 2 * flip.to(x.dtype)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = sign * w / width
        theta[:, 0, 2] = (2 * left + w) / width - 1
        theta[:, 1, 1] = h / height
        theta[:, 1, 2] = (2 * top + h) / height - 1
        grid = F.affine_grid(theta, [n, 3, self.crop_size, self.crop_size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        x = self.resized_crop(images.float() / 255, params.crop, params.flip)
        if self.cfg.grayscale_before_jitter:
            x = torch.where(params.gray.view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)
        x = colour_jitter(x, params.jitter, params.jitter_factors, params.jitter_order)
        if not self.cfg.grayscale_before_jitter:
            x = torch.where(params.gray.view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)
        if self.cfg.blur_p > 0:
            x = gaussian_blur(x, self.kernel_size, params.blur_sigma)
        return _normalize_(x, self.mean, self.std)

    def __call__(self, images: torch.Tensor, generator: torch.Generator, share: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """Normalised float32 (N, 3, crop_size, crop_size) views of uint8 ``images``. With
        ``share = (r, n)`` the images are rows r, r + n, ... of a batch n times larger: the
        parameters are drawn for that whole batch and this share's rows used, so n processes
        augment exactly as one process would."""
        rank, processes = share
        params = self.sample_params(images.shape[0] * processes, images.shape[-2], images.shape[-1], generator)
        return self.apply(images, params.rows(slice(rank, None, processes)))
