"""Toy-portrait renderer: the ground truth of the project, so its promises are checked exactly."""
import argparse
import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from editgan.toyfaces import (CLASSES, EDITS, PALETTE, FaceParams, apply_edit, colorize,
                              edit_applies, params_for_seed, render, render_batch, sample_edit_pair,
                              sample_params, stratified_seeds)
from editgan.toyfaces.cli import register
from editgan.toyfaces.params import HAIR_STYLES

C = {name: i for i, name in enumerate(CLASSES)}


def test_classes_and_palette_are_the_contract():
    assert CLASSES == ("background", "hair", "skin", "ear", "eyebrow", "eye_white", "iris", "pupil",
                       "nose", "lips", "mouth_interior", "teeth", "glasses")
    assert PALETTE.dtype == np.uint8 and PALETTE.shape == (13, 3)
    assert PALETTE[C["pupil"]].tolist() == [255, 0, 255]
    assert PALETTE[C["glasses"]].tolist() == [0, 200, 80]
    assert len({tuple(c) for c in PALETTE.tolist()}) == 13


@pytest.mark.parametrize("size,ss", [(64, 4), (256, 4), (48, 3), (32, 1)])
def test_shapes_and_dtypes(size, ss):
    rgb, labels = render(params_for_seed(1), size, ss)
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8
    assert labels.shape == (size, size) and labels.dtype == np.uint8
    assert labels.max() < len(CLASSES)


def test_deterministic_and_no_global_rng():
    state = np.random.get_state()[1].copy()
    a, b = params_for_seed(7), sample_params(np.random.default_rng(7))
    assert a == b
    r1, r2 = render(a), render(b)
    assert np.array_equal(r1[0], r2[0]) and np.array_equal(r1[1], r2[1])
    assert np.array_equal(np.random.get_state()[1], state)
    assert params_for_seed(8) != a


def test_labels_are_pixel_centre_classes_independent_of_supersampling():
    # the sample grid always contains the pixel centres, so labels cannot depend on supersample
    for seed in (2, 3):
        ref = render(params_for_seed(seed), 64, 1)[1]
        for ss in (2, 4, 8):
            assert np.array_equal(render(params_for_seed(seed), 64, ss)[1], ref)


def test_antialiasing_blends_edges():
    rgb1 = render(params_for_seed(4), 64, 1)[0].astype(int)
    rgb4 = render(params_for_seed(4), 64, 4)[0].astype(int)
    assert 0 < np.abs(rgb1 - rgb4).mean() < 12   # same picture, softer edges


def test_all_classes_appear_and_parts_have_real_pixels():
    params = [params_for_seed(s) for s in range(50)]
    rgbs, labels = render_batch(params)
    seen = set(np.unique(labels).tolist())
    assert seen == set(range(len(CLASSES)))
    for p, lab in zip(params, labels):
        counts = np.bincount(lab.ravel(), minlength=len(CLASSES))
        assert 0.2 < (counts[C["skin"]] + counts[C["hair"]]) / lab.size < 0.9   # head fills the frame
        if p.eye_open > 0:
            assert counts[C["pupil"]] >= 4 and counts[C["iris"]] >= 8       # ≥ 2 px per pupil
        else:
            assert counts[C["eye_white"]] == counts[C["iris"]] == counts[C["pupil"]] == 0
        cols = np.nonzero((lab == C["lips"]) | (lab == C["mouth_interior"]))[1]
        assert cols.max() - cols.min() + 1 >= 10                          # mouth ≥ ~12 px wide
    # the face is shaded, not flat: many distinct colours on the skin of one image
    skin = rgbs[0][labels[0] == C["skin"]]
    assert len(np.unique(skin, axis=0)) > 8


def test_distributions():
    ps = [sample_params(np.random.default_rng(s)) for s in range(400)]
    frac = lambda f: np.mean([f(p) for p in ps])  # noqa: E731
    assert 0.2 < frac(lambda p: p.glasses) < 0.4
    assert 0.2 < frac(lambda p: p.mouth_open > 0) < 0.4
    assert 0.04 < frac(lambda p: p.eye_open == 0) < 0.17
    for style in ("bald", "short", "bob", "long"):
        assert frac(lambda p: p.hair_style == style) > 0.1
    assert max(abs(p.roll) for p in ps) <= 8


def test_render_batch_equals_render():
    params = [params_for_seed(s) for s in (10, 11, 12)]
    rgbs, labels = render_batch(params, 32, 2)
    assert rgbs.shape == (3, 32, 32, 3) and labels.shape == (3, 32, 32)
    for p, rgb, lab in zip(params, rgbs, labels):
        r, l = render(p, 32, 2)
        assert np.array_equal(r, rgb) and np.array_equal(l, lab)


def test_params_round_trip_through_json():
    p = params_for_seed(5)
    q = FaceParams.from_dict(json.loads(json.dumps(p.to_dict())))
    assert q == p and isinstance(q.skin_color, tuple)
    assert dataclasses.replace(p, smile=0.9).smile == 0.9
    with pytest.raises(ValueError):
        FaceParams.from_dict({**p.to_dict(), "bogus": 1})


def test_colorize_uses_the_palette():
    labels = render(params_for_seed(6))[1]
    col = colorize(labels)
    assert np.array_equal(col, PALETTE[labels])


def _dilate(mask, r):
    out = mask.copy()
    for _ in range(r):
        m = out.copy()
        m[1:] |= out[:-1]; m[:-1] |= out[1:]; m[:, 1:] |= out[:, :-1]; m[:, :-1] |= out[:, 1:]
        out = m
    return out


# classes an edit may add or remove; everything else must stay put
EDIT_CLASSES = {
    "smile": ("lips", "mouth_interior", "teeth"), "open_mouth": ("lips", "mouth_interior", "teeth"),
    "big_pupils": ("iris", "pupil"), "close_eyes": ("eye_white", "iris", "pupil"),
    "raise_eyebrows": ("eyebrow",), "add_glasses": ("glasses",), "remove_glasses": ("glasses",),
    "short_hair": ("hair",),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_edit_changes_only_its_attribute(name):
    assert set(EDIT_CLASSES) == set(EDITS)
    rel = [C[c] for c in EDIT_CLASSES[name]]
    for seed in (0, 1, 2):
        pair = sample_edit_pair(name, seed)
        src, tgt = pair["source_labels"], pair["target_labels"]
        assert edit_applies(pair["source_params"], name)
        assert pair["target_params"] == apply_edit(pair["source_params"], name)
        touched = np.isin(src, rel) | np.isin(tgt, rel)
        changed = src != tgt
        assert changed.any()
        assert not (changed & ~touched).any()          # labels change only at the edited parts
        rgb_changed = (pair["source_rgb"] != pair["target_rgb"]).any(-1)
        if name.endswith("glasses"):                   # tinted lenses: allowed inside the frame's box
            rows, cols = np.nonzero(touched)
            near = np.zeros_like(touched)
            near[max(rows.min() - 1, 0):rows.max() + 2, max(cols.min() - 1, 0):cols.max() + 2] = True
        else:
            near = _dilate(touched, 3)              # thin line ends (lip corners) are sub-pixel
        assert not (rgb_changed & ~near).any()          # far-away pixels are bit-identical
        count = lambda lab, c: int((lab == C[c]).sum())  # noqa: E731
        if name in ("smile", "open_mouth"):
            nose_top = np.nonzero(src == C["nose"])[0].min()
            assert np.array_equal(pair["source_rgb"][:nose_top], pair["target_rgb"][:nose_top])
        if name == "open_mouth":
            assert count(src, "teeth") == 0 and count(tgt, "teeth") > 0 and count(tgt, "mouth_interior") > 0
        if name == "big_pupils":
            assert count(tgt, "pupil") > 1.5 * count(src, "pupil")
        if name == "close_eyes":
            assert count(tgt, "eye_white") == count(tgt, "iris") == count(tgt, "pupil") == 0
        if name == "raise_eyebrows":
            assert np.nonzero(tgt == C["eyebrow"])[0].mean() < np.nonzero(src == C["eyebrow"])[0].mean() - 1
        if name == "add_glasses":
            assert count(src, "glasses") == 0 and count(tgt, "glasses") > 20
        if name == "short_hair":
            assert count(tgt, "hair") < count(src, "hair")


def test_sample_edit_pair_is_deterministic():
    a, b = sample_edit_pair("smile", 3), sample_edit_pair("smile", 3)
    assert a["source_params"] == b["source_params"]
    assert all(np.array_equal(a[k], b[k]) for k in a if k.endswith(("rgb", "labels")))
    assert sample_edit_pair("smile", 4)["source_params"] != a["source_params"]


def test_edit_applies_logic():
    p = params_for_seed(0)
    glasses, bare = dataclasses.replace(p, glasses=True), dataclasses.replace(p, glasses=False)
    assert edit_applies(glasses, "remove_glasses") and not edit_applies(bare, "remove_glasses")
    assert edit_applies(bare, "add_glasses") and not edit_applies(glasses, "add_glasses")
    for style, ok in (("long", True), ("bob", True), ("short", False), ("bald", False)):
        assert edit_applies(dataclasses.replace(p, hair_style=style), "short_hair") is ok
    open_eyes = dataclasses.replace(p, eye_open=0.8, pupil_size=0.45)
    assert edit_applies(open_eyes, "close_eyes") and edit_applies(open_eyes, "big_pupils")
    closed = apply_edit(open_eyes, "close_eyes")
    assert not edit_applies(closed, "close_eyes") and not edit_applies(closed, "big_pupils")
    assert not edit_applies(apply_edit(open_eyes, "big_pupils"), "big_pupils")
    plain = dataclasses.replace(p, smile=0.0, mouth_open=0.0)
    assert edit_applies(plain, "smile") and not edit_applies(apply_edit(plain, "smile"), "smile")
    assert edit_applies(plain, "open_mouth") and not edit_applies(apply_edit(plain, "open_mouth"), "open_mouth")
    assert not edit_applies(apply_edit(p, "raise_eyebrows"), "raise_eyebrows")
    smiled = apply_edit(plain, "smile")
    assert dataclasses.replace(smiled, smile=plain.smile) == plain   # one attribute only
    with pytest.raises(KeyError):
        apply_edit(p, "frown")


def test_cli_writes_pngs(tmp_path):
    ap = argparse.ArgumentParser(prog="editgan")
    register(ap.add_subparsers(dest="cmd", required=True))
    out = {k: tmp_path / f"{k}.png" for k in ("face", "labels", "edited", "labels_edited")}
    args = ap.parse_args(["render", "--seed", "3", "--size", "64", "--out", str(out["face"]),
                          "--labels", str(out["labels"]), "--edit", "open_mouth",
                          "--out-edited", str(out["edited"]), "--labels-edited",
                          str(out["labels_edited"]), "--save-params", str(tmp_path / "p.json")])
    assert args.func(args) == 0
    rgb, labels = render(params_for_seed(3), 64)
    assert np.array_equal(np.asarray(Image.open(out["face"]).convert("RGB")), rgb)
    assert np.array_equal(np.asarray(Image.open(out["labels"]).convert("RGB")), PALETTE[labels])
    edited = np.asarray(Image.open(out["labels_edited"]).convert("RGB"))
    assert (edited == PALETTE[C["teeth"]]).all(-1).any()
    assert not np.array_equal(np.asarray(Image.open(out["edited"])), rgb)
    # a saved parameter file renders the same portrait
    args = ap.parse_args(["render", "--params", str(tmp_path / "p.json"), "--size", "64",
                          "--out", str(tmp_path / "again.png")])
    args.func(args)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png").convert("RGB")), rgb)


def test_bounding_boxes_never_clip_a_shape(monkeypatch):
    # evaluating every shape on the whole frame must give the very same image
    from editgan.toyfaces.canvas import Canvas
    variants = []
    for seed in range(24):
        p = params_for_seed(seed)
        variants += [p, dataclasses.replace(p, glasses=True, glasses_style=seed % 3, mouth_open=1.0,
                                            smile=1.0 if seed % 2 else -0.25, pupil_size=0.92,
                                            hair_volume=0.22, brow_height=0.32, roll=8.0 - seed % 17)]
    normal = render_batch(variants, 48, 2)
    monkeypatch.setattr(Canvas, "box", lambda self, *a: (slice(0, len(self.mat)),) * 2)
    full = render_batch(variants, 48, 2)
    assert np.array_equal(normal[0], full[0]) and np.array_equal(normal[1], full[1])


def test_stratified_seeds_give_every_attribute_its_share():
    from editgan.train.stages import ANNOTATION_SEEDS, HELD_OUT_SEED_BASE, PRESET_SEEDS
    seeds = stratified_seeds(16)
    assert tuple(seeds) == ANNOTATION_SEEDS  # the demo bundle's 16 annotations
    assert seeds == sorted(set(seeds)) and max(seeds) < HELD_OUT_SEED_BASE
    assert max(seeds) < min(PRESET_SEEDS.values())  # presets learn on faces from there on
    faces = [params_for_seed(s) for s in seeds]
    assert sum(f.mouth_open > 0 for f in faces) == 5   # 30 % of 16, where seeds 0–15 hold only one
    assert sum(f.glasses for f in faces) == 5
    assert sum(f.eye_open == 0 for f in faces) == 2
    assert [sum(f.hair_style == h for f in faces) for h in HAIR_STYLES] == [3, 5, 4, 4]
    other = [params_for_seed(s) for s in stratified_seeds(10, start=1000)]
    assert len(other) == 10 and sum(f.glasses for f in other) == 3 and sum(f.eye_open == 0 for f in other) == 1
