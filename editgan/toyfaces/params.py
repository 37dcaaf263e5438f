"""Label classes, palette and the random parameters of a toy portrait.

Lengths are in *face units*: the image spans [-1, 1] on both axes and the face (skin ellipse) is
centred on the origin before the pose (shift, scale, roll) is applied; y points down.
Colours are stored as RGB int tuples so a parameter set is self-contained and JSON-able.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

CLASSES: tuple[str, ...] = (
    "background", "hair", "skin", "ear", "eyebrow", "eye_white", "iris", "pupil", "nose",
    "lips", "mouth_interior", "teeth", "glasses",
)
PALETTE = np.array(
    [(0, 0, 0), (140, 70, 20), (255, 200, 160), (200, 120, 90), (90, 40, 140), (255, 255, 255),
     (0, 160, 255), (255, 0, 255), (255, 140, 0), (220, 20, 60), (100, 0, 30), (240, 240, 120),
     (0, 200, 80)], dtype=np.uint8)
PALETTE.setflags(write=False)

HAIR_STYLES = ("bald", "short", "bob", "long")
GLASSES_STYLES = ("round", "rect", "browline")
FRINGE_STYLES = ("rounded", "parted", "bangs", "swept")

# Ranges that the edits rely on (see edits.py).
BROW_RAISE = 0.08        # how far raise_eyebrows lifts the brows; the hairline leaves room for it
BROW_HEIGHT_MAX = 0.24   # sampled brow heights stay below this, so "raised" is recognisable
SMILE_BIG = 0.45         # smiles at or above this count as already big
OPEN_MOUTH_MIN = 0.45    # sampled open mouths are at least this open; closed ones are 0
EYES_OPEN_MIN = 0.55     # sampled open eyes are at least this open; closed ones are 0

Color = tuple[int, int, int]


@dataclass(frozen=True)
class FaceParams:
    """Everything that determines one portrait; `render` is a pure function of it."""
    # pose
    shift_x: float
    shift_y: float
    scale: float
    roll: float                # degrees, positive = clockwise on screen
    # head
    head_w: float              # half-width of the face ellipse
    head_h: float              # half-height of the face ellipse
    jaw: float                 # >0 narrows the lower face towards the chin, <0 squares it
    skin_color: Color
    blush: float               # 0 = none
    shade: float               # darkening of the skin towards the face outline
    # ears
    ear_w: float
    ear_h: float
    ear_y: float
    # hair
    hair_style: str            # one of HAIR_STYLES
    hair_color: Color
    hair_volume: float         # how far the hair stands out of the skull outline
    hair_length: float         # 0..1, bottom of a bob / long hair
    fringe_style: int          # index into FRINGE_STYLES
    fringe_y: float            # hairline height on the forehead midline
    hair_part: float           # -1..1 parting / sweep position
    side_locks: float          # how far bob/long locks overlap the face edge
    ears_covered: bool         # long hair over the ears (bob always covers them)
    # eyes
    eye_y: float
    eye_spacing: float         # x of each eye centre
    eye_size: float            # eye half-width
    eye_open: float            # 0 = closed (lid line only), else EYES_OPEN_MIN..1
    eye_tilt: float
    iris_color: Color
    iris_size: float           # iris radius / eye half-width
    pupil_size: float          # pupil radius / iris radius
    gaze_x: float
    lashes: float              # upper lash line thickness
    # eyebrows
    brow_height: float         # brow centreline above the eye centre
    brow_angle: float          # slope, >0 raises the outer end
    brow_thickness: float
    brow_arch: float
    brow_length: float
    brow_color: Color
    # nose
    nose_y: float              # tip below the eye line
    nose_size: float
    nose_bridge: bool
    # mouth
    mouth_y: float             # below the nose tip
    mouth_width: float         # half-width
    smile: float               # -0.25..1, corner lift
    mouth_open: float          # 0 = closed, else OPEN_MOUTH_MIN..1
    lip_color: Color
    lip_upper: float
    lip_lower: float
    # glasses
    glasses: bool
    glasses_style: int         # index into GLASSES_STYLES
    glasses_size: float        # lens margin around the eye
    glasses_color: Color
    glasses_thickness: float
    lens_tint: float           # 0 = clear
    tint_color: Color
    # scene
    bg_color: Color
    bg_color2: Color           # bottom of the vertical gradient (= bg_color when flat)
    cloth_color: Color
    neck_width: float
    collar: int                # 0 round neckline, 1 V-neck
    light_angle: float         # radians, direction the light comes from
    light_strength: float

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists once serialised)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FaceParams":
        """Inverse of `to_dict`; accepts lists for colours (as JSON gives them back)."""
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) != names:
            raise ValueError(f"FaceParams keys differ: missing {sorted(names - set(d))}, "
                             f"unknown {sorted(set(d) - names)}")
        return cls(**{k: tuple(int(c) for c in v) if isinstance(v, (list, tuple)) else v
                      for k, v in d.items()})


_SKIN_RAMP = np.array([(255, 226, 200), (246, 204, 170), (232, 180, 140), (214, 158, 116),
                       (184, 128, 88), (150, 98, 64), (116, 72, 46), (84, 52, 34)], np.float64)
# black, dark brown, brown, light brown, auburn, ginger, blond, platinum, grey, white
_HAIR_COLORS = [(30, 25, 24), (62, 40, 28), (104, 66, 38), (146, 98, 56), (138, 52, 26),
                (196, 100, 44), (222, 182, 106), (238, 220, 160), (146, 144, 142), (220, 218, 212)]
_HAIR_WEIGHTS = np.cumsum([.18, .18, .14, .09, .07, .07, .10, .04, .07, .06])
_STYLE_WEIGHTS = np.cumsum([0.16, 0.3, 0.26, 0.28])     # bald, short, bob, long
CLOSED_EYES_RATE = 0.1
OPEN_MOUTH_RATE = 0.3
GLASSES_RATE = 0.3
_IRIS_COLORS = [(96, 58, 30), (62, 38, 22), (140, 106, 48), (70, 128, 72), (66, 126, 196),
                (116, 142, 156), (176, 120, 40)]
_FRAME_COLORS = [(20, 20, 24), (70, 40, 24), (140, 76, 36), (180, 30, 40), (30, 40, 110),
                 (196, 160, 70), (176, 178, 186), (120, 30, 110)]
_LIPSTICK = [(200, 30, 50), (220, 80, 120), (130, 30, 70), (230, 100, 80)]


def _weighted(rng: np.random.Generator, cum: np.ndarray) -> int:
    """Index drawn with the probabilities whose running sum is `cum`."""
    return min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(cum) - 1)


def _hsv(h: float, s: float, v: float) -> Color:
    """HSV (all 0..1) to an RGB int tuple."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return tuple(int(round(255 * c)) for c in rgb)


def _mix(a, b, t: float) -> Color:
    return tuple(int(round(min(255, max(0, x + (y - x) * t)))) for x, y in zip(a, b))


def _jitter(rng: np.random.Generator, c, amount: float) -> Color:
    k = 1 + rng.uniform(-amount, amount)
    return tuple(int(round(min(255, max(0, x * k)))) for x in c)


def sample_params(rng: np.random.Generator) -> FaceParams:
    """Draw one portrait; the draw order is fixed, so a seeded generator gives a fixed face."""
    u = lambda a, b: a + (b - a) * rng.random()  # noqa: E731
    pick = lambda seq: seq[int(rng.random() * len(seq))]  # noqa: E731

    # eyes first: the face is built around them so that nothing collides
    ew = u(0.115, 0.145)
    es = ew + u(0.085, 0.125)
    hw = es + ew + u(0.13, 0.21)
    hh = float(np.clip(hw * u(1.12, 1.3), 0.6, 0.76))
    eye_y = hh * u(-0.1, 0.03)
    eye_open = 0.0 if rng.random() < CLOSED_EYES_RATE else u(EYES_OPEN_MIN, 1.0)

    brow_height = u(0.17, BROW_HEIGHT_MAX)
    brow_arch = u(0.0, 0.035)
    brow_thickness = u(0.05, 0.075)
    brow_top = eye_y - brow_height - BROW_RAISE - brow_arch - brow_thickness / 2
    fringe_y = max(brow_top - u(0.04, 0.12), -hh + 0.12)

    nose_y = u(0.2, 0.27)
    mouth_width = u(0.17, 0.24)
    mouth_y = u(0.15, 0.2)
    smile = u(-0.25, 0.75)
    mouth_open = u(OPEN_MOUTH_MIN, 1.0) if rng.random() < OPEN_MOUTH_RATE else 0.0

    hair_base = _HAIR_COLORS[_weighted(rng, _HAIR_WEIGHTS)]
    hair_color = _jitter(rng, hair_base, 0.08)
    natural = hair_base if sum(hair_base) < 420 else _mix(hair_base, (70, 50, 35), 0.55)
    style = HAIR_STYLES[_weighted(rng, _STYLE_WEIGHTS)]

    tone = u(0, 1) ** 0.9 * (len(_SKIN_RAMP) - 1)
    i = min(int(tone), len(_SKIN_RAMP) - 2)
    skin = _SKIN_RAMP[i] + (_SKIN_RAMP[i + 1] - _SKIN_RAMP[i]) * (tone - i)
    skin = tuple(int(round(c)) for c in np.clip(skin * (1 + rng.uniform(-0.03, 0.03, 3)), 0, 255))
    lip_color = (pick(_LIPSTICK) if rng.random() < 0.15
                 else _mix(skin, (190, 70, 80) if sum(skin) > 450 else (110, 40, 40), u(0.35, 0.6)))

    bg = _hsv(u(0, 1), u(0.2, 0.75), u(0.45, 0.95))
    bg2 = _mix(bg, _hsv(u(0, 1), u(0.2, 0.7), u(0.3, 0.95)), u(0.3, 0.8)) if rng.random() < 0.5 else bg

    return FaceParams(
        shift_x=u(-0.05, 0.05), shift_y=u(0.02, 0.09), scale=u(1.0, 1.12),
        roll=float(np.clip(rng.normal(0, 3.5), -8, 8)),
        head_w=hw, head_h=hh, jaw=u(-0.12, 0.35), skin_color=skin,
        blush=u(0.25, 0.6) if rng.random() < 0.35 else 0.0, shade=u(0.08, 0.2),
        ear_w=u(0.055, 0.085), ear_h=u(0.11, 0.15), ear_y=eye_y + u(0.07, 0.13),
        hair_style=style, hair_color=hair_color,
        hair_volume=u(0.13, 0.22) if rng.random() < 0.15 else u(0.03, 0.11),
        hair_length=u(0, 1), fringe_style=pick(range(len(FRINGE_STYLES))),
        fringe_y=fringe_y, hair_part=u(-1, 1), side_locks=u(0.03, 0.09),
        ears_covered=bool(rng.random() < 0.6),
        eye_y=eye_y, eye_spacing=es, eye_size=ew, eye_open=eye_open, eye_tilt=u(-0.12, 0.12),
        iris_color=_jitter(rng, pick(_IRIS_COLORS), 0.1), iris_size=u(0.52, 0.64),
        pupil_size=u(0.42, 0.54), gaze_x=u(-0.15, 0.15), lashes=u(0.02, 0.04),
        brow_height=brow_height, brow_angle=u(-0.25, 0.25), brow_thickness=brow_thickness,
        brow_arch=brow_arch, brow_length=u(0.09, 0.13),
        brow_color=_jitter(rng, natural, 0.06),
        nose_y=nose_y, nose_size=u(0.045, 0.075), nose_bridge=bool(rng.random() < 0.5),
        mouth_y=mouth_y, mouth_width=mouth_width, smile=smile, mouth_open=mouth_open,
        lip_color=lip_color, lip_upper=u(0.022, 0.036), lip_lower=u(0.03, 0.05),
        glasses=bool(rng.random() < GLASSES_RATE), glasses_style=pick(range(len(GLASSES_STYLES))),
        glasses_size=u(0.035, 0.06), glasses_color=_jitter(rng, pick(_FRAME_COLORS), 0.1),
        glasses_thickness=u(0.04, 0.058),
        lens_tint=u(0.15, 0.4) if rng.random() < 0.3 else 0.0,
        tint_color=pick([(60, 60, 70), (60, 90, 160), (170, 120, 40), (150, 60, 110)]),
        bg_color=bg, bg_color2=bg2, cloth_color=_hsv(u(0, 1), u(0.2, 0.85), u(0.25, 0.9)),
        neck_width=u(0.17, 0.24), collar=pick((0, 1)),
        light_angle=u(0, 2 * np.pi), light_strength=u(0.0, 0.12),
    )


def params_for_seed(seed: int) -> FaceParams:
    """The portrait of a seed: `sample_params(np.random.default_rng(seed))`."""
    return sample_params(np.random.default_rng(seed))


def _apportion(rates, count: int) -> list[int]:
    """Integer shares of ``count`` proportional to ``rates`` (largest remainder), summing to ``count``."""
    exact = [r * count / sum(rates) for r in rates]
    shares = [int(x) for x in exact]
    for i in sorted(range(len(rates)), key=lambda i: shares[i] - exact[i])[:count - sum(shares)]:
        shares[i] += 1
    return shares


def stratified_seeds(count: int, start: int = 0) -> list[int]:
    """The first seeds from ``start`` forming a sample in which each part-level attribute appears at its rate.

    A few-shot annotation set drawn at random can miss a rare part entirely (seeds 0–15 hold one
    open mouth, where 30 % of faces have one), and then the segmenter never learns it. Here each
    attribute that decides which classes are drawn (mouth open, glasses, eyes closed, hair style)
    gets its expected share of ``count``: seeds are taken in order and skipped while one of their
    strata is full. Attributes are independent, so every combination keeps appearing and the walk ends.
    """
    strata = {
        "mouth_open": (lambda f: int(f.mouth_open > 0), _apportion([1 - OPEN_MOUTH_RATE, OPEN_MOUTH_RATE], count)),
        "glasses": (lambda f: int(f.glasses), _apportion([1 - GLASSES_RATE, GLASSES_RATE], count)),
        "eyes_closed": (lambda f: int(f.eye_open == 0), _apportion([1 - CLOSED_EYES_RATE, CLOSED_EYES_RATE], count)),
        "hair_style": (lambda f: HAIR_STYLES.index(f.hair_style), _apportion(np.diff(_STYLE_WEIGHTS, prepend=0), count)),
    }
    left = {name: list(quota) for name, (_, quota) in strata.items()}
    seeds, seed = [], start
    while len(seeds) < count:
        face = params_for_seed(seed)
        cells = {name: key(face) for name, (key, _) in strata.items()}
        if all(left[name][cell] > 0 for name, cell in cells.items()):
            seeds.append(seed)
            for name, cell in cells.items():
                left[name][cell] -= 1
        seed += 1
    return seeds
