import numpy as np
import pytest
import torch

from editgan.class_colours import class_colour_reference
from editgan.editing import (Cancelled, EditObjective, EditSettings, ce_weights, optimize_latent, render,
                             segmentation_edit)
from editgan.regions import class_region, edit_region, leak, psnr, region_iou, region_radius, touched_classes
from editgan.generator import Generator
from editgan.geometry import dilate
from editgan.imageio import to_uint8
from editgan.perceptual import make_perceptual_loss
from editgan.segmenter import train_segmenter
from tests.conftest import tiny_config

NUM_CLASSES = 4


def tiny_models(resolution: int = 32, seed: int = 0):
    """A tiny random generator with images in about [-1, 1], a random segmenter and the fallback perceptual loss."""
    torch.manual_seed(seed)
    g = Generator(tiny_config(resolution)).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if "torgb.weight" in name:
                p.mul_(0.3)
        g.mapping.w_avg.copy_(g.mapping(torch.randn(256, g.z_dim)).mean(0))
    g.requires_grad_(False)
    # a segmenter that means something: brightness quartiles of a few samples
    with torch.no_grad():
        ws = g.map(torch.randn(4, g.z_dim))
        gray = g.synthesis(ws)[0].mean(1)
    labels = torch.bucketize(gray, torch.quantile(gray.flatten(), torch.tensor([0.25, 0.5, 0.75])))
    seg, _ = train_segmenter(g, list(ws.split(1)), list(labels), num_classes=NUM_CLASSES, steps=60, batch=2,
                             lr=3e-3, members=2, hidden=16, hidden2=8)
    seg.requires_grad_(False)
    perceptual, _ = make_perceptual_loss("cpu", "fallback")
    return g, seg, perceptual


# ---- region Q ---------------------------------------------------------------------------------
def test_region_radius_scales_with_resolution():
    assert region_radius(512) == 3 and region_radius(1024) == 6 and region_radius(256) == 2
    assert region_radius(64) == 1 and region_radius(32) == 1


def test_edit_region_is_changed_union_touched_classes_dilated():
    before = np.zeros((16, 16), np.uint8)
    before[2:4, 2:4] = 1          # class 1: will be extended
    before[10:12, 10:12] = 1      # another class-1 blob, untouched by the stroke but part of Q
    before[12:14, 0:3] = 2        # class 2: untouched, not in Q
    after = before.copy()
    after[2:4, 4:7] = 1           # the user paints class 1 over background (class 0 is touched too)
    assert touched_classes(before, after) == [0, 1]
    q0 = class_region(before, after, [1], radius=0)
    expected = np.zeros((16, 16), bool)
    expected[2:4, 2:7] = True
    expected[10:12, 10:12] = True
    assert np.array_equal(q0, expected)
    q1 = class_region(before, after, [1], radius=1)
    assert q1.sum() == 4 * 7 + 4 * 4 and q1[1, 1] and q1[4, 7] and not q1[5, 5]
    # a real edit touches the class painted over as well (here background: almost everything)
    q = edit_region(before, after, radius=1)
    assert q[2:4, 4:7].all() and q[0, 15] and q.sum() > 200


def test_edit_region_without_background():
    before = np.zeros((12, 12), np.uint8)
    before[4:8, 4:8] = 2
    before[5:7, 5:7] = 3
    after = before.copy()
    after[5:7, 5:8] = 3           # class 3 grows into class 2
    q = edit_region(before, after, radius=1)
    assert np.array_equal(q, class_region(before, after, [2, 3], 1))
    assert q[3:9, 3:9].all() and q.sum() == 36


# ---- metrics ----------------------------------------------------------------------------------
def test_region_iou_hand_made():
    region = np.zeros((4, 4), bool)
    region[:, :2] = True
    target = np.zeros((4, 4), np.uint8)
    target[:2, :2] = 1
    pred = np.zeros((4, 4), np.uint8)
    pred[:1, :2] = 1
    pred[:, 2:] = 1               # outside the region: ignored
    assert region_iou(pred, target, region, [1]) == pytest.approx(2 / 4)
    assert region_iou(pred, target, region, [0, 1]) == pytest.approx((4 / 6 + 2 / 4) / 2)
    assert region_iou(pred, target, region, [3]) == 1.0  # absent on both sides


def test_leak_hand_made():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 1] = 9                # outside, > 8: leaks
    b[0, 1, 0] = 8                # outside, = 8: does not
    b[3, 3] = 200                 # inside the region: ignored
    region = np.zeros((4, 4), bool)
    region[2:, 2:] = True
    assert leak(b, a, region) == pytest.approx(1 / 12)
    assert leak(b, a, np.ones((4, 4), bool)) == 0.0


def test_psnr():
    a = np.zeros((2, 2, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    b = a.copy()
    b[0, 0] = 255
    assert psnr(a, b) == pytest.approx(10 * np.log10(4))
    assert psnr(a, b, np.array([[False, True], [True, True]])) == float("inf")


def test_settings_validation():
    s = EditSettings().replace(lambda_ce=2, lr=0.01)
    assert s.lambda_ce == 2.0 and s.lambda_rgb == 15.0
    for bad in (dict(bogus=1), dict(lr=0), dict(lambda_mse=-1), dict(lambda_ce=float("nan")), dict(lr="x"),
                dict(ce_change_share=1.5)):
        with pytest.raises(ValueError):
            EditSettings().replace(**bad)


# ---- optimization -----------------------------------------------------------------------------
def _quadratic(delta):
    loss = (delta - 1).pow(2).sum()
    return loss, torch.zeros(1, 3, 8, 8) + delta.mean()


def test_optimize_latent_progress_and_best():
    calls = []
    res = optimize_latent(_quadratic, torch.zeros(1, 2, 3), steps=12, lr=0.1,
                          progress=lambda step, total, preview=None: calls.append((step, total, preview)))
    assert [c[0] for c in calls] == list(range(1, 13)) and all(c[1] == 12 for c in calls)
    previews = [c[2] for c in calls if c[2] is not None]
    assert len(previews) == 3 and previews[0].shape == (8, 8, 3) and previews[0].dtype == np.uint8
    assert len(res.losses) == 13 and res.best_step == int(np.argmin(res.losses)) and res.best_step > 0
    assert res.losses[res.best_step] < res.losses[0]


def test_optimize_latent_cancel():
    n = {"checks": 0}

    def cancel_on_third():
        n["checks"] += 1
        return n["checks"] >= 3

    init = torch.zeros(1, 2, 3)
    with pytest.raises(Cancelled):
        optimize_latent(_quadratic, init, steps=10, lr=0.1, should_cancel=cancel_on_third)
    assert n["checks"] == 3 and torch.equal(init, torch.zeros(1, 2, 3))


@pytest.fixture(scope="module")
def models():
    return tiny_models()


def _edit_case(g, seg):
    ws = g.mean_ws() + 0.5 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(1))
    img, before = render(g, seg, ws)
    target = before.copy()
    target[8:16, 10:20] = (int(np.bincount(before[8:16, 10:20].ravel()).argmax()) + 1) % NUM_CLASSES
    return ws, to_uint8(img[0]), before, target


def test_edit_reduces_ce_inside_region(models):
    g, seg, perceptual = models
    ws, recon, before, target = _edit_case(g, seg)
    steps = []
    # the paper's free Q: the random model's touched classes cover 98 % of its picture, so keeping
    # their appearance (keep_q, tested below) leaves it little room to move
    out = segmentation_edit(g, seg, perceptual, ws, recon, before, target, steps=15,
                            settings=EditSettings(keep_q=0.0), progress=lambda s, t, p=None: steps.append(s))
    assert steps == list(range(1, 16))
    region = edit_region(before, target, region_radius(32))
    assert np.array_equal(out.region, region) and out.classes == touched_classes(before, target)
    # composited only where the painting changed the labels (Q also holds the rest of the touched classes)
    assert np.array_equal(out.composite, before != target) and out.composite.sum() < region.sum()
    objective = EditObjective(g, seg, perceptual, ws, render(g, None, ws)[0], before[None], region[None], target[None],
                              EditSettings(keep_q=0.0))
    with torch.no_grad():
        start, _ = objective.terms(torch.zeros_like(ws))
        end, _ = objective.terms(out.delta)
    assert end["ce"] < 0.8 * start["ce"], (start["ce"], end["ce"])
    assert out.metrics["best_step"] > 0 and out.metrics["steps"] == 15
    assert out.image.shape == (32, 32, 3) and out.labels.shape == (32, 32) and out.labels.dtype == np.uint8
    assert 0 <= out.metrics["leak"] <= 1 and 0 <= out.metrics["iou"] <= 1
    assert torch.allclose(out.ws, ws + out.delta)


def test_keep_q_weighs_the_appearance_of_qs_unchanged_pixels(models):
    g, seg, perceptual = models
    ws, _, before, target = _edit_case(g, seg)
    region = edit_region(before, target, region_radius(32))
    near = dilate(before != target, region_radius(32)).numpy()
    probe = 0.3 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(9))
    rgb = {}
    for keep in (0.0, 0.5, 1.0):
        objective = EditObjective(g, seg, perceptual, ws, render(g, None, ws)[0], before[None], region[None],
                                  target[None], EditSettings(keep_q=keep))
        weight = objective.rgb_weight[0, 0].numpy()
        assert (weight[~region] == 1).all() and (weight[near] == 0).all()
        assert np.allclose(weight[region & ~near], keep) and (region & ~near).any()
        with torch.no_grad():
            rgb[keep] = float(objective.terms(probe)[0]["rgb"])
    assert rgb[0.0] < rgb[0.5] < rgb[1.0]


def test_ce_weights_share_the_cross_entropy_between_the_change_and_the_rest_of_q():
    region = np.zeros((2, 4, 4), bool)
    region[:, :2] = True                      # 8 pixels of Q per face
    changed = np.zeros_like(region)
    changed[0, 0, :2] = True                  # face 0: 2 changed pixels in Q, one more outside it
    changed[0, 3, 3] = True
    paper = ce_weights(region, changed, 0.0)
    assert np.allclose(paper[region], 1 / 8) and (paper[~region] == 0).all()
    w = ce_weights(region, changed, 0.3)
    assert np.allclose(w[0][changed[0] & region[0]], 0.3 / 2) and np.allclose(w[0][region[0] & ~changed[0]], 0.7 / 6)
    assert w[0, 3, 3] == 0 and np.allclose(w.sum((1, 2)), 1)
    assert np.allclose(w[1][region[1]], 1 / 8)  # nothing changed in face 1's Q: the rest takes it all
    everything = ce_weights(region, region.copy(), 0.3)
    assert np.allclose(everything[region], 1 / 8)  # Q all changed: the change takes it all


def test_ce_change_share_weighs_the_painted_change(models):
    g, seg, perceptual = models
    ws, _, before, target = _edit_case(g, seg)
    region = edit_region(before, target, region_radius(32))
    changed = (before != target) & region
    weights = {}
    for share in (0.0, 0.6):
        objective = EditObjective(g, seg, perceptual, ws, render(g, None, ws)[0], before[None], region[None],
                                  target[None], EditSettings(ce_change_share=share))
        y0, y1, x0, x1 = objective.box
        weights[share] = float(objective.ce_weight[0][torch.from_numpy(changed[y0:y1, x0:x1])].sum())
    assert weights[0.0] == pytest.approx(changed.sum() / region.sum(), abs=1e-6) and weights[0.6] == pytest.approx(0.6)


def test_colour_term_pulls_the_painted_pixels_to_their_class_colour(models):
    g, seg, perceptual = models
    ws, recon, before, target = _edit_case(g, seg)
    region = edit_region(before, target, region_radius(32))
    reconstruction = render(g, None, ws)[0]
    objective = EditObjective(g, seg, perceptual, ws, reconstruction, before[None], region[None], target[None],
                              EditSettings(keep_q=0.0, lambda_colour=2.0))
    reference, weight = class_colour_reference(reconstruction[0], before, target)
    assert weight.any() and np.array_equal(weight[0].numpy() > 0, (before != target) & np.isin(target, before[before == target]))
    with torch.no_grad():
        terms, _ = objective.terms(torch.zeros_like(ws))
    painted = weight[0] > 0
    expected = (reconstruction[0][:, painted] - reference[:, painted]).pow(2).mean()
    assert torch.allclose(terms["colour"], expected, rtol=1e-5)
    assert torch.allclose(terms["total"], 15 * terms["rgb"] + terms["ce"] + 2 * terms["colour"], rtol=1e-5)
    colour = {}
    for weight_colour in (0.0, 20.0):
        out = segmentation_edit(g, seg, perceptual, ws, recon, before, target, steps=15,
                                settings=EditSettings(keep_q=0.0, lambda_colour=weight_colour))
        with torch.no_grad():
            colour[weight_colour] = float(objective.terms(out.delta)[0]["colour"])
    assert colour[20.0] < 0.8 * min(colour[0.0], float(terms["colour"])), (colour, float(terms["colour"]))


def test_edit_cancel_and_init_delta(models):
    g, seg, perceptual = models
    ws, recon, before, target = _edit_case(g, seg)
    ws_copy = ws.clone()
    with pytest.raises(Cancelled):
        segmentation_edit(g, seg, perceptual, ws, recon, before, target, steps=5, should_cancel=lambda: True)
    assert torch.equal(ws, ws_copy)
    init = 0.1 * torch.ones_like(ws)
    out = segmentation_edit(g, seg, perceptual, ws, recon, before, target, steps=1, init_delta=init,
                            settings=EditSettings(lr=1e-9))
    assert torch.allclose(out.delta, init, atol=1e-6)


def test_edit_starts_from_the_candidate_with_the_lowest_loss(models):
    g, seg, perceptual = models
    ws, recon, before, target = _edit_case(g, seg)
    region = edit_region(before, target, region_radius(32))
    settings = EditSettings(keep_q=0.0)
    found = segmentation_edit(g, seg, perceptual, ws, recon, before, target, steps=8, settings=settings).delta
    starts = [3 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(4)), found, 0.5 * found]
    objective = EditObjective(g, seg, perceptual, ws, render(g, None, ws)[0], before[None], region[None], target[None],
                              settings)
    losses = objective.candidate_losses(torch.cat([torch.zeros_like(ws), *starts]), batch=3)  # two batches
    with torch.no_grad():
        one_by_one = [float(objective.terms(d)[0]["total"]) for d in (torch.zeros_like(ws), *starts)]
    assert np.allclose(losses.numpy(), one_by_one, rtol=1e-4, atol=1e-6)
    assert losses[2] < losses[0]  # the found offset beats the embedding itself

    out = segmentation_edit(g, seg, perceptual, ws, recon, before, target, steps=0, starts=starts, settings=settings)
    assert out.metrics["start"] == int(losses[1:].argmin()) and torch.equal(out.delta, starts[out.metrics["start"]])
    worse = segmentation_edit(g, seg, perceptual, ws, recon, before, target, steps=0, starts=starts[:1],
                              settings=settings)
    assert losses[1] > losses[0] and worse.metrics["start"] is None and not worse.delta.any()
