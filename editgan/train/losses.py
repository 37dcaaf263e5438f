"""Losses of the training stages: image reconstruction (pixels and edges) and the sliced
Wasserstein distance that matches the mapping network to the encoder's codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _difference(rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    assert rec.shape == real.shape and rec.ndim == 4, f"need two [N, C, H, W] images, got {rec.shape}, {real.shape}"
    return rec - real


def pixel_loss(rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 + MSE between images ``[N, C, H, W]``."""
    diff = _difference(rec, real)
    return diff.abs().mean() + diff.square().mean()


def edge_loss(rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 between the images' horizontal and vertical finite differences: it keeps small parts
    sharp where a pixel loss accepts blur (a blurred pupil costs few pixels but all its edges)."""
    diff = _difference(rec, real)
    return (diff[..., :, 1:] - diff[..., :, :-1]).abs().mean() + (diff[..., 1:, :] - diff[..., :-1, :]).abs().mean()


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int) -> torch.Tensor:
    """Squared sliced Wasserstein-2 distance between two equal-size point sets [N, D]."""
    assert a.shape == b.shape and a.ndim == 2, f"need two [N, D] sets of one shape, got {a.shape}, {b.shape}"
    directions = F.normalize(torch.randn(a.shape[1], projections, device=a.device), dim=0)
    return ((a @ directions).sort(dim=0).values - (b @ directions).sort(dim=0).values).square().mean()
