import math

import numpy as np
import pytest
import torch
from PIL import Image

from editgan.bundle import Bundle, ClassInfo
from editgan.editing import render_probabilities
from editgan.regions import edit_region, region_radius
from editgan import editor as editor_module
from editgan.editor import Cancelled, Editor, EditorError, EditResult, PresetInfo, Session
from editgan.generator import Generator
from editgan.geometry import feather, fit, resize_matrix, to_source
from editgan.imageio import to_uint8
from editgan.photo_labels import PhotoSnapSettings, snap_to_photo, snap_to_source
from tests.conftest import tiny_config
from tests.test_editing import NUM_CLASSES, tiny_models

CLASSES = [ClassInfo(n, c) for n, c in
           zip(["background", "skin", "lips", "eye"], [(0, 0, 0), (200, 150, 120), (200, 0, 0), (0, 0, 200)])]
assert len(CLASSES) == NUM_CLASSES


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    g, seg, _ = tiny_models()
    return Bundle(name="tiny", generator=g, classes=CLASSES, components={"segmenter": seg}).save(
        tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def editor(bundle_path):
    return Editor(Bundle.load(bundle_path), perceptual="fallback")


@pytest.fixture(scope="module")
def source(editor):
    """A 48×40 (non-square) render of the model itself, so the embedding is easy."""
    g = editor.generator
    with torch.no_grad():
        img, _ = g.synthesis(g.mean_ws() + 0.4 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(7)))
    return np.asarray(Image.fromarray(to_uint8(img[0])).resize((40, 48), Image.BICUBIC))


@pytest.fixture(scope="module")
def session(editor, source):
    return editor.embed(source, steps=8)


def _painted(session):
    """The session's labels with a block repainted to a class not dominant there."""
    labels = session.source_labels.copy()
    block = labels[14:26, 12:28]
    block[...] = (int(np.bincount(block.ravel()).argmax()) + 1) % NUM_CLASSES
    return labels


def test_info(editor):
    info = editor.info()
    assert info["name"] == "tiny" and info["resolution"] == 32 and info["num_ws"] == editor.generator.num_ws
    assert info["classes"][2] == {"name": "lips", "color": [200, 0, 0]}
    assert info["perceptual"]["kind"] == "ms-ssim-fallback" and info["device"] == "cpu"
    assert info["presets"] == [] and info["segmenter"] is True and info["encoder"] is False


def test_embed_session(session, source):
    assert isinstance(session, Session)
    assert np.array_equal(session.source, source) and session.ws.shape[0] == 1
    assert session.reconstruction.shape == (32, 32, 3) and session.labels.shape == (32, 32)
    assert session.source_labels.shape == (48, 40) and session.source_labels.dtype == np.uint8
    assert session.geometry.side == 48 and session.geometry.left == 4 and session.psnr > 10
    assert session.last_result is None


@pytest.mark.parametrize("image", [np.zeros((32, 32, 3), np.float32), np.zeros((32, 32), np.uint8),
                                   np.zeros((7, 32, 3), np.uint8), np.zeros((32, 32, 4), np.uint8), "img"])
def test_embed_rejects_bad_images(editor, image):
    with pytest.raises(EditorError) as e:
        editor.embed(image, steps=1)
    assert e.value.code == "invalid_image"


def test_edit_validation(editor, session):
    labels = _painted(session)
    cases = [
        (dict(labels=labels[:-1]), "invalid_argument"),
        (dict(labels=labels.astype(np.int64)), "invalid_argument"),
        (dict(labels=np.full_like(labels, NUM_CLASSES)), "unknown_class"),
        (dict(labels=session.source_labels.copy()), "no_change"),
        (dict(labels=labels, steps=0), "invalid_argument"),
        (dict(labels=labels, steps=True), "invalid_argument"),
        (dict(labels=labels, lambda_ce=float("nan")), "invalid_argument"),
        (dict(labels=labels, bogus=1.0), "invalid_argument"),
        (dict(labels=labels, part_colours={"nope": [1, 2, 3]}, lambda_colour=1.0), "unknown_class"),
        (dict(labels=labels, part_colours={"lips": [1, 2]}, lambda_colour=1.0), "invalid_argument"),
        (dict(labels=labels, part_colours={"lips": [1, 2, 256]}, lambda_colour=1.0), "invalid_argument"),
        (dict(labels=labels, part_colours={"lips": [1, 2, True]}, lambda_colour=1.0), "invalid_argument"),
        (dict(labels=labels, part_colours=[("lips", [1, 2, 3])], lambda_colour=1.0), "invalid_argument"),
        (dict(labels=labels, part_colours={"lips": [1, 2, 3]}), "invalid_argument"),  # the colour term is off
    ]
    for kwargs, code in cases:
        with pytest.raises(EditorError) as e:
            editor.edit(session, **kwargs)
        assert e.value.code == code, kwargs
    tiny = session.source_labels.copy()
    tiny[20, 20] = (tiny[20, 20] + 1) % NUM_CLASSES  # one source pixel < half a model pixel
    with pytest.raises(EditorError) as e:
        editor.edit(session, tiny)
    assert e.value.code == "no_change" and "too small" in e.value.message
    with pytest.raises(EditorError) as e:  # the painting repeats the segmentation: say what to do
        editor.edit(session, session.source_labels.copy())
    assert "another class's colour" in e.value.message
    assert session.last_result is None


def test_edit_cancel_leaves_session_untouched(editor, session):
    ws = session.ws.clone()
    with pytest.raises(Cancelled):
        editor.edit(session, _painted(session), steps=5, should_cancel=lambda: True)
    assert torch.equal(session.ws, ws) and session.last_result is None


def test_source_labels_follow_the_photo_and_edits_read_the_model_labels(bundle_path, source):
    bundle = Bundle.load(bundle_path)
    snapped = Editor(bundle, perceptual="fallback").embed(source, steps=3)
    plain = Editor(bundle, perceptual="fallback", photo_snap=None).embed(source, steps=3)
    assert torch.equal(snapped.ws, plain.ws) and np.array_equal(snapped.labels, plain.labels)
    assert np.array_equal(plain.source_labels, to_source(plain.labels, plain.geometry))
    # the snapped labels: the segmenter's probabilities on the reconstruction, snapped to the photo
    # on its own 48² grid; capped at the model's 32², snapped to the fitted photo and upsampled
    g, seg = bundle.generator, bundle.segmenter
    _, probs = render_probabilities(g, seg, snapped.ws)
    assert np.array_equal(snapped.source_labels, snap_to_source(probs, source, PhotoSnapSettings()))
    assert not np.array_equal(snapped.source_labels, plain.source_labels)
    capped = Editor(bundle, perceptual="fallback", photo_snap=PhotoSnapSettings(max_side=32)).embed(source, steps=3)
    model_photo = torch.from_numpy(fit(source, g.resolution)[0]).permute(2, 0, 1)[None].float() / 255
    expected = snap_to_photo(probs, model_photo, PhotoSnapSettings())[0].argmax(0).numpy().astype(np.uint8)
    assert np.array_equal(capped.source_labels, to_source(expected, capped.geometry))
    assert not np.array_equal(capped.source_labels, snapped.source_labels)
    # an edit's target is the model's reading with only the painted block changed (rows 14:26, cols
    # 12:28 of the 48×40 source: model rows 9–17, columns 10–21)
    target = Editor(bundle, perceptual="fallback").model_target(snapped, _painted(snapped))
    rows, cols = np.nonzero(target != snapped.labels)
    assert rows.size and rows.min() >= 9 and rows.max() <= 17 and cols.min() >= 10 and cols.max() <= 21


def test_edit_and_presets(editor, session, source, bundle_path):
    steps = []
    painted = _painted(session)
    result = editor.edit(session, painted, steps=6, progress=lambda s, t, p=None: steps.append((s, t)))
    assert np.array_equal(session.last_painted, painted) and session.last_painted is not painted
    assert steps == [(s, 6) for s in range(1, 7)]
    assert isinstance(result, EditResult) and session.last_result is result
    assert result.image.shape == source.shape and result.image.dtype == np.uint8
    assert result.region.shape == (48, 40) and result.region.dtype == bool
    assert result.model_image.shape == (32, 32, 3) and result.labels.shape == (32, 32)
    assert result.delta.shape == (editor.generator.num_ws, editor.generator.w_dim) and result.delta.dtype == np.float32
    assert set(result.metrics) >= {"iou", "leak", "steps", "best_step", "seconds"} and result.classes
    alpha = feather(result.region, max(1, round(48 / 32)))
    assert np.array_equal(result.image[alpha == 0], source[alpha == 0])
    # blended only where the painting changed the labels, a part of Q (which also holds the rest of the
    # touched classes)
    target = editor.model_target(session, painted)
    q = edit_region(session.labels, target, region_radius(32))
    assert 0 < (target != session.labels).sum() < q.sum()
    assert np.array_equal(result.region, to_source(target != session.labels, session.geometry))
    # where the user repainted a class the source shows the old part: where the edit redrew it, the
    # generator's drawing itself, resized to the source, replaces it (elsewhere the source gets the
    # result's difference)
    geo = session.geometry
    rows = resize_matrix(32, geo.side)[geo.top:geo.top + 48].numpy()
    cols = resize_matrix(32, geo.side)[geo.left:geo.left + 40].numpy()
    drawn_model = np.einsum("yh,hwc,xw->yxc", rows, result.model_image.astype(np.float64), cols)
    moved = np.einsum("yh,hwc,xw->yxc", rows, result.model_image - session.reconstruction.astype(np.float64), cols)
    redrawn = result.region & (painted != session.source_labels) & (np.abs(moved).max(-1) >= 8)
    assert redrawn.any()
    assert np.abs(result.image[redrawn].astype(int) - np.clip(drawn_model[redrawn], 0, 255)).max() <= 1
    x, y, w, h = result.box
    diff = (result.image != source).any(-1)
    assert diff.any() and not diff[:y].any() and not diff[y + h:].any() and diff[y, :].any()

    # save → list → apply (composition) → delete
    info = editor.save_preset("../Big Edit!", result, default_strength=0.5)
    assert isinstance(info, PresetInfo) and info.name == "big_edit"
    assert (bundle_path / "presets" / "big_edit.npy").is_file() and not (bundle_path.parent / "big_edit.npy").exists()
    assert [p.name for p in editor.list_presets()] == ["big_edit"]
    assert info.classes == [CLASSES[c].name for c in result.classes]
    assert editor.info()["presets"] == [info.to_dict()]

    # the same painting again starts from the stored vector, whose loss beats the embedding's
    assert result.metrics["best_step"] > 0 and result.metrics["start"] is None
    again = editor.edit(session, painted, steps=1)
    assert again.metrics["start"]["preset"] == "big_edit" and again.metrics["start"]["strength"] in (0.25, 0.5, 0.75)
    assert editor.edit(session, painted, steps=1, from_presets=False).metrics["start"] is None
    with pytest.raises(EditorError) as e:
        editor.edit(session, painted, steps=1, from_presets="yes")
    assert e.value.code == "invalid_argument"

    applied = editor.apply_presets(session, [("big_edit", 1.0)])
    assert session.last_painted is None  # the last result is no longer a painted edit
    assert np.allclose(applied.delta, result.delta, atol=1e-6) and applied.metrics["iou"] is None
    twice = editor.apply_presets(session, [("big_edit", 0.5), ("big_edit", 1.5)])
    assert np.allclose(twice.delta, 2 * result.delta, atol=1e-5)
    refined = editor.apply_presets(session, [("big_edit", 1.0)], refine_steps=2)
    assert refined.metrics["steps"] == 2 and session.last_result is refined
    for items, code in [([("nope", 1.0)], "unknown_preset"), ([("../big_edit", 1.0)], "unknown_preset"),
                        ([("big_edit", float("inf"))], "invalid_argument"), ([], "invalid_argument"),
                        ([("big_edit",)], "invalid_argument")]:
        with pytest.raises(EditorError) as e:
            editor.apply_presets(session, items)
        assert e.value.code == code, items
    with pytest.raises(EditorError) as e:
        editor.apply_presets(session, [("big_edit", 1.0)], refine_steps=-1)
    assert e.value.code == "invalid_argument"

    editor.delete_preset("big_edit")
    assert editor.list_presets() == []
    with pytest.raises(EditorError) as e:
        editor.delete_preset("big_edit")
    assert e.value.code == "unknown_preset"
    with pytest.raises(EditorError) as e:
        editor.save_preset("///", result)
    assert e.value.code == "invalid_argument"


def test_learn_preset_from_several_faces(editor, session, source):
    g = editor.generator
    with torch.no_grad():
        img, _ = g.synthesis(g.mean_ws() + 0.4 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(8)))
    other = editor.embed(to_uint8(img[0]), steps=4)  # 32×32, another size than the 48×40 source
    painted = _painted(other)
    calls = []
    info = editor.learn_preset("Shared Edit", [(session, _painted(session)), (other, painted)], steps=6,
                               default_strength=0.7, progress=lambda s, t, p=None: calls.append(s))
    assert calls == list(range(1, 7)) and info.name == "shared_edit" and info.default_strength == 0.7
    assert "shared by 2 faces" in info.source and info.classes
    applied = editor.apply_presets(other, [("shared_edit", 1.0)])
    assert applied.delta.shape == (g.num_ws, g.w_dim) and np.abs(applied.delta).max() > 0
    editor.delete_preset("shared_edit")

    ran = []
    for name, edits, code in [("///", [(other, painted)], "invalid_argument"),  # refused before any step runs
                              ("ok", [], "invalid_argument"), ("ok", [(None, painted)], "invalid_argument"),
                              ("ok", [(other, painted), (other, other.source_labels.copy())], "no_change"),
                              ("ok", [(session, painted)], "invalid_argument"),  # a 32×32 painting on 48×40
                              ("ok", [(other, painted, {"lips": (1, 2, 3)})], "invalid_argument"),  # term off
                              ("ok", [(other, painted, {"nope": (1, 2, 3)})], "unknown_class"),
                              ("ok", [(other, painted, None, None)], "invalid_argument")]:
        with pytest.raises(EditorError) as e:
            editor.learn_preset(name, edits, steps=3, progress=lambda s, t, p=None: ran.append(s))
        assert e.value.code == code, (name, code)
    assert ran == [] and editor.list_presets() == []


def test_a_preset_learned_from_several_faces_keeps_each_ones_part_colours(bundle_path, source, monkeypatch):
    b = Bundle.load(bundle_path)
    b.edit_defaults = {"lambda_colour": 2.0}
    ed = Editor(b, perceptual="fallback")
    seen = []
    real = editor_module.presets_lib.learn_vector
    monkeypatch.setattr(editor_module.presets_lib, "learn_vector",
                        lambda *a, **kw: seen.append(kw["part_colours"]) or real(*a, **kw))
    first, second = ed.embed(source, steps=4), ed.embed(source[:, ::-1].copy(), steps=4)
    ed.edit(first, _painted(first), steps=2, part_colours={"lips": (250, 0, 0)})
    ed.edit(second, _painted(second), steps=2)
    assert first.last_part_colours == {"lips": (250, 0, 0)} and second.last_part_colours == {}
    ed.learn_preset("two", [(s, s.last_painted, s.last_part_colours) for s in (first, second)], steps=2)
    assert [set(c.chosen) for c in seen[0]] == [{2}, set()]
    assert torch.allclose(seen[0][0].chosen[2], torch.tensor([250 / 127.5 - 1, -1.0, -1.0]))
    ed.apply_presets(first, [("two", 1.0)])
    assert first.last_painted is None and first.last_part_colours is None
    ed.delete_preset("two")


def test_the_bundles_edit_defaults_apply_and_overrides_win(bundle_path, source):
    b = Bundle.load(bundle_path)
    b.edit_defaults = {"keep_q": 1.0}
    ed = Editor(b, perceptual="fallback")
    assert ed.edit_settings.keep_q == 1.0 and ed.edit_settings.lambda_rgb == 15.0
    s = ed.embed(source, steps=8)
    kept = ed.edit(s, _painted(s), steps=6)          # this random model cannot change one part alone
    assert kept.box[2:] == (0, 0) and kept.metrics["best_step"] == 0
    free = ed.edit(s, _painted(s), steps=6, keep_q=0.0)
    assert free.box[2] > 0 and free.metrics["best_step"] > 0


def test_painted_parts_follow_the_users_colour(editor, session):
    labels = _painted(session)
    painted = labels != session.source_labels
    name = editor.class_names[int(labels[painted][0])]
    brightness = {}
    for rgb in ((0, 0, 0), (255, 255, 255)):
        result = editor.edit(session, labels, steps=10, from_presets=False, keep_q=0.0, lambda_colour=50.0,
                             part_colours={name: rgb})
        brightness[rgb] = float(result.image[painted].mean())
    assert brightness[(255, 255, 255)] > brightness[(0, 0, 0)] + 10, brightness


def test_the_bundles_class_appearance_guides_parts_the_face_does_not_show(bundle_path, source, monkeypatch):
    b = Bundle.load(bundle_path)
    b.classes = [b.classes[0], ClassInfo("skin", (200, 150, 120), appearance=(255, 0, 127)), *b.classes[2:]]
    ed = Editor(b, perceptual="fallback")
    assert list(ed.usual_colours) == [1] and torch.allclose(ed.usual_colours[1], torch.tensor([1.0, -1.0, -0.00392]),
                                                            atol=1e-4)
    seen = []
    real = editor_module.segmentation_edit
    monkeypatch.setattr(editor_module, "segmentation_edit",
                        lambda *a, **kw: seen.append(kw["part_colours"]) or real(*a, **kw))
    s = ed.embed(source, steps=4)
    ed.edit(s, _painted(s), steps=2, lambda_colour=1.0, part_colours={"eye": (0, 0, 255)})
    assert set(seen[0].usual) == {1} and set(seen[0].chosen) == {3}
    assert torch.equal(seen[0].chosen[3], torch.tensor([-1.0, -1.0, 1.0]))


def test_without_segmenter(bundle_path, source):
    b = Bundle.load(bundle_path)
    b.components.pop("segmenter")
    ed = Editor(b, perceptual="fallback")
    s = ed.embed(source, steps=1)
    assert s.labels is None and s.source_labels is None
    with pytest.raises(EditorError) as e:
        ed.edit(s, np.zeros((48, 40), np.uint8))
    assert e.value.code == "no_segmenter"
    with pytest.raises(EditorError) as e:
        ed.apply_presets(s, [("x", 1.0)])
    assert e.value.code == "no_segmenter"


# ---- benchmark package (tiny versions only; benchmarks are never timed tests) ---------------------
@pytest.fixture(scope="module")
def toy_editor(tmp_path_factory):
    from editgan.models import random_bundle
    from editgan.segmenter import Segmenter
    b = random_bundle()
    b.components["segmenter"] = Segmenter.for_generator(b.generator, len(b.classes), members=2, hidden=8, hidden2=8)
    b.save(tmp_path_factory.mktemp("toy") / "toy")
    return Editor(Bundle.load(b.path), perceptual="fallback")


def test_bench_tasks_and_report(toy_editor, tmp_path):
    import json
    from editgan.bench import run_tasks, run_timings, to_markdown, write_results
    session = toy_editor.embed(np.full((32, 32, 3), 128, np.uint8), steps=1)
    labels = session.source_labels.copy()
    labels[8:20, 8:20] = (labels[8:20, 8:20] + 1) % len(toy_editor.class_names)
    toy_editor.save_preset("smile", toy_editor.edit(session, labels, steps=1))
    calls = []
    tasks = run_tasks(toy_editor, tasks=["smile", "close_eyes"], seeds=2, embed_steps=1, edit_steps=2,
                      progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4)
    summary = tasks["summary"]
    assert set(summary["smile"]) == {"noop", "edit", "edit-colours", "edit-cold", "paper", "preset", "preset+10",
                                     "preset+30"}
    assert set(summary["close_eyes"]) == {"noop", "edit", "edit-colours", "edit-cold", "paper"}  # no such preset
    # this bundle's edits have no class-colour term, so a user's colours cannot be taken: skipped
    assert summary["smile"]["edit-colours"]["n"] == 0 and summary["smile"]["edit-colours"]["skipped"] == 2
    noop = summary["smile"]["noop"]
    assert noop["gain"] == 0 and noop["leak"] == 0 and noop["psnr_outside"] == 100.0 and noop["n"] == 2
    edit = summary["smile"]["edit"]
    assert edit["n"] + edit["skipped"] == 2 and len(tasks["samples"]) == 2 * 8 + 2 * 5
    for row in tasks["samples"]:  # the painting is scored once per face, every edit counts its outside of Q
        assert 0 <= row["painting_iou"] <= 1
        assert row["mode"] == "noop" or "error" in row or 0 <= row["outside_q"] <= 32 * 32
        assert ("iou_vs_painting" in row) == (row["mode"] in ("edit", "edit-cold", "paper") and "error" not in row)
    timings = run_timings(toy_editor, repeats=1, embed_steps=1, edit_steps=1, refine_steps=1)
    assert {"embed", "edit", "preset", "refine"} <= set(timings) and timings["config"]["preset"] == "smile"
    assert timings["edit"]["median"] > 0 and len(timings["embed"]["runs"]) == 1
    results = {"header": {"bundle": "toy"}, "tasks": tasks, "timings": timings,
               "large": [{"case": "concat", "resolution": 512, "error": "MemoryError: x"}]}
    write_results(results, tmp_path / "b.json", tmp_path / "b.md")
    assert json.loads((tmp_path / "b.json").read_text())["tasks"]["config"]["seeds"] == 2
    md = (tmp_path / "b.md").read_text()
    assert md == to_markdown(results) and "| smile | preset+10 |" in md and "failed: MemoryError" in md
    assert "started from preset (times)" in md and "| mode | edit gain (dB) | target IoU | IoU with the painting |" in md


def test_bench_pools_the_leak_over_pixels_and_means_over_tasks():
    from editgan.bench.report import tasks_means_table
    from editgan.bench.tasks import summarize
    row = dict(mode="edit", gain=1.0, iou=0.5, psnr_outside=100.0, seconds=1.0, painting_iou=0.9)
    samples = [dict(row, task="hair", seed=0, leak=0.5, outside_q=20),     # 10 of 20 pixels
               dict(row, task="hair", seed=1, leak=0.0, outside_q=980),
               dict(row, task="smile", seed=0, leak=0.01, outside_q=1000, gain=3.0, iou=0.7, painting_iou=0.7)]
    summary = summarize(samples)
    hair = summary["hair"]["edit"]
    assert hair["leak"] == pytest.approx(0.25) and hair["leak_pooled"] == pytest.approx(10 / 1000)
    assert hair["outside_px"] == 1000 and hair["painting_iou"] == pytest.approx(0.9)
    (line,) = [l for l in tasks_means_table({"summary": summary}) if l.startswith("| edit |")]
    # gain and IoU: mean of the tasks' means; leak in %: mean of the tasks' means, and 20 of 2000 pixels pooled
    assert line == "| edit | 2.00 | 0.60 | – | 0.80 | 13.00 | 1.00 | 2 |"


def test_bench_user_picks_the_targets_colours(toy_editor):
    from editgan.bench import run_tasks
    from editgan.bench.tasks import picked_colours
    session = toy_editor.embed(np.full((32, 32, 3), 128, np.uint8), steps=1)
    classes = len(toy_editor.class_names)
    user = session.source_labels.copy()
    user[4:12, 4:20] = (user[4:12, 4:20] + 1) % classes           # every pixel of the block repainted
    palette = np.array([(10 * c, 200 - 7 * c, 3 * c) for c in range(classes)], np.uint8)
    target = np.zeros((32, 32, 3), np.uint8)
    target[4:12, 4:20] = palette[user[4:12, 4:20]]                   # the target shows each class in its colour
    colours = picked_colours(toy_editor, session, user, target)
    painted = np.unique(user[4:12, 4:20]).tolist()
    assert colours == {toy_editor.class_names[c]: tuple(int(v) for v in palette[c]) for c in painted}
    # the bench mode hands them to the product, which takes them once its edits have the colour term
    saved = toy_editor.edit_settings
    toy_editor.edit_settings = saved.replace(lambda_colour=3.0)
    try:
        summary = run_tasks(toy_editor, tasks=["smile"], seeds=2, embed_steps=1, edit_steps=1,
                            modes=("edit", "edit-colours"))["summary"]["smile"]
    finally:
        toy_editor.edit_settings = saved
    assert summary["edit-colours"]["n"] == summary["edit"]["n"] >= 1
    assert math.isfinite(summary["edit-colours"]["gain"])


def test_bench_large_tiny():
    from editgan.bench import large
    from editgan.segmenter import Segmenter
    widths = dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=32)
    out = large.measure("projection", resolution=32, classes=4, members=2, region_px=64, steps=2, widths=widths)
    assert out["region_px"] == 64 and len(out["step_seconds"]) == 2 and out["peak_rss_gib"] > 0
    concat = large.measure("concat", resolution=32, classes=4, members=2, region_px=64, steps=2, widths=widths)
    assert concat["case"] == "concat" and concat["seconds_per_step"] > 0
    shared = large.measure("projection", resolution=32, classes=4, members=2, region_px=64, steps=2, widths=widths,
                           faces=3, faces_per_batch=1)  # a preset learned on 3 faces, one per batch
    assert (shared["faces"], shared["faces_per_batch"], len(shared["step_seconds"])) == (3, 1, 2)
    # the concat stand-in computes the same logits as the projection segmenter
    g = Generator(tiny_config(32))
    seg = Segmenter.for_generator(g, 4, members=2, hidden=8, hidden2=4)
    _, feats = g.synthesis(g.mean_ws())
    with torch.no_grad():
        assert torch.allclose(large.ConcatSegmenter(seg)(feats, (3, 9, 4, 20)), seg(feats, (3, 9, 4, 20)), atol=1e-4)
    assert large.concat_gib(512) > 5  # the official concat tensor at 512² is several GiB


def test_bench_large_rows_carry_the_official_anchor(monkeypatch):
    """A resolution with an anchor runs at the anchor's class count and is reported against it."""
    from editgan.bench import large
    from editgan.bench.report import large_table
    monkeypatch.setitem(large.ANCHORS, 32, large.Anchor(classes=3, seconds=40.0, gib=80.0))
    rows = large.run_large(runs=(("projection", True),), resolutions=(32, 64), steps=1, members=2, region_px=64)
    anchored, plain = rows
    assert "error" not in anchored and anchored["classes"] == 3 and anchored["anchor_seconds"] == 40.0
    assert anchored["retains_freed_memory"] is True  # projection runs as the Editor does
    assert "anchor_seconds" not in plain and plain["classes"] == 32
    table = "\n".join(large_table(rows))
    faster, smaller = 40.0 / anchored["seconds_per_step"], 80.0 / anchored["peak_rss_gib"]
    assert f"| 40 s, 80 GiB | {faster:.1f}× / {smaller:.1f}× |" in table and "| – | – |" in table


def test_an_editor_keeps_freed_memory_for_reuse(bundle_path, monkeypatch):
    """A large edit step ran 2-2.5× slower on glibc's default allocator (docs/benchmarks.md, large)."""
    calls = []
    monkeypatch.setattr(editor_module, "retain_freed_memory", lambda: calls.append("kept") or True)
    Editor(Bundle.load(bundle_path), perceptual="fallback")
    assert calls == ["kept"]


def test_retain_freed_memory_applies_on_glibc_unless_opted_out(monkeypatch):
    import platform
    import sys
    from editgan import cpu
    monkeypatch.setenv(cpu.RETAIN_ENV, "0")
    assert cpu.retain_freed_memory() is False
    monkeypatch.setenv(cpu.RETAIN_ENV, "1")
    assert cpu.retain_freed_memory() is (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")


def test_an_editor_flushes_subnormal_floats(bundle_path):
    """Subnormal arithmetic made demo edits 10× slower on CPU; a fresh process shows the editor turns it off."""
    import subprocess
    import sys
    code = ("import torch\nfrom editgan.bundle import Bundle\nfrom editgan.editor import Editor\n"
            "tiny = torch.tensor(1e-39)\nbefore = float(tiny * 0.5)\n"
            f"Editor(Bundle.load({str(bundle_path)!r}), perceptual='fallback')\n"
            "print(before > 0, float(tiny * 0.5) == 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True"], out.stderr
