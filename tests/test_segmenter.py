import pytest
import torch
import torch.nn.functional as F

from editgan.bundle import Bundle, ClassInfo
from editgan.generator import Generator
from editgan import segmenter as segmenter_module
from editgan.segmenter import Segmenter, feature_layout, interpolation_matrix, train_segmenter
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def gen_and_feats():
    torch.manual_seed(0)
    g = Generator(tiny_config(32)).eval()
    with torch.no_grad():
        ws = g.map(torch.randn(2, g.z_dim))
        _, feats = g.synthesis(ws)
    return g, ws, feats


def test_feature_layout_matches_generator(gen_and_feats):
    g, _, _ = gen_and_feats
    assert feature_layout(g.cfg) == (g.synthesis.feature_channels, g.synthesis.feature_resolutions)


@pytest.mark.parametrize("in_size,out_size", [(4, 32), (8, 24), (32, 32), (64, 16), (5, 7)])
def test_interpolation_matrix_matches_interpolate(in_size, out_size):
    x = torch.randn(1, 2, in_size, in_size)
    a = interpolation_matrix(in_size, out_size)
    ref = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False)
    assert torch.allclose(a @ x @ a.T, ref, atol=1e-5)
    assert torch.allclose(interpolation_matrix(in_size, out_size, 3, 6), a[3:6])


@pytest.fixture(params=[0, 1024], ids=["interpolate", "matrices"])
def resize_path(request, monkeypatch):
    """Run a test with every map resized by F.interpolate (where the zoom is an integer) or by matrices."""
    monkeypatch.setattr(segmenter_module, "MATRIX_MAX_SIDE", request.param)


@pytest.mark.parametrize("context", [1, 3])
@pytest.mark.parametrize("resolution", [32, 24, 16])
def test_projection_equals_concat(gen_and_feats, resolution, context, resize_path):
    g, _, feats = gen_and_feats
    seg = Segmenter.for_generator(g, num_classes=5, resolution=resolution, members=2, hidden=16, hidden2=8,
                                  context=context)
    with torch.no_grad():
        fast, ref = seg(feats), seg.forward_concat(feats)
    assert fast.shape == (2, 2, 5, resolution, resolution)
    assert torch.allclose(fast, ref, atol=1e-4), (fast - ref).abs().max()


def _boxes(s):
    return [(0, s, 0, s), (3, s // 2 + 1, s // 2, s), (s - 1, s, 0, 1), (s // 3, s // 3 + 1, 5, s - 3), (1, 2, s - 2, s - 1)]


@pytest.mark.parametrize("context", [1, 3, 5])  # 5: margins wider than a 1-pixel box at the border
@pytest.mark.parametrize("resolution", [32, 24, 16])  # integer zooms, other ratios (matrices), shrinking
@pytest.mark.parametrize("which", range(5))
def test_crop_equals_full_box(gen_and_feats, resolution, which, context, resize_path):
    g, _, feats = gen_and_feats
    seg = Segmenter.for_generator(g, num_classes=4, members=3, hidden=16, hidden2=8, resolution=resolution,
                                  context=context)
    box = _boxes(resolution)[which]
    y0, y1, x0, x1 = box
    with torch.no_grad():
        full, crop = seg(feats), seg(feats, box)
    assert crop.shape == (3, 2, 4, y1 - y0, x1 - x0)
    assert torch.allclose(crop, full[..., y0:y1, x0:x1], atol=1e-4)


def test_context_reads_the_neighbourhood_of_full_resolution_maps_only(gen_and_feats):
    g, _, feats = gen_and_feats
    pixel = Segmenter.for_generator(g, num_classes=4, members=1, hidden=8, hidden2=4)
    seg = Segmenter.for_generator(g, num_classes=4, members=1, hidden=8, hidden2=4, context=3)
    # the first layer reads 9 values per channel of the 32² maps, 1 per channel of the coarser ones
    full = sum(c for c, r in zip(g.synthesis.feature_channels, g.synthesis.feature_resolutions) if r == 32)
    assert seg.proj_weight.shape[1] - pixel.proj_weight.shape[1] == 8 * full
    # a change to one pixel of a full-resolution map reaches its 3×3 neighbours, not further
    changed = [f.clone() for f in feats]
    changed[-1][:, :, 10, 10] += 5.0
    with torch.no_grad():
        diff = (seg(changed) - seg(feats)).abs().amax((0, 1, 2))
    touched = diff > 1e-6
    assert touched[9:12, 9:12].all() and touched.sum() == 9
    with pytest.raises(ValueError, match="odd"):
        Segmenter.for_generator(g, num_classes=4, context=2)


def test_read_image_appends_the_rgb_output_as_a_map(gen_and_feats):
    g, ws, feats = gen_and_feats
    seg = Segmenter.for_generator(g, num_classes=4, members=2, hidden=8, hidden2=4, context=3, read_image=True)
    plain = Segmenter.for_generator(g, num_classes=4, members=2, hidden=8, hidden2=4, context=3)
    assert seg.proj_weight.shape[1] - plain.proj_weight.shape[1] == 3 * 9  # RGB over 3×3 neighbourhoods
    with torch.no_grad():
        img, _ = g.synthesis(ws)
        inputs = seg.inputs(img, feats)
        assert len(inputs) == len(feats) + 1 and inputs[-1] is img and plain.inputs(img, feats) is feats
        assert torch.allclose(seg(inputs), seg.forward_concat(inputs), atol=1e-4)
        assert not torch.allclose(seg(inputs), seg(seg.inputs(img.flip(-1), feats)))  # the image is read
    with pytest.raises(AssertionError):
        seg(feats)
    # training reads the image from synthesis
    with torch.no_grad():
        labels = (img.mean(1) > img.mean()).long()
    trained, _ = train_segmenter(g, [ws[:1], ws[1:]], [labels[0], labels[1]], num_classes=2, steps=40, lr=3e-3,
                                 members=1, hidden=16, hidden2=8, read_image=True)
    assert trained.image_channels == 3
    assert (trained.predict(trained.inputs(img, feats)) == labels).float().mean() > 0.8


def test_crop_gradients_reach_features(gen_and_feats):
    g, ws, _ = gen_and_feats
    seg = Segmenter.for_generator(g, num_classes=4, hidden=8, hidden2=4)
    ws = ws[:1].clone().requires_grad_(True)
    _, feats = g.synthesis(ws)
    seg(feats, (4, 9, 4, 9)).sum().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0


def test_predict_is_argmax_of_mean_softmax(gen_and_feats):
    g, _, feats = gen_and_feats
    seg = Segmenter.for_generator(g, num_classes=6, members=3, hidden=16, hidden2=8)
    with torch.no_grad():
        expected = seg(feats).softmax(2).mean(0).argmax(1)
    labels = seg.predict(feats)
    assert labels.shape == (2, 32, 32) and torch.equal(labels, expected)
    assert torch.allclose(seg.probabilities(feats, rows_per_tile=5).sum(1), torch.ones(2, 32, 32), atol=1e-5)


def test_bad_features_rejected(gen_and_feats):
    g, _, feats = gen_and_feats
    seg = Segmenter.for_generator(g, num_classes=3, hidden=8, hidden2=4)
    with pytest.raises(AssertionError):
        seg(feats[:-1])
    with pytest.raises(AssertionError, match="box"):
        seg(feats, (0, 33, 0, 4))


def test_bundle_round_trip(gen_and_feats, tmp_path):
    g, ws, feats = gen_and_feats
    seg = Segmenter.for_generator(g, num_classes=3, members=2, hidden=8, hidden2=4, context=3, read_image=True)
    classes = [ClassInfo("a", (0, 0, 0)), ClassInfo("b", (1, 1, 1)), ClassInfo("c", (2, 2, 2))]
    Bundle(name="t", generator=g, classes=classes, components={"segmenter": seg}).save(tmp_path / "b")
    loaded = Bundle.load(tmp_path / "b").segmenter
    assert isinstance(loaded, Segmenter) and loaded.config_dict() == seg.config_dict()
    with torch.no_grad():
        img, _ = g.synthesis(ws)
        assert torch.equal(loaded(loaded.inputs(img, feats)), seg(seg.inputs(img, feats)))
    with pytest.raises(ValueError, match="unknown segmenter config"):
        Segmenter.from_config({"num_classes": 3, "bogus": 1}, g.cfg)


@pytest.mark.parametrize("context", [1, 3])
def test_folded_input_scaling_reads_raw_maps_like_scaled_ones(gen_and_feats, context, resize_path):
    g, ws, feats = gen_and_feats
    seg = Segmenter.for_generator(g, num_classes=4, members=2, hidden=16, hidden2=8, context=context, read_image=True)
    with torch.no_grad():
        maps = seg.inputs(g.synthesis(ws)[0], feats)
    gen = torch.Generator().manual_seed(3)
    mean = [torch.randn(f.shape[1], generator=gen) for f in maps]
    std = [0.1 + torch.rand(f.shape[1], generator=gen) for f in maps]
    box = (3, 20, 5, 17)
    with torch.no_grad():
        scaled = seg([(f - m[:, None, None]) / sd[:, None, None] for f, m, sd in zip(maps, mean, std)], box)
        seg.fold_input_scaling(mean, std)
        raw = seg(maps, box)
    assert torch.allclose(raw, scaled, atol=1e-4), (raw - scaled).abs().max()


def test_training_fits_synthetic_labels(gen_and_feats):
    g, ws, feats = gen_and_feats
    # labels that depend on the image content: quantized brightness of the rendered image
    with torch.no_grad():
        img, _ = g.synthesis(ws)
    gray = img.mean(1)
    qs = torch.quantile(gray.flatten(), torch.tensor([1 / 3, 2 / 3]))
    labels = torch.bucketize(gray, qs)
    seg, history = train_segmenter(g, [ws[:1], ws[1:]], [labels[0], labels[1]], num_classes=3, steps=80,
                                   batch=2, lr=3e-3, members=2, hidden=32, hidden2=16)
    assert len(history) == 80 and history[-1] < 0.6 * history[0]
    acc = (seg.predict(feats) == labels).float().mean().item()
    assert acc > 0.8, acc
    # members differ (own init/shuffle) yet were both trained
    assert not torch.equal(seg.fc2_weight[0], seg.fc2_weight[1])


def test_class_weights_lift_rare_classes(gen_and_feats):
    from editgan.segmenter import _class_weights
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[0, 0, :4] = 1          # 4 of 128 pixels
    labels[1, 1:3] = 3            # 16 pixels; class 2 absent
    assert _class_weights(labels, 4, 0.0) is None
    w = _class_weights(labels, 4, 0.5)
    counts = torch.tensor([108.0, 4.0, 0.0, 16.0])
    assert w[2] == 0 and w[1] > w[3] > w[0] > 0
    assert torch.isclose(w[1] / w[3], torch.tensor(2.0)) and torch.isclose((w * counts).sum(), counts.sum())
    g, ws, _ = gen_and_feats
    plain, _ = train_segmenter(g, [ws[:1]], [labels[0].repeat(4, 4)], num_classes=4, steps=3, members=1,
                               hidden=8, hidden2=4)
    weighted, _ = train_segmenter(g, [ws[:1]], [labels[0].repeat(4, 4)], num_classes=4, steps=3, members=1,
                                  hidden=8, hidden2=4, class_weight_power=0.5)
    assert not torch.equal(plain.fc2_bias, weighted.fc2_bias)  # the weights reach the loss


def test_only_the_index_math_is_cached():
    """Interpolation windows are cached (an edit asks for the same box every step); tensors never are."""
    segmenter_module._window.cache_clear()
    segmenter_module._window(8, 32, 3, 9)
    segmenter_module._window(8, 32, 3, 9)
    assert segmenter_module._window.cache_info().hits == 1
    assert not hasattr(segmenter_module._neighbourhood, "cache_info")
