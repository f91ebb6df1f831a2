"""The projection MLP that maps backbone features to the embedding the contrastive loss sees."""

from __future__ import annotations

from torch import nn


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int, batchnorm: bool) -> nn.Sequential:
    """Linear -> [BatchNorm] -> ReLU -> Linear. With BatchNorm the first layer has no bias, as in
    the HCL/DCL code (2048 -> 512 -> BN -> ReLU -> 128); without it this is MoCo-v2's head."""
    layers = [nn.Linear(in_dim, hidden_dim, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(hidden_dim))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
    return nn.Sequential(*layers)
