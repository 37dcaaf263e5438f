"""Rendering a `FaceParams` to an anti-aliased RGB image and its exact label map."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .canvas import Canvas, colour_table
from .draw import LAYERS
from .params import PALETTE, FaceParams

MAX_SUPERSAMPLE = 32  # the packed-integer filter holds 20 bits per channel: 255·(2·32)² fits


def _paint(p: FaceParams, n: int, ss: int) -> Canvas:
    cv = Canvas(p, n, ss)
    for layer in LAYERS:
        layer(cv, p)
    return cv


def _light(p: FaceParams, n: int) -> np.ndarray:
    """Gentle linear light across the frame; smooth, so applying it after the box filter is exact."""
    t = (np.arange(n) + 0.5) * (2.0 / n) - 1.0
    k = 0.5 * p.light_strength
    return 1.0 + (k * math.cos(p.light_angle) * t)[None, :] + (k * math.sin(p.light_angle) * t)[:, None]


def render(params: FaceParams, size: int = 64, supersample: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 (size,size,3), labels uint8 (size,size)).

    RGB is the box filter over supersample² samples per pixel; a label is the class of the
    sample at the pixel centre, so labels are exact and aligned with the image.
    """
    if size < 1 or not 1 <= supersample <= MAX_SUPERSAMPLE:
        raise ValueError(f"size must be >= 1 and supersample in 1..{MAX_SUPERSAMPLE}")
    cv = _paint(params, size, supersample)
    rgb = cv.rgb(colour_table(params))
    rgb *= _light(params, size)[:, :, None]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), cv.labels()


def render_batch(params: Sequence[FaceParams], size: int = 64,
                 supersample: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Stack of `render` results: (N,size,size,3) and (N,size,size) uint8."""
    rgb = np.empty((len(params), size, size, 3), np.uint8)
    labels = np.empty((len(params), size, size), np.uint8)
    for i, p in enumerate(params):
        rgb[i], labels[i] = render(p, size, supersample)
    return rgb, labels


def colorize(labels: np.ndarray) -> np.ndarray:
    """Label map -> RGB image in the class palette."""
    return PALETTE[labels]
