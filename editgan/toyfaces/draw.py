"""The layers of a toy portrait, painted back to front onto a `Canvas`.

Each layer evaluates implicit shapes on the face-unit coordinates of the samples inside its own
bounding box only, so small parts (eyes, mouth) cost little and a layer never touches pixels
outside its box — which is also why an edit of one attribute changes only that attribute's pixels.
Symmetric parts (eyes, brows, ears, glasses) are evaluated once on |u|.
"""
from __future__ import annotations

import numpy as np

from . import canvas as m
from .canvas import Canvas
from .geometry import ear_x, face_q, nose_mouth
from .hair import back_hair, front_hair
from .params import FaceParams


def _shoulders(p: FaceParams):
    """(centre v, half-width, half-height) of the shoulder ellipse."""
    return p.head_h + 0.55, max(1.05, p.head_w * 2.0), 0.42


def clothes(cv: Canvas, p: FaceParams) -> None:
    """Shoulders with a darker trim along the neckline (labelled background: not a class)."""
    sy, sw, sh = _shoulders(p)
    top = sy - sh
    box = cv.box(-sw, sw, top, sy + sh)
    if box:
        u, v = cv.uv(box)
        x, y = u * (1 / sw), (v - sy) * (1 / sh)
        body = x * x + y * y < 1
        cv.paint(box, body, m.CLOTH)
        collar = _collar(p, u, top)
        cv.paint(box, body & (np.abs(u) < p.neck_width * 1.25) & (v < collar + 0.035), m.CLOTH_DARK)


def neck(cv: Canvas, p: FaceParams) -> None:
    """Neck and neckline skin, darker in the chin's shadow."""
    sy, _, sh = _shoulders(p)
    top, nw = sy - sh, p.neck_width
    box = cv.box(-nw * 1.1, nw * 1.1, 0.2, top + 0.3)
    if box:
        u, v = cv.uv(box)
        skin = (np.abs(u) < nw) & (v > 0.2) & (v < _collar(p, u, top))
        cv.paint(box, skin, m.NECK)
        cv.paint(box, skin & (face_q(p, u, v - 0.07) < 1), m.SKIN_SHADOW)


def _collar(p: FaceParams, u, top: float):
    """v of the neckline: a U or a V below the top of the shoulders."""
    t = np.maximum(1 - np.abs(u) * (1 / (p.neck_width * 1.2)), 0)
    return top + 0.05 + (0.2 * t if p.collar else 0.1 * (1 - (1 - t) ** 2))


def head(cv: Canvas, p: FaceParams) -> None:
    """Ears, then the face with its edge shading and blush."""
    hw, hh = p.head_w, p.head_h
    ecx = ear_x(p)
    box = cv.box(-(ecx + p.ear_w), ecx + p.ear_w, p.ear_y - p.ear_h, p.ear_y + p.ear_h)
    if box:
        u, v = cv.uv(box)
        x, y = (np.abs(u) - ecx) * (1 / p.ear_w), (v - p.ear_y) * (1 / p.ear_h)
        cv.paint(box, x * x + y * y < 1, m.EAR)
        x2, y2 = (x - 0.15) * 2.0, (y - 0.05) * 1.6
        cv.paint(box, x2 * x2 + y2 * y2 < 1, m.EAR_IN)

    wmax = hw * (1 + max(0.0, -p.jaw))
    box = cv.box(-wmax, wmax, -hh, hh)
    if box:
        u, v = cv.uv(box)
        q = face_q(p, u, v)
        cv.paint(box, q < 1, m.shade_bands(q, 0.4, 1.0, m.N_SKIN, m.SKIN))
        if p.hair_style == "bald":                 # a sheen on the crown
            x, y = (u + 0.25 * hw) * (2.6 / hw), (v + 0.78 * hh) * (5.0 / hh)
            cv.paint(box, (x * x + y * y < 1) & (q < 1), m.SKIN_HI)
    if p.blush > 0:
        bx, by, bw, bh = p.eye_spacing + 0.02, p.eye_y + 0.7 * p.nose_y + 0.03, 0.09, 0.05
        box = cv.box(-(bx + bw), bx + bw, by - bh, by + bh)
        if box:
            u, v = cv.uv(box)
            x, y = (np.abs(u) - bx) * (1 / bw), (v - by) * (1 / bh)
            cv.paint(box, x * x + y * y < 1, m.BLUSH)


def brows(cv: Canvas, p: FaceParams) -> None:
    """Tapered arcs; drawn after the hair, so a low fringe never hides a raised brow."""
    cx, by, bl, th = p.eye_spacing + 0.01, p.eye_y - p.brow_height, p.brow_length, p.brow_thickness
    reach = abs(p.brow_angle) * bl + p.brow_arch + th
    box = cv.box(-(cx + bl), cx + bl, by - reach, by + reach)
    if box:
        u, v = cv.uv(box)
        x = (np.abs(u) - cx) * (1 / bl)
        c = -p.brow_arch * (1 - x * x) - p.brow_angle * bl * x
        half = (0.5 * th) * (1.0 - 0.3 * x)   # thicker at the inner end
        y = (v - by - c) / half
        x2 = x * x
        cv.paint(box, x2 * x2 + y * y < 1, m.BROW)


def eyes(cv: Canvas, p: FaceParams) -> None:
    """Open: lash line, white, iris with a dark rim, pupil, catchlight. Closed: a lid line only."""
    es, ew, ey0 = p.eye_spacing, p.eye_size, p.eye_y
    reach = ew * 0.8 + p.lashes + abs(p.eye_tilt) * ew + 0.03
    box = cv.box(-(es + ew + 0.05), es + ew + 0.05, ey0 - reach, ey0 + reach)
    if not box:
        return
    u, v = cv.uv(box)
    ex = (np.abs(u) - es) * (1 / ew)
    dy = v - ey0 + p.eye_tilt * ew * ex
    if p.eye_open <= 0:
        arc = ew * 0.2 * (1 - ex * ex)
        cv.paint(box, (np.abs(dy - arc) < 0.018) & (np.abs(ex) < 1.05), m.LID)
        return
    eh_u, eh_l = ew * 0.72 * p.eye_open, ew * 0.5 * p.eye_open
    up = dy < 0
    yn = dy * np.where(up, np.float32(1 / eh_u), np.float32(1 / eh_l))
    q = ex * ex + yn * yn
    eye = q < 1
    ex2 = ex * (1 / 1.08)
    yl = dy * (1 / (eh_u + p.lashes))
    cv.paint(box, up & ~eye & (ex2 * ex2 + yl * yl < 1), m.LASH)
    cv.paint(box, eye, m.EYE_WHITE)
    ir = p.iris_size * ew
    dx = u - np.copysign(es, u) - p.gaze_x * ew
    dyi = v - ey0
    d2 = dx * dx + dyi * dyi
    cv.paint(box, eye & (d2 < ir * ir), m.IRIS)
    cv.paint(box, eye & (d2 < ir * ir) & (d2 > (0.75 * ir) ** 2), m.IRIS_RING)
    pr = p.pupil_size * ir
    pupil = eye & (d2 < pr * pr)
    cv.paint(box, pupil, m.PUPIL)
    cx, cy = dx - 0.4 * pr, dyi + 0.4 * pr
    cv.paint(box, pupil & (cx * cx + cy * cy < (0.32 * pr) ** 2), m.CATCHLIGHT)


def nose(cv: Canvas, p: FaceParams) -> None:
    """A rounded tip with nostrils, optionally a bridge line on the shadow side."""
    ny, _ = nose_mouth(p)
    ns = p.nose_size
    top = p.eye_y + 0.05 if p.nose_bridge else ny - ns
    box = cv.box(-ns * 1.1, ns * 1.1, top, ny + ns)
    if not box:
        return
    u, v = cv.uv(box)
    x, y = u * (1 / ns), (v - ny) * (1 / (0.72 * ns))
    cv.paint(box, x * x + y * y < 1, m.NOSE)
    nx, nyy = (np.abs(x) - 0.45) * (1 / 0.3), (y - 0.35) * (1 / 0.3)
    cv.paint(box, nx * nx + nyy * nyy < 1, m.NOSE_DARK)
    if p.nose_bridge:
        side = -0.55 * ns if np.cos(p.light_angle) > 0 else 0.55 * ns
        line = (np.abs(u - side * (v - top) / (ny - top)) < 0.016) & (v > top) & (v < ny - 0.4 * ns)
        cv.paint(box, line, m.NOSE_DARK)


def mouth(cv: Canvas, p: FaceParams) -> None:
    """Lips around a centre line whose corners rise with `smile`; opening shows teeth and tongue."""
    _, my0 = nose_mouth(p)
    mw, lift = p.mouth_width, p.smile * 0.11
    h = p.mouth_open * 0.17
    box = cv.box(-mw - 0.03, mw + 0.03, my0 - abs(lift) - 0.3 * h - p.lip_upper - 0.03,
                 my0 + abs(lift) + h + p.lip_lower + 0.03)
    if not box:
        return
    u, v = cv.uv(box)
    xn = u * (1 / mw)
    prof = np.maximum(1 - xn * xn, 0)
    sq = np.sqrt(prof)
    y = v - my0 - lift * (0.3 - xn * xn)           # distance below the (smiling) centre line
    inside = prof > 0
    top, bot = -0.25 * h * prof, h * sq
    cv.paint(box, inside & (y >= top - p.lip_upper * sq) & (y < top), m.LIP_UP)
    cv.paint(box, inside & (y > bot) & (y <= bot + p.lip_lower * sq), m.LIP_LO)
    if h <= 0:
        cv.paint(box, (np.abs(y) < 0.012) & inside, m.LIP_LINE)
        return
    hole = inside & (y >= top) & (y <= bot)
    cv.paint(box, hole, m.MOUTH)
    tx, ty = u * (1 / (0.55 * mw)), (y - bot) * (1 / (0.45 * h))
    cv.paint(box, hole & (tx * tx + ty * ty < 1), m.TONGUE)
    cv.paint(box, hole & (y < top + min(0.45 * h, 0.045) * sq), m.TEETH)


def _lens_sdf(p: FaceParams, x, y, lw: float, lh: float):
    """Signed distance to the lens outline (x, y relative to the lens centre, x mirrored)."""
    if p.glasses_style == 0:
        return np.sqrt(x * x + y * y) - lw
    r = 0.45 * lh
    qx, qy = np.abs(x) - (lw - r), np.abs(y) - (lh - r)
    ox, oy = np.maximum(qx, 0), np.maximum(qy, 0)
    return np.sqrt(ox * ox + oy * oy) + np.minimum(np.maximum(qx, qy), 0) - r


def glasses(cv: Canvas, p: FaceParams) -> None:
    """Rims, bridge and temples are 'glasses'; lenses only tint what is behind them."""
    if not p.glasses:
        return
    es, ew, gs, t = p.eye_spacing, p.eye_size, p.glasses_size, p.glasses_thickness
    lw = ew + gs
    lh = lw if p.glasses_style == 0 else ew * 0.72 + gs * 0.9
    ly = p.eye_y + 0.01
    reach = p.head_w + 0.03
    box = cv.box(-reach, reach, ly - lh - t, ly + lh + t)
    if not box:
        return
    u, v = cv.uv(box)
    au = np.abs(u)
    x, y = au - es, v - ly
    d = _lens_sdf(p, x, y, lw, lh)
    half = np.where(y < -0.3 * lh, np.float32(t), np.float32(0.5 * t)) if p.glasses_style == 2 else 0.5 * t
    cv.tint_lens(box, d < -half)
    rim = np.abs(d) < half
    bar_y = -0.3 * lh
    bridge = (np.abs(y - bar_y + 0.04 * (1 - (u / (es - 0.6 * lw)) ** 2)) < 0.5 * t) & (au < es - 0.5 * lw)
    temple = (np.abs(y - bar_y) < 0.5 * t) & (au > es + 0.5 * lw) & (au < reach)
    frame = rim | ((bridge | temple) & (d > -half))
    cv.paint(box, frame, m.GLASSES)
    cv.paint(box, rim & (y < -0.55 * lh) & (x < 0) & (d < 0), m.GLASSES_HI)


LAYERS = (clothes, back_hair, neck, head, front_hair, brows, eyes, nose, mouth, glasses)
