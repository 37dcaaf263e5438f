"""Shared geometry of the face: where the outline, ears, nose and mouth are (face units)."""
from __future__ import annotations

import numpy as np

from .params import FaceParams


def face_q(p: FaceParams, u, v):
    """Normalised face implicit: < 1 inside the skin outline; the jaw bends the lower half."""
    yn = v * (1.0 / p.head_h)
    low = np.maximum(yn, 0)
    g = 1.0 - p.jaw * (low * low)
    xn = u / (p.head_w * g)
    return xn * xn + yn * yn


def nose_mouth(p: FaceParams):
    """(v of the nose tip, v of the mouth centre line)."""
    ny = p.eye_y + p.nose_y
    return ny, ny + p.mouth_y


def ear_x(p: FaceParams) -> float:
    """u of the ear centre: on the face outline at ear height, pushed a little outwards."""
    return p.head_w * float(np.sqrt(max(0.0, 1 - (p.ear_y / p.head_h) ** 2))) + 0.35 * p.ear_w


def ys_temple(p: FaceParams) -> float:
    """v where the hairline ends at the temples, just above the ears."""
    return min(p.eye_y - 0.1, p.ear_y - p.ear_h - 0.03)
