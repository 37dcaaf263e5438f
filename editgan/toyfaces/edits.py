"""Counterfactual edits: each changes one attribute of a `FaceParams` and nothing else.

Because `render` is a pure function of the parameters and every part is painted only inside its
own region, render(apply_edit(p, name)) differs from render(p) only where that attribute is —
the ground truth the editing benchmark compares against.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .params import BROW_HEIGHT_MAX, BROW_RAISE, SMILE_BIG, FaceParams, sample_params
from .render import render

_replace = dataclasses.replace


def _smile(p: FaceParams) -> FaceParams:
    return _replace(p, smile=min(1.0, max(p.smile + 0.5, 0.8)))


def _open_mouth(p: FaceParams) -> FaceParams:
    return _replace(p, mouth_open=0.85)


def _big_pupils(p: FaceParams) -> FaceParams:
    return _replace(p, pupil_size=min(0.92, p.pupil_size * 1.8))


def _close_eyes(p: FaceParams) -> FaceParams:
    return _replace(p, eye_open=0.0)


def _raise_eyebrows(p: FaceParams) -> FaceParams:
    return _replace(p, brow_height=p.brow_height + BROW_RAISE)


def _add_glasses(p: FaceParams) -> FaceParams:
    return _replace(p, glasses=True)


def _remove_glasses(p: FaceParams) -> FaceParams:
    return _replace(p, glasses=False)


def _short_hair(p: FaceParams) -> FaceParams:
    return _replace(p, hair_style="short")


EDITS: dict[str, Callable[[FaceParams], FaceParams]] = {
    "smile": _smile, "open_mouth": _open_mouth, "big_pupils": _big_pupils,
    "close_eyes": _close_eyes, "raise_eyebrows": _raise_eyebrows, "add_glasses": _add_glasses,
    "remove_glasses": _remove_glasses, "short_hair": _short_hair,
}

# When an edit makes a visible, recognisable change (otherwise a benchmark task would be a no-op).
_APPLIES: dict[str, Callable[[FaceParams], bool]] = {
    "smile": lambda p: p.smile < SMILE_BIG,
    "open_mouth": lambda p: p.mouth_open < 0.3,
    "big_pupils": lambda p: p.eye_open > 0.3 and p.pupil_size < 0.6,
    "close_eyes": lambda p: p.eye_open > 0.3,
    "raise_eyebrows": lambda p: p.brow_height <= BROW_HEIGHT_MAX,
    "add_glasses": lambda p: not p.glasses,
    "remove_glasses": lambda p: p.glasses,
    "short_hair": lambda p: p.hair_style in ("long", "bob"),
}


def _check(name: str) -> None:
    if name not in EDITS:
        raise KeyError(f"unknown edit {name!r}; known: {', '.join(EDITS)}")


def apply_edit(params: FaceParams, name: str) -> FaceParams:
    """`params` with the one attribute of edit `name` changed."""
    _check(name)
    return EDITS[name](params)


def edit_applies(params: FaceParams, name: str) -> bool:
    """Whether edit `name` would visibly change this face (e.g. remove_glasses needs glasses)."""
    _check(name)
    return bool(_APPLIES[name](params))


def sample_edit_pair(name: str, seed: int, size: int = 64, supersample: int = 4) -> dict:
    """A deterministic (source, edited) pair for benchmark task (`name`, `seed`).

    Params are drawn from np.random.default_rng(seed) until the edit applies.
    """
    _check(name)
    rng = np.random.default_rng(seed)
    while True:
        src = sample_params(rng)
        if edit_applies(src, name):
            break
    tgt = apply_edit(src, name)
    src_rgb, src_labels = render(src, size, supersample)
    tgt_rgb, tgt_labels = render(tgt, size, supersample)
    return dict(source_params=src, target_params=tgt, source_rgb=src_rgb,
                source_labels=src_labels, target_rgb=tgt_rgb, target_labels=tgt_labels)
