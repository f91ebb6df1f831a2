"""CMC's colour-channel views: RGB to CIE L*a*b*, the L channel to one stream, ab to the other.

``rgb_to_lab`` is the sRGB (D65) conversion that skimage's ``rgb2lab`` computes, which CMC applies
to every image (HobbitLong/CMC@7b227be dataset.py ``RGB2Lab``), followed by CMC's normalisation
of each channel to about [-1, 1] with the extremes of the sRGB gamut (train_CMC.py).
"""

from __future__ import annotations

import torch
from torch import nn

_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_D65_WHITE = (0.95047, 1.0, 1.08883)
LAB_MEAN = ((0 + 100) / 2, (-86.183 + 98.233) / 2, (-107.857 + 94.478) / 2)
LAB_STD = ((100 - 0) / 2, (86.183 + 98.233) / 2, (107.857 + 94.478) / 2)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [0, 1] -> (N, 3, H, W) L* in [0, 100], a*, b* in about [-110, 110]."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    r, g, b = linear.unbind(1)  # Python-number weights: nothing is copied to the device
    xyz = torch.stack([(wr * r + wg * g + wb * b) / white for (wr, wg, wb), white in zip(_RGB_TO_XYZ, _D65_WHITE)], dim=1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


class LabSplitEncoder(nn.Module):
    """Two encoders, one on L and one on ab, whose features are concatenated for evaluation (as
    CMC's linear probe does). Inputs are RGB normalised with ``input_mean``/``input_std`` like every
    other encoder's; the conversion to Lab happens inside."""

    def __init__(self, l_stream: nn.Module, ab_stream: nn.Module, input_mean, input_std) -> None:
        super().__init__()
        self.l_stream, self.ab_stream = l_stream, ab_stream
        self.register_buffer("input_mean", torch.tensor(input_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(input_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("lab_mean", torch.tensor(LAB_MEAN).view(1, 3, 1, 1))
        self.register_buffer("lab_std", torch.tensor(LAB_STD).view(1, 3, 1, 1))
        self.feature_dim = l_stream.feature_dim + ab_stream.feature_dim

    def streams(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The L stream's and the ab stream's features."""
        rgb = (images.float() * self.input_std + self.input_mean).clamp(0, 1)
        lab = (rgb_to_lab(rgb) - self.lab_mean) / self.lab_std
        lab = lab.to(images.dtype)
        return self.l_stream(lab[:, :1]), self.ab_stream(lab[:, 1:])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.streams(images), dim=1)
