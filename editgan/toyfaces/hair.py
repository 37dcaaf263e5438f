"""Hair: the mass behind the head (bob/long) and the part in front of the face (cap, locks).

One outline serves both: a skull ellipse inflated by the hair volume (bumpy when voluminous:
curls), continued downwards by the hanging part for bob and long styles.
"""
from __future__ import annotations

import numpy as np

from . import canvas as m
from .canvas import Canvas
from .geometry import ear_x, nose_mouth, ys_temple
from .params import FaceParams

CURLY, CURL = 0.12, 0.09   # hair volume above which hair is curly; depth of the curls


def hair_shape(p: FaceParams):
    """(bottom v, half-width at v=0, widening per unit v) of the hair mass.

    Hanging hair is always wider than the ears, so covered ears never peek out.
    """
    if p.hair_style not in ("bob", "long"):
        return p.head_h, p.head_w + p.hair_volume, 0.0
    w0 = max(p.head_w + p.hair_volume, ear_x(p) + p.ear_w + 0.03)
    if p.hair_style == "long":
        return p.head_h + 0.15 + 0.8 * p.hair_length, w0, 0.18
    mv = nose_mouth(p)[1]
    return mv - 0.05 + (p.head_h + 0.05 - mv) * p.hair_length, w0, 0.1


def _frac(x):
    """x mod 1 (numpy's float % is ~40× slower than this)."""
    return x - np.floor(x)


def _tri(x):
    """Triangle wave with period 1, values 0..1."""
    return np.abs(_frac(x) - 0.5) * 2.0


def _skull(p: FaceParams, u, v, w0: float):
    """< 1 inside the hair outline around the skull."""
    vol = p.hair_volume
    x, y = u * (1 / w0), (v + 0.35 * vol) * (1 / (p.head_h + vol))
    q = x * x + y * y
    if vol > CURLY:                      # curls: a bumpy outline
        q += CURL * (_tri(u * 9.0) + _tri(v * 9.0) - 1.0)
    return q


def _skull_extent(p: FaceParams, w0: float):
    """(half-width, top v) of the box that holds the skull outline, curls included."""
    e = 1 / np.sqrt(1 - CURL) if p.hair_volume > CURLY else 1.0
    return w0 * e, -0.35 * p.hair_volume - (p.head_h + p.hair_volume) * e


def _fringe(p: FaceParams, u):
    """Lower edge of the hair on the forehead (v of the hairline as a function of u).

    In the middle it is `fringe_y`, which sampling put above even raised brows; towards the
    temples it comes down, and brows (painted after the hair) may end on it, as in cartoons.
    """
    hw, fy, ys = p.head_w, p.fringe_y, ys_temple(p)
    part = p.hair_part * 0.35 * hw
    side = np.clip((np.abs(u) - 0.72 * hw) * (1 / (0.22 * hw)), 0, 1)
    style = p.fringe_style
    if style == 0:      # rounded, receding to the temples
        t = np.clip((np.abs(u - 0.5 * part) - 0.2 * hw) * (1 / (0.75 * hw)), 0, 1)
        f = fy + (ys - fy) * (t * t)
    elif style == 1:    # parted curtains: an arch whose apex is the parting
        t = np.clip(np.abs(u - part) * (1 / (0.9 * hw)), 0, 1)
        f = (fy - 0.07) + (ys - fy + 0.07) * t
    elif style == 2:    # straight, slightly jagged bangs
        f = fy + 0.03 * (u * (1 / hw)) ** 2 + 0.02 * _tri(u * 12.5) + (ys - fy) * side
    else:               # swept to one side
        slope = 0.3 if p.hair_part >= 0 else -0.3
        f = np.clip(fy + slope * (u - part), fy - 0.05, fy + 0.04)
        f = f + (ys - f) * side
    return f


def _mass(p: FaceParams, u, v, au, shape, skull):
    """Inside the whole hair outline of bob/long hair: skull plus the hanging part."""
    bottom, w0, flare = shape
    x = au / (np.maximum(v, 0) * (w0 * flare) + w0)
    x2 = x * x
    x6 = x2 * x2 * x2
    # bottom edge: bob ends longer at the front, long hair shorter at the sides; the x⁸ term
    # rounds the outer corners
    k = 0.05 if p.hair_style == "bob" else -0.1
    cut = x2 * (k - 0.25 * x6) + bottom
    return ((v > -0.35 * p.hair_volume) & (x2 < 1) | skull) & (v < cut)


def _mass_box(cv: Canvas, p: FaceParams, shape, v0: float):
    bottom, w0, flare = shape
    wmax = max(w0 * (1 + flare * max(bottom, 0)), _skull_extent(p, w0)[0])
    return cv.box(-wmax, wmax, v0, bottom + 0.06)


def _union(a, b):
    if a is None or b is None:
        return a or b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _crop(outer, inner):
    """`inner` box as slices into arrays that cover `outer`."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for o, i in zip(outer, inner))


class _Hair:
    """Boxes, shading and outline of the hair, computed once per canvas and shared by the back
    hair, the cap and the locks (whose boxes lie inside `box`)."""

    def __init__(self, cv: Canvas, p: FaceParams):
        self.shape = bottom, w0, flare = hair_shape(p)
        sw, top = _skull_extent(p, w0)
        reach = max(p.fringe_y + 0.2, p.eye_y + 0.05)     # deepest point any fringe reaches
        self.cap_box = cv.box(-sw, sw, top, reach)
        hanging = p.hair_style in ("bob", "long")
        self.mass_box = _mass_box(cv, p, self.shape, top) if hanging else None
        self.locks = p.hair_style == "bob" or (p.hair_style == "long" and p.ears_covered)
        self.lock_box = _mass_box(cv, p, self.shape, p.fringe_y - 0.1) if self.locks else None
        self.box = box = _union(_union(self.cap_box, self.mass_box), self.lock_box)
        if box is None:
            return
        self.u, self.v = u, v = cv.uv(box)
        # shaded light (crown) to dark (tips) by v only, so a haircut recolours nothing;
        # darker strands fan out from the crown
        crown = -(p.head_h + p.hair_volume)
        self.ids = m.shade_bands(v, crown, crown + 2.0, m.N_HAIR, m.HAIR)
        dv = v - (crown - 0.25)
        fan = (u - p.hair_part * 0.35 * p.head_w) / dv
        np.copyto(self.ids, np.uint8(m.HAIR_DARK), where=(_frac(fan * 7.0 + 0.5 * dv) < 0.16) & (dv > 0.45))
        self.skull = _skull(p, u, v, w0) < 1
        self.mass = _mass(p, u, v, np.abs(u), self.shape, self.skull) if hanging else None

    def paint(self, cv: Canvas, box, mask) -> None:
        cv.paint(box, mask, self.ids[_crop(self.box, box)])


def _hair(cv: Canvas, p: FaceParams) -> _Hair:
    if "hair" not in cv.cache:
        cv.cache["hair"] = _Hair(cv, p)
    return cv.cache["hair"]


def back_hair(cv: Canvas, p: FaceParams) -> None:
    """The part of bob/long hair behind the neck and face."""
    if p.hair_style == "bald":
        return
    h = _hair(cv, p)
    if h.mass_box:
        h.paint(cv, h.mass_box, h.mass[_crop(h.box, h.mass_box)])


def front_hair(cv: Canvas, p: FaceParams) -> None:
    """Hair over the forehead and temples, then the side locks of bob/long hair."""
    if p.hair_style == "bald":
        return
    h = _hair(cv, p)
    if h.cap_box:
        c = _crop(h.box, h.cap_box)
        u, v, skull = h.u[c], h.v[c], h.skull[c]
        f = _fringe(p, u)
        face = cv.is_skin(h.cap_box)          # the face is painted already: read it back
        cv.paint(h.cap_box, skull & face & (v < f + 0.04), m.SKIN_SHADOW)   # the hair's shadow
        h.paint(cv, h.cap_box, skull & ((v < f) | ~face & (v < ys_temple(p))))
    if h.lock_box:
        c = _crop(h.box, h.lock_box)
        u, v = h.u[c], h.v[c]
        bottom, w0, _ = h.shape
        au = np.abs(u)
        x, y = au * (1 / (p.head_w - p.side_locks)), v * (1 / p.head_h)
        lock = ((x * x + y * y > 1) & (au > p.mouth_width + 0.05) & (v > p.fringe_y - 0.1)
                & (v < bottom - 0.02 - 0.1 * np.maximum(au * (1 / w0) - 0.8, 0)))
        h.paint(cv, h.lock_box, lock & h.mass[c])
