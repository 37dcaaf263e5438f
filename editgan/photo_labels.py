"""Snap a segmentation to the photo it describes: a windowed dense-CRF mean field.

The segmenter reads the generator's features, so its labels follow the *reconstruction*; the user
paints on top of the *photo*. Where the two differ by a pixel or two (thin brows, lips, frames),
the label boundary sits beside the photo's edge. A fully connected CRF with a Potts model and a
bilateral kernel (Krähenbühl & Koltun 2011, as in DeepLab) moves each boundary onto the nearest
colour edge of the photo while keeping the segmenter's probabilities as the unary term. Here the
kernel is cut to a small window, which at 64² covers every neighbour that matters and costs a few
milliseconds.

A photo larger than the model gets its labels at its own resolution (:func:`snap_to_source`):
coarse to fine, doubling the grid each time, the probabilities upsampled bilinearly as the unary
term and the coarser result as the starting point, each level guided by the photo resized to it.
The window and σ_s stay in pixels of each level, so every level only moves a boundary by a few of
its own pixels and the total cost is about 4/3 of the finest level's.

Mean-field update, per pixel ``x`` and class ``c`` (``k`` the bilateral kernel, self excluded)::

    Q_c(x) ∝ exp(log p_c(x) + weight · Σ_y k(x, y) Q_c(y))
    k(x, y) = exp(-|x - y|² / 2σ_s² - |I(x) - I(y)|² / 2σ_r²)

(equal to the Potts form ``-weight · Σ_y k(x, y) [1 - Q_c(y)]`` up to a per-pixel constant).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import fit, to_source
from .imageio import from_uint8


@dataclass(frozen=True)
class PhotoSnapSettings:
    """Args:
        window: side of the square neighbourhood, odd, in model pixels.
        spatial_sigma: σ_s of the kernel's distance term, in model pixels.
        colour_sigma: σ_r of the kernel's colour term, RGB in [0, 1].
        weight: strength of the pairwise term against the segmenter's log-probabilities.
        iterations: mean-field updates; 0 returns the probabilities unchanged.
        refine_iterations: mean-field updates on each grid finer than the model's (they start
            from the coarser result: on 8 held-out 256² renders 0 / 1 / 2 / 3 updates give mIoU
            0.709 / 0.789 / 0.804 / 0.809, the 64² snap nearest-upsampled 0.688).
        max_side: the finest grid :func:`snap_to_source` snaps on (a larger photo's labels are
            nearest-upsampled from it): bounds the time and memory, which grow with its square.
    """

    window: int = 5
    spatial_sigma: float = 2.0
    colour_sigma: float = 0.05
    weight: float = 2.0
    iterations: int = 3
    refine_iterations: int = 2
    max_side: int = 512

    def __post_init__(self):
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"window must be a positive odd number, got {self.window}")
        if not (self.spatial_sigma > 0 and self.colour_sigma > 0 and self.weight >= 0 and self.iterations >= 0
                and self.refine_iterations >= 0 and self.max_side >= 1):
            raise ValueError(f"invalid photo-snap settings: {self}")


def _check(probs: torch.Tensor, image: torch.Tensor) -> None:
    assert probs.dim() == 4 and image.dim() == 4, "expected probs [N, C, H, W] and image [N, 3, H, W]"
    assert image.shape[1] == 3 and probs.shape[0] == image.shape[0] and probs.shape[2:] == image.shape[2:], \
        f"probs {tuple(probs.shape)} and image {tuple(image.shape)} do not match"


def _offsets(window: int) -> list[tuple[int, int]]:
    r = window // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]


def _shifted(x: torch.Tensor, window: int):
    """Yield ``x`` ``[N, C, H, W]`` shifted to each window offset: every pixel's neighbour there, 0 off the image."""
    h, w, r = x.shape[2], x.shape[3], window // 2
    padded = F.pad(x, [r, r, r, r])
    for dy, dx in _offsets(window):
        yield padded[:, :, r + dy:r + dy + h, r + dx:r + dx + w]


def bilateral_kernel(image: torch.Tensor, settings: PhotoSnapSettings) -> torch.Tensor:
    """``k(x, y)`` for each pixel and its window neighbours, ``[N, window² - 1, H, W]``; 0 off the image."""
    ones = torch.ones_like(image[:, :1])
    inside = torch.cat(list(_shifted(ones, settings.window)), 1)
    colour = torch.stack([((neighbour - image) ** 2).sum(1) for neighbour in _shifted(image, settings.window)], 1)
    d2 = torch.tensor([dy * dy + dx * dx for dy, dx in _offsets(settings.window)], dtype=image.dtype,
                      device=image.device)[None, :, None, None]
    return inside * torch.exp(-d2 / (2 * settings.spatial_sigma ** 2) - colour / (2 * settings.colour_sigma ** 2))


@torch.no_grad()
def snap_to_photo(probs: torch.Tensor, image: torch.Tensor, settings: PhotoSnapSettings = PhotoSnapSettings(),
                  init: torch.Tensor | None = None) -> torch.Tensor:
    """Class probabilities ``[N, C, H, W]`` moved onto the edges of ``image`` ``[N, 3, H, W]`` (RGB in
    [0, 1], the same grid); returns new probabilities (each pixel sums to 1).

    ``init``: the mean field's starting point (default ``probs``), e.g. a coarser level's result.
    """
    _check(probs, image)
    unary = probs.clamp_min(1e-6).log()
    kernel = bilateral_kernel(image.to(probs.dtype), settings)  # [N, K, H, W]
    q = probs if init is None else init
    for _ in range(settings.iterations):
        message = torch.zeros_like(q)  # summed offset by offset: memory stays O(C·H·W) at 512² too
        for j, neighbour in enumerate(_shifted(q, settings.window)):
            message += kernel[:, j:j + 1] * neighbour
        q = torch.softmax(unary + settings.weight * message, 1)
    return q


def _levels(model_size: int, photo_side: int, max_side: int) -> list[int]:
    """Grid sides from the model's, doubling, up to the photo's (at most ``max_side``)."""
    sizes = [model_size]
    top = min(photo_side, max_side)
    while sizes[-1] < top:
        sizes.append(min(2 * sizes[-1], top))
    return sizes


@torch.no_grad()
def snap_to_source(probs: torch.Tensor, photo: np.ndarray, settings: PhotoSnapSettings = PhotoSnapSettings()) -> np.ndarray:
    """Labels uint8 (H, W) of ``photo`` uint8 (H, W, 3) from the segmenter's probabilities ``[1, C, R, R]``
    on the model grid (the photo's padded square, :func:`editgan.geometry.fit`), snapped to the
    photo's edges coarse to fine up to ``min(max(H, W), settings.max_side)``."""
    assert probs.dim() == 4 and probs.shape[0] == 1 and probs.shape[2] == probs.shape[3], \
        f"expected probs [1, C, R, R], got {tuple(probs.shape)}"
    sizes = _levels(probs.shape[-1], max(photo.shape[:2]), settings.max_side)
    top, geo = fit(photo, sizes[-1])  # the photo resized once (12 MP to 512²: 0.6 s); coarser guides come from it
    q = None
    finer = dataclasses.replace(settings, iterations=settings.refine_iterations)
    for size in sizes:
        guide = top if size == sizes[-1] else fit(top, size)[0]
        unary = F.interpolate(probs, size=(size, size), mode="bilinear", align_corners=False)
        init = None if q is None else F.interpolate(q, size=(size, size), mode="bilinear", align_corners=False)
        q = snap_to_photo(unary, (from_uint8(guide, probs.device) + 1) / 2, settings if q is None else finer, init)
    return to_source(q[0].argmax(0).to(torch.uint8).cpu().numpy(), geo)


@torch.no_grad()
def snap_to_photo_reference(probs: torch.Tensor, image: torch.Tensor,
                            settings: PhotoSnapSettings = PhotoSnapSettings()) -> torch.Tensor:
    """Pixel-by-pixel form of :func:`snap_to_photo` (the formula in the module docstring), for tests."""
    _check(probs, image)
    n, c, h, w = probs.shape
    r, s2, c2 = settings.window // 2, settings.spatial_sigma ** 2, settings.colour_sigma ** 2
    unary = probs.clamp_min(1e-6).log()
    q = probs.clone()
    for _ in range(settings.iterations):
        message = torch.zeros_like(q)
        for b in range(n):
            for y in range(h):
                for x in range(w):
                    for yy in range(max(0, y - r), min(h, y + r + 1)):
                        for xx in range(max(0, x - r), min(w, x + r + 1)):
                            if (yy, xx) == (y, x):
                                continue
                            k = torch.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s2)
                                          - ((image[b, :, yy, xx] - image[b, :, y, x]) ** 2).sum() / (2 * c2))
                            message[b, :, y, x] += k * q[b, :, yy, xx]
        q = torch.softmax(unary + settings.weight * message, 1)
    return q
