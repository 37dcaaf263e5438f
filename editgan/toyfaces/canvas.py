"""Material raster: the painter's-order target that both the RGB image and the labels come from.

Every sample holds a *material* id (< 128). A material fixes a label class and, per portrait, a
colour; shading is expressed as bands of materials (e.g. 12 skin tones), so an image is one
table gather. Bit 7 marks samples seen through a tinted lens: the table's upper half holds the
tinted colours, the label table ignores the bit, so lenses never change labels.
"""
from __future__ import annotations

import math

import numpy as np

from .params import FaceParams

# material ids ------------------------------------------------------------------------------
BG, N_BG = 0, 32             # vertical gradient bands
CLOTH, CLOTH_DARK = 32, 33
HAIR, N_HAIR = 34, 16        # hair shade bands, light to dark
HAIR_DARK = 50               # strands
SKIN, N_SKIN = 52, 12        # skin shade bands, lit to shadowed
SKIN_SHADOW, NECK, LID, LASH, BLUSH, SKIN_HI = 64, 65, 66, 67, 68, 69
EAR, EAR_IN = 70, 71
BROW = 72
EYE_WHITE, IRIS, IRIS_RING, PUPIL, CATCHLIGHT = 74, 75, 76, 77, 78
NOSE, NOSE_DARK = 80, 81
LIP_UP, LIP_LO, LIP_LINE = 84, 85, 86
MOUTH, TONGUE, TEETH = 88, 89, 90
GLASSES, GLASSES_HI = 92, 93
TINTED = 128

_LABEL_OF = {
    0: range(BG, BG + N_BG), 1: [*range(HAIR, HAIR + N_HAIR), HAIR_DARK],
    2: [*range(SKIN, SKIN + N_SKIN), SKIN_SHADOW, NECK, LID, LASH, BLUSH, SKIN_HI], 3: [EAR, EAR_IN],
    4: [BROW], 5: [EYE_WHITE], 6: [IRIS, IRIS_RING], 7: [PUPIL, CATCHLIGHT],
    8: [NOSE, NOSE_DARK], 9: [LIP_UP, LIP_LO, LIP_LINE], 10: [MOUTH, TONGUE], 11: [TEETH],
    12: [GLASSES, GLASSES_HI],
}
MATERIAL_LABEL = np.zeros(256, np.uint8)
for _label, _mats in _LABEL_OF.items():
    MATERIAL_LABEL[list(_mats)] = _label
MATERIAL_LABEL[TINTED:] = MATERIAL_LABEL[:TINTED]
_MASK = (1 << 20) - 1        # one channel of a packed colour sum


def shade_bands(x, lo: float, hi: float, n: int, base: int):
    """Material ids base..base+n-1 spread linearly over x in [lo, hi] (shading as materials)."""
    b = (x - lo) * (n / (hi - lo))
    np.maximum(b, 0, out=b)
    np.minimum(b, n - 1, out=b)
    b = b.astype(np.uint8)
    b += np.uint8(base)
    return b


def colour_table(p: FaceParams) -> np.ndarray:
    """RGB of every material for this portrait, packed as r | g<<20 | b<<40 (int64, 256 rows).

    Packing lets the supersampled image be summed down with a handful of integer adds.
    """
    t = np.zeros((256, 3), np.float64)
    bg1, bg2 = np.array(p.bg_color, float), np.array(p.bg_color2, float)
    t[BG:BG + N_BG] = bg1 + (bg2 - bg1) * np.linspace(0, 1, N_BG)[:, None]
    cloth = np.array(p.cloth_color, float)
    t[CLOTH], t[CLOTH_DARK] = cloth, cloth * 0.72
    hair = np.array(p.hair_color, float)
    t[HAIR:HAIR + N_HAIR] = hair * np.linspace(1.12, 0.7, N_HAIR)[:, None] + 6
    t[HAIR_DARK] = hair * 0.72
    skin = np.array(p.skin_color, float)
    t[SKIN:SKIN + N_SKIN] = skin * (1 - p.shade * np.linspace(0, 1, N_SKIN) ** 1.5)[:, None]
    t[SKIN_SHADOW], t[NECK] = skin * 0.8, skin * 0.84
    t[LID], t[LASH] = skin * 0.45, np.minimum(skin * 0.25, 50)
    t[SKIN_HI] = skin + (255 - skin) * 0.1
    t[BLUSH] = skin + (np.array((235, 90, 100)) - skin) * p.blush * 0.45
    t[EAR], t[EAR_IN] = skin * 0.93, skin * 0.74
    t[BROW] = p.brow_color
    t[EYE_WHITE] = (246, 246, 242)
    iris = np.array(p.iris_color, float)
    t[IRIS], t[IRIS_RING] = iris, iris * 0.55
    t[PUPIL], t[CATCHLIGHT] = (16, 12, 14), (250, 250, 250)
    t[NOSE], t[NOSE_DARK] = skin * 0.88, skin * 0.62
    lip = np.array(p.lip_color, float)
    t[LIP_UP], t[LIP_LO], t[LIP_LINE] = lip * 0.88, lip * 1.04 + 8, lip * 0.45
    t[MOUTH], t[TONGUE], t[TEETH] = (86, 22, 30), (196, 84, 92), (250, 248, 236)
    frame = np.array(p.glasses_color, float)
    t[GLASSES], t[GLASSES_HI] = frame, frame * 0.7 + 90
    t[TINTED:] = t[:TINTED] * (1 - p.lens_tint) + np.array(p.tint_color, float) * p.lens_tint
    q = np.clip(np.rint(t), 0, 255).astype(np.int64)
    return q[:, 0] | (q[:, 1] << 20) | (q[:, 2] << 40)


class Canvas:
    """Material ids on the sample grid of an n×n image with ss samples per pixel and axis.

    The grid always contains every pixel centre, so a label is the exact class there: odd ss
    uses the midpoint grid (p + (k+0.5)/ss, box filter), even ss the grid p + k/ss shared with
    the neighbours (trapezoid-rule box filter, weights 1,2,..,2,1). `U`, `V` are the face-unit
    coordinates of every sample (the inverse pose, applied once); shapes read them only inside
    their bounding box (`box`) and paint with `paint`.
    """

    def __init__(self, p: FaceParams, n: int, ss: int):
        self.n, self.ss = n, ss
        self.H = h = n * ss
        self._off = 0.5 if ss % 2 else 0.0
        count = h if ss % 2 else h + 1
        t = (np.arange(count, dtype=np.float32) + np.float32(self._off)) * np.float32(2.0 / h) - np.float32(1.0)
        a = math.radians(p.roll)
        self._c, self._s = math.cos(a), math.sin(a)
        self._p = p
        self.tint = p.lens_tint > 0
        dx, dy = t - np.float32(p.shift_x), t - np.float32(p.shift_y)
        ck, sk = self._c / p.scale, self._s / p.scale
        self.U = (ck * dx)[None, :] + (sk * dy)[:, None]
        self.V = (-sk * dx)[None, :] + (ck * dy)[:, None]
        band = (np.arange(count) * N_BG // count).astype(np.uint8) + BG
        self.mat = np.broadcast_to(band[:, None], (count, count)).copy()
        self.cache: dict = {}     # per-portrait intermediate results that several layers share

    def box(self, u0: float, u1: float, v0: float, v1: float):
        """Sample-index slices covering the face-unit rectangle [u0,u1]×[v0,v1]; None if empty."""
        p, c, s = self._p, self._c, self._s
        xs = [p.shift_x + p.scale * (c * u - s * v) for u in (u0, u1) for v in (v0, v1)]
        ys = [p.shift_y + p.scale * (s * u + c * v) for u in (u0, u1) for v in (v0, v1)]
        f, off, last = self.H / 2, self._off, self.mat.shape[0]
        j0 = max(0, math.floor((min(xs) + 1) * f - off))
        j1 = min(last, math.ceil((max(xs) + 1) * f - off) + 1)
        i0 = max(0, math.floor((min(ys) + 1) * f - off))
        i1 = min(last, math.ceil((max(ys) + 1) * f - off) + 1)
        if j0 >= j1 or i0 >= i1:
            return None
        return slice(i0, i1), slice(j0, j1)

    def uv(self, box):
        return self.U[box], self.V[box]

    def paint(self, box, mask, material) -> None:
        """Paint `material` (an id, or an id array of the box's shape) where `mask` holds."""
        np.copyto(self.mat[box], material, where=mask)

    def is_skin(self, box) -> np.ndarray:
        """Where the face's shaded skin is painted (so later layers need not re-evaluate it)."""
        return (self.mat[box] - np.uint8(SKIN)) < N_SKIN

    def tint_lens(self, box, mask) -> None:
        """Mark samples behind a tinted lens (colour changes, label does not)."""
        if self.tint:
            view = self.mat[box]
            np.bitwise_or(view, np.uint8(TINTED), out=view, where=mask)

    def labels(self) -> np.ndarray:
        """Class at every pixel centre."""
        c = self.ss // 2
        return MATERIAL_LABEL[self.mat[c::self.ss, c::self.ss][:self.n, :self.n]]

    def _reduce(self, a: np.ndarray, axis: int) -> np.ndarray:
        ss, n = self.ss, self.n
        take = (lambda k, e=None: a[k:e:ss]) if axis == 0 else (lambda k, e=None: a[:, k:e:ss])
        mid = take(1 if ss % 2 == 0 else 0, n * ss)
        for k in range(2 if ss % 2 == 0 else 1, ss):
            mid = mid + take(k, n * ss)
        if ss % 2:
            return mid
        return mid + mid + take(0, n * ss) + take(ss)

    def rgb(self, table: np.ndarray) -> np.ndarray:
        """Box-filtered RGB (float64, n×n×3) of the material raster, given `colour_table`."""
        s = self._reduce(self._reduce(np.take(table, self.mat), 0), 1)
        out = np.empty(s.shape + (3,), np.float64)
        out[..., 0], out[..., 1], out[..., 2] = s & _MASK, (s >> 20) & _MASK, s >> 40
        w = self.ss if self.ss % 2 else 2 * self.ss
        return out * (1.0 / (w * w))

