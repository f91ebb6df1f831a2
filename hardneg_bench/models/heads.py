"""The projection head that maps backbone features to the embedding the contrastive loss sees."""

from __future__ import annotations

from torch import nn


def projection_head(in_dim: int, hidden_dim: int, out_dim: int, batchnorm: bool, layers: int = 2) -> nn.Sequential:
    """``layers=2``: Linear -> [BatchNorm] -> ReLU -> Linear. With BatchNorm the first layer has no
    bias, as in the HCL/DCL code (2048 -> 512 -> BN -> ReLU -> 128); without it this is MoCo-v2's
    head. ``layers=1``: one Linear layer, the head of InsDis, MoCo-v1 and CMC."""
    if layers == 1:
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    head = [nn.Linear(in_dim, hidden_dim, bias=not batchnorm)]
    if batchnorm:
        head.append(nn.BatchNorm1d(hidden_dim))
    head += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
    return nn.Sequential(*head)
