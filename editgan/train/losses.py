"""Losses of the training stages: image reconstruction (pixels and edges) and the sliced
Wasserstein distance that matches the mapping network to the encoder's codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _difference(rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    assert rec.shape == real.shape and rec.ndim == 4, f"need two [N, C, H, W] images, got {rec.shape}, {real.shape}"
    return rec - real


def pixel_loss(rec: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L1 + MSE between images ``[N, C, H, W]``; ``weight`` ``[N, 1, H, W]`` (mean ≈ 1) scales each
    pixel's share, e.g. ``class_balanced_weights`` of the renders' labels."""
    diff = _difference(rec, real)
    per_pixel = diff.abs() + diff.square()
    if weight is not None:
        assert weight.shape == (diff.shape[0], 1, *diff.shape[2:]), f"weight {tuple(weight.shape)} for {tuple(diff.shape)}"
        per_pixel = per_pixel * weight
    return per_pixel.mean()


def class_balanced_weights(frequencies: torch.Tensor, power: float) -> torch.Tensor:
    """Per-class pixel weights ∝ frequency^-power, scaled so the average pixel weighs 1.

    A pupil or the teeth cover 0.1–0.2 % of a 64² render: a plain pixel loss lets the generator
    draw them as a blur of the skin around them. ``power`` 0.5 weighs the teeth ~20× the skin."""
    assert frequencies.ndim == 1 and power >= 0, f"need [C] frequencies and power ≥ 0, got {tuple(frequencies.shape)}, {power}"
    share = frequencies.clamp_min(1e-6) / frequencies.sum()
    raw = share.pow(-power)
    return raw / (share * raw).sum()


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
