import json

import numpy as np
import pytest
import torch

from editgan.editing import PAPER_LR, Cancelled, EditSettings, edit_objective, render, segmentation_edit

from editgan.regions import class_region, edit_region, leak, region_radius
from editgan.imageio import to_uint8
from editgan.presets import (Preset, PresetError, apply_vector, compose, delete_preset, learn_vector, list_presets,
                             load_preset, read_metadata, save_preset, set_default_strength)
from tests.test_editing import NUM_CLASSES, tiny_models


def _preset(name="smile", shape=(8, 32), seed=0):
    delta = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return Preset(name, delta, ["lips", "skin"], default_strength=0.8, source="test")


def test_round_trip(tmp_path):
    p = _preset()
    save_preset(tmp_path, p)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["smile.json", "smile.npy"]
    assert np.load(tmp_path / "smile.npy", allow_pickle=False).dtype == np.float32
    meta = json.loads((tmp_path / "smile.json").read_text())
    assert meta == {"name": "smile", "classes": ["lips", "skin"], "default_strength": 0.8,
                    "created": p.created, "source": "test"}
    q = load_preset(tmp_path, "smile", shape=(8, 32))
    assert np.array_equal(q.delta, p.delta) and q.metadata() == p.metadata()
    assert list_presets(tmp_path) == [read_metadata(tmp_path, "smile")]
    delete_preset(tmp_path, "smile")
    assert list_presets(tmp_path) == [] and not any(tmp_path.iterdir())


def test_set_default_strength_rewrites_only_the_metadata(tmp_path):
    p = _preset()
    save_preset(tmp_path, p)
    vector_file = (tmp_path / "smile.npy").stat()
    set_default_strength(tmp_path, "smile", 1.5)
    assert read_metadata(tmp_path, "smile") == {**p.metadata(), "default_strength": 1.5}
    assert (tmp_path / "smile.npy").stat().st_ino == vector_file.st_ino  # not replaced: a rewrite is a new file
    with pytest.raises(PresetError, match="finite"):
        set_default_strength(tmp_path, "smile", float("nan"))
    with pytest.raises(PresetError, match="unknown preset"):
        set_default_strength(tmp_path, "missing", 1.0)
    with pytest.raises(PresetError, match="invalid preset name"):
        set_default_strength(tmp_path, "../smile", 1.0)
    assert read_metadata(tmp_path, "smile")["default_strength"] == 1.5
    assert sorted(f.name for f in tmp_path.iterdir()) == ["smile.json", "smile.npy"]


@pytest.mark.parametrize("name", ["../smile", "a/b", "", "Smile", "smile.json", "..", "/etc/passwd", None])
def test_refuses_unsanitized_names(tmp_path, name):
    save_preset(tmp_path, _preset())
    with pytest.raises(PresetError):
        load_preset(tmp_path, name)
    with pytest.raises(PresetError):
        delete_preset(tmp_path, name)
    with pytest.raises(PresetError):
        save_preset(tmp_path, _preset(name=name))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["smile.json", "smile.npy"]


def test_malformed_files(tmp_path):
    save_preset(tmp_path, _preset("good"))
    with pytest.raises(PresetError, match="expected float32"):
        load_preset(tmp_path, "good", shape=(9, 32))
    with pytest.raises(PresetError, match="unknown preset"):
        load_preset(tmp_path, "missing")
    (tmp_path / "bad.json").write_text("{not json")
    np.save(tmp_path / "bad.npy", np.zeros((8, 32), np.float32))
    (tmp_path / "obj.json").write_text(json.dumps({"name": "obj", "classes": [], "default_strength": 1}))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert [m["name"] for m in list_presets(tmp_path)] == ["good", "obj"]
    with pytest.raises(PresetError, match="not valid JSON"):
        load_preset(tmp_path, "bad")
    with pytest.raises(PresetError, match="plain .npy"):
        load_preset(tmp_path, "obj")
    with pytest.raises(PresetError, match="finite"):
        save_preset(tmp_path, Preset("nan", np.full((2, 2), np.nan, np.float32), []))


def test_compose_is_weighted_sum():
    a, b = _preset(seed=1).delta, _preset(seed=2).delta
    total = compose([(a, 0.5), (torch.from_numpy(b), -2.0)])
    assert total.shape == (1, 8, 32)
    assert torch.allclose(total[0], torch.from_numpy(0.5 * a - 2.0 * b), atol=1e-6)


@pytest.fixture(scope="module")
def models():
    g, seg, perceptual = tiny_models()
    ws = g.mean_ws() + 0.4 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(3))
    img, labels = render(g, seg, ws)
    delta = 0.6 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(4))
    return g, seg, perceptual, ws, to_uint8(img[0]), labels, delta


def test_apply_without_refinement(models):
    g, seg, perceptual, ws, recon, labels, delta = models
    out = apply_vector(g, seg, perceptual, ws, recon, labels, delta, [3])
    img, after = render(g, seg, ws + delta)
    assert np.array_equal(out.image, to_uint8(img[0])) and np.array_equal(out.labels, after)
    assert np.array_equal(out.region, class_region(labels, after, [3], region_radius(32)))
    assert np.array_equal(out.composite, out.region)  # no painting: all of Q is blended
    assert out.metrics["iou"] is None and out.metrics["steps"] == 0 and torch.equal(out.delta, delta)
    with pytest.raises(Cancelled):
        apply_vector(g, seg, perceptual, ws, recon, labels, delta, [3], should_cancel=lambda: True)


def test_refinement_preserves_outside(models):
    g, seg, perceptual, ws, recon, labels, delta = models
    plain = apply_vector(g, seg, perceptual, ws, recon, labels, delta, [3])
    assert 0.1 < plain.region.mean() < 0.9, plain.region.mean()
    calls = []
    refined = apply_vector(g, seg, perceptual, ws, recon, labels, delta, [3], refine_steps=10,
                           progress=lambda s, t, p=None: calls.append(s))
    assert calls == list(range(1, 11)) and refined.metrics["steps"] == 10 and refined.metrics["iou"] is not None
    assert np.array_equal(refined.region, plain.region)  # Q comes from the unrefined vector
    assert np.array_equal(refined.composite, plain.region)  # refined or not, a preset blends all of Q

    def outside_mse(image):
        d = (image.astype(float) - recon.astype(float)) ** 2
        return d[~plain.region].mean()

    assert outside_mse(refined.image) < 0.7 * outside_mse(plain.image)
    assert leak(refined.image, recon, plain.region) <= plain.metrics["leak"]


def test_refinement_has_no_painting_to_colour(models):
    """The class-colour term and the change share weigh what a user painted; a vector's own labels are not a painting."""
    g, seg, perceptual, ws, recon, labels, delta = models
    runs = [apply_vector(g, seg, perceptual, ws, recon, labels, delta, [3], refine_steps=4, settings=settings)
            for settings in (EditSettings(), EditSettings(lambda_colour=50.0), EditSettings(ce_change_share=0.9))]
    assert torch.equal(runs[0].delta, runs[1].delta) and torch.equal(runs[0].delta, runs[2].delta)
    assert not torch.equal(runs[0].delta, delta)


def test_refinement_steps_at_most_at_the_papers_lr(models):
    """A bundle's larger edit lr does not reach refinement, which polishes what the vector draws."""
    g, seg, perceptual, ws, recon, labels, delta = models
    runs = [apply_vector(g, seg, perceptual, ws, recon, labels, delta, [3], refine_steps=4,
                         settings=EditSettings(lr=lr)) for lr in (PAPER_LR, 0.06, 0.005)]
    assert torch.equal(runs[0].delta, runs[1].delta) and not torch.equal(runs[0].delta, runs[2].delta)

def _face(g, seg, seed, block):
    """A face of the model and its labels with ``block`` (y0, y1, x0, x1) repainted to another class."""
    ws = g.mean_ws() + 0.5 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(seed))
    _, before = render(g, seg, ws)
    target = before.copy()
    y0, y1, x0, x1 = block
    target[y0:y1, x0:x1] = (int(np.bincount(before[y0:y1, x0:x1].ravel()).argmax()) + 1) % NUM_CLASSES
    return ws, before, target


def _three_faces(g, seg, first_seed):
    """Three faces with a block each repainted elsewhere: ws [3, …], before, target, their edit regions."""
    faces = [_face(g, seg, first_seed + i, block)
             for i, block in enumerate([(8, 16, 10, 20), (12, 20, 6, 18), (18, 26, 12, 24)])]
    ws = torch.cat([f[0] for f in faces])
    before, target = np.stack([f[1] for f in faces]), np.stack([f[2] for f in faces])
    return ws, before, target, np.stack([edit_region(b, t, region_radius(32)) for b, t in zip(before, target)])


def test_a_vector_learned_on_one_face_is_that_faces_segmentation_edit(models):
    g, seg, perceptual = models[:3]
    ws, before, target = _face(g, seg, 11, (8, 16, 10, 20))
    recon = to_uint8(render(g, None, ws)[0][0])
    edit = segmentation_edit(g, seg, perceptual, ws, recon, before, target, steps=8)
    learned = learn_vector(g, seg, perceptual, ws, before[None], target[None], steps=8)
    assert torch.allclose(learned.delta, edit.delta, atol=1e-6) and learned.classes == edit.classes
    assert learned.metrics["iou"] == pytest.approx(edit.metrics["iou"])
    assert learned.metrics["leak"] == pytest.approx(edit.metrics["leak"])
    assert learned.metrics["faces"] == 1 and learned.metrics["best_step"] == edit.metrics["best_step"]


def test_a_shared_vector_lowers_every_faces_loss(models):
    g, seg, perceptual = models[:3]
    ws, before, target, regions = _three_faces(g, seg, first_seed=21)
    paper = EditSettings(keep_q=0.0)  # the random model's classes cover its picture: all of Q free (test_editing)
    alone = [edit_objective(g, seg, perceptual, ws[i:i + 1], before[i:i + 1], regions[i:i + 1], target[i:i + 1], paper)
             for i in range(3)]
    joint = edit_objective(g, seg, perceptual, ws, before, regions, target, paper)
    probe = 0.3 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():  # one batched evaluation = the mean of the faces' own losses
        assert float(joint(probe)[0]) == pytest.approx(np.mean([float(o(probe)[0]) for o in alone]), rel=1e-5)

    calls = []
    learned = learn_vector(g, seg, perceptual, ws, before, target, steps=15, settings=paper,
                           progress=lambda s, t, p=None: calls.append(s))
    assert calls == list(range(1, 16)) and learned.delta.shape == (1, g.num_ws, g.w_dim)
    with torch.no_grad():
        for objective in alone:
            assert float(objective(learned.delta)[0]) < float(objective(torch.zeros_like(learned.delta))[0])
    touched = set()
    for b, t in zip(before, target):
        touched |= set(np.unique(b[b != t]).tolist()) | set(np.unique(t[b != t]).tolist())
    assert learned.classes == sorted(touched)
    assert learned.metrics["faces"] == 3 and len(learned.metrics["per_face"]) == 3
    assert 0 <= learned.metrics["leak"] <= 1 and 0 <= learned.metrics["iou"] <= 1
    with pytest.raises(Cancelled):
        learn_vector(g, seg, perceptual, ws, before, target, steps=5, should_cancel=lambda: True)


def test_faces_in_chunks_give_the_same_loss_gradient_and_vector(models):
    """Learning on K faces one chunk at a time (memory of a chunk) must not change the result."""
    g, seg, perceptual = models[:3]
    ws, before, target, regions = _three_faces(g, seg, first_seed=31)
    probe = 0.3 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(6))
    grads, losses = [], []
    for chunk in (None, 2, 1):
        objective = edit_objective(g, seg, perceptual, ws, before, regions, target, EditSettings(keep_q=0.3),
                                   faces_per_batch=chunk)
        delta = probe.clone().requires_grad_(True)
        loss, img = objective(delta)
        if loss.requires_grad:  # the batched path leaves the backward to the caller
            loss.backward()
        else:
            assert chunk is not None
        grads.append(delta.grad.clone())
        losses.append(float(loss.detach()))
        assert img.shape[1:] == (3, 32, 32)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5) and losses[2] == pytest.approx(losses[0], rel=1e-5)
    assert float(grads[0].abs().max()) > 0
    for grad in grads[1:]:
        assert torch.allclose(grad, grads[0], rtol=1e-4, atol=1e-5)  # float32 sums in another order
    # Adam moves every coordinate by about ±lr whatever its gradient's size, so float noise (its sign
    # depends on the batch size) in near-zero gradients moves coordinates apart. At δ = 0 the perceptual
    # term's gradient is all noise (x = y): the trajectories are compared with the MSE alone (exactly 0
    # there), to a tolerance of a few % of the 6 steps' |δ| (≤ 6 · lr = 0.12)
    mse_only = EditSettings(lambda_lpips=0.0)
    batched = learn_vector(g, seg, perceptual, ws, before, target, steps=6, faces_per_batch=3, settings=mse_only)
    chunked = learn_vector(g, seg, perceptual, ws, before, target, steps=6, faces_per_batch=1, settings=mse_only)
    assert torch.allclose(chunked.delta, batched.delta, atol=5e-3) and batched.delta.abs().max() > 0.05
    assert chunked.metrics["best_step"] == batched.metrics["best_step"]
    calls = []  # cancelling is noticed between chunks, not only between steps
    with pytest.raises(Cancelled):
        learn_vector(g, seg, perceptual, ws, before, target, steps=6, faces_per_batch=1,
                     should_cancel=lambda: calls.append(1) or len(calls) >= 3)
    assert len(calls) == 3  # before step 0, before its 2nd chunk, before its 3rd
