import numpy as np
import pytest
import torch
import torch.nn.functional as F

from editgan.geometry import (REDRAWN_LEVELS, Geometry, blend_back, changed_box, dilate, edit_to_model, feather, fit,
                              painted_rim, removed_rim, resize_matrix, to_source)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_geometry_center_pads():
    g = Geometry.for_image(10, 21, 32)
    assert (g.side, g.top, g.left) == (21, 5, 0)
    assert Geometry.for_image(40, 30, 64).left == 5


def test_fit_pads_with_edge_replication():
    img = _image(6, 10)
    model, geo = fit(img, 10)  # side == resolution: no resampling, pure padding
    assert model.shape == (10, 10, 3) and geo.top == 2
    assert np.array_equal(model[2:8], img)
    assert np.array_equal(model[0], img[0]) and np.array_equal(model[1], img[0]) and np.array_equal(model[9], img[5])


def test_fit_resizes_smoothly():
    flat = np.full((100, 60, 3), 77, np.uint8)
    model, geo = fit(flat, 32)
    assert model.shape == (32, 32, 3) and np.all(model == 77)
    assert geo.to_dict() == dict(height=100, width=60, side=100, top=0, left=20, resolution=32)


@pytest.mark.parametrize("n_in,n_out", [(32, 100), (32, 20), (16, 16)])
def test_resize_matrix_matches_interpolate(n_in, n_out):
    x = torch.randn(1, 1, n_in, n_in)
    a = resize_matrix(n_in, n_out)
    ref = F.interpolate(x, size=(n_out, n_out), mode="bicubic", align_corners=False, antialias=n_out < n_in)
    assert torch.allclose(a @ x[0, 0] @ a.T, ref[0, 0], atol=1e-4)


def test_labels_to_source_nearest():
    labels = np.arange(16, dtype=np.uint8).reshape(4, 4)
    geo = Geometry.for_image(6, 8, 4)  # side 8 → 2×2 blocks; rows 1..6 of the square
    src = to_source(labels, geo)
    assert src.shape == (6, 8)
    assert np.array_equal(src[0], np.repeat(labels[0], 2)) and np.array_equal(src[1], np.repeat(labels[1], 2))
    assert np.array_equal(src[5], np.repeat(labels[3], 2))


def test_edit_to_model_majority():
    geo = Geometry.for_image(16, 16, 4)  # 4×4 source px per model px
    model_labels = np.zeros((4, 4), np.uint8)
    source_labels = to_source(model_labels, geo)
    assert np.array_equal(edit_to_model(source_labels, source_labels, model_labels, geo), model_labels)
    edited = source_labels.copy()
    edited[0:4, 0:4] = 2          # whole footprint of model pixel (0, 0)
    edited[4:6, 4:8] = 3          # half of (1, 1): taken
    edited[8, 8:12] = 1           # a quarter of (2, 2): too thin at the model's resolution
    edited[12:16, 12:14] = 1      # (3, 3) repainted by two classes, the larger wins
    edited[12:15, 14:16] = 2
    target = edit_to_model(edited, source_labels, model_labels, geo)
    expected = np.zeros((4, 4), np.uint8)
    expected[0, 0], expected[1, 1], expected[3, 3] = 2, 3, 1
    assert np.array_equal(target, expected)


def test_dilate_radius():
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    for r in (0, 1, 3):
        d = dilate(m, r).numpy()
        assert d.sum() == (2 * r + 1) ** 2 and d[4 - r:5 + r, 4 - r:5 + r].all()


def test_feather_profile():
    m = np.zeros((30, 30), bool)
    m[10:20, 10:20] = True
    a = feather(m, 3)
    assert np.all(a[m] == 1)
    assert np.all(a[:7] == 0) and np.all(a[:, 23:] == 0)  # radius = 3 px beyond the region
    ring = a[~m]
    assert ring.max() < 0.5  # the ring around the region gets less than half of the edit
    assert a[9, 15] == pytest.approx(3 / 7) and a[15, 22] == pytest.approx(1 / 7) and 0 < a[15, 22] < a[15, 21]
    assert np.array_equal(feather(m, 0), m.astype(np.float32)) and not feather(np.zeros_like(m), 2).any()


def test_changed_box():
    a = np.zeros((5, 7, 3), np.uint8)
    assert changed_box(a, a.copy()) == (0, 0, 0, 0)
    b = a.copy()
    b[1, 2, 0] = 1
    b[3, 5, 2] = 9
    assert changed_box(a, b) == (2, 1, 4, 3)


@pytest.mark.parametrize("h,w,feather_px", [(50, 37, None), (32, 32, 1), (120, 200, 4)])
def test_blend_back_bit_identical_outside(h, w, feather_px):
    source = _image(h, w, 1)
    model, geo = fit(source, 32)
    rng = np.random.default_rng(2)
    recon = model
    result = np.clip(recon.astype(int) + rng.integers(-60, 60, recon.shape), 0, 255).astype(np.uint8)
    region = np.zeros((32, 32), bool)
    region[12:18, 10:20] = True
    out, region_src, box = blend_back(source, geo, result, recon, region, feather_px)
    assert out.shape == source.shape and out.dtype == np.uint8 and region_src.shape == (h, w)
    radius = max(1, round(geo.side / 32)) if feather_px is None else feather_px
    alpha = feather(region_src, radius)
    assert np.array_equal(out[alpha == 0], source[alpha == 0])      # bit-identical outside
    assert (out[region_src] != source[region_src]).mean() > 0.5        # edited inside
    assert box == changed_box(out, source) and box[2] > 0
    x, y, bw, bh = box
    assert alpha[y:y + bh, x:x + bw].max() > 0


def test_blend_back_transfers_difference():
    source = _image(64, 64, 3)
    model, geo = fit(source, 32)
    result = model.astype(np.float32) + 10  # a uniform +10 edit
    region = np.ones((32, 32), bool)
    out, _, box = blend_back(source, geo, result, model, region)
    expected = np.clip(source.astype(int) + 10, 0, 255)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert box == (0, 0, 64, 64)


def test_blend_back_drawn_pixels_take_the_result_itself():
    source = _image(64, 64, 5)
    model, geo = fit(source, 32)
    recon = np.clip(model.astype(int) + 30, 0, 255).astype(np.uint8)  # a reconstruction that misses the source
    result = np.full((32, 32, 3), 200, np.uint8)
    region = np.zeros((32, 32), bool)
    region[8:16, 8:16] = True
    drawn = np.zeros((64, 64), bool)
    drawn[18:30, 18:30] = True              # inside the region at source size (16..32)
    drawn[50:60, 50:60] = True              # outside it: ignored, the source stays
    out, region_src, _ = blend_back(source, geo, result, recon, region, drawn=drawn)
    assert np.all(out[18:30, 18:30] == 200)                      # the generator's drawing itself
    plain, _, _ = blend_back(source, geo, result, recon, region)
    ring = region_src & ~drawn
    assert np.array_equal(out[ring], plain[ring])                 # elsewhere: source + difference
    assert not np.array_equal(plain[18:30, 18:30], out[18:30, 18:30])
    alpha = feather(region_src, 2)
    assert np.array_equal(out[alpha == 0], source[alpha == 0])   # bit-identical outside, drawn or not
    # an edit that left the drawn pixels alone leaves the source; a small change mixes in proportion
    unchanged, _, box = blend_back(source, geo, recon, recon, region, drawn=drawn)
    assert np.array_equal(unchanged, source) and box == (0, 0, 0, 0)
    nudged, _, _ = blend_back(source, geo, recon.astype(np.float32) + 2, recon, region, drawn=drawn)
    weight = 2 / REDRAWN_LEVELS   # the result moved 2 levels: a quarter of the way to the drawing itself
    up = resize_matrix(32, 64).numpy()
    recon_src = np.einsum("yh,hwc,xw->yxc", up, recon.astype(np.float64), up)
    expected = np.clip(weight * (recon_src + 2) + (1 - weight) * (source + 2.0), 0, 255)
    assert np.abs(nudged[18:30, 18:30] - expected[18:30, 18:30]).max() <= 1


def _eye(pupil_radius: int) -> np.ndarray:
    """Labels 32²: skin (1), an eye white (4) with an iris (5) and a pupil (6) of ``pupil_radius``."""
    y, x = np.mgrid[:32, :32]
    d = np.hypot(y - 16, x - 16)
    labels = np.ones((32, 32), np.uint8)
    labels[d <= 7] = 4
    labels[d <= 4] = 5
    labels[d <= pupil_radius] = 6
    return labels


def test_removed_rim_rings_a_part_painted_away_and_nothing_that_grows():
    eye = _eye(2)
    closed = np.ones_like(eye)                        # the whole eye painted over with skin
    rim = removed_rim(eye, closed, near=4)
    changed = eye != closed
    assert rim.any() and not (rim & changed).any()
    assert np.array_equal(rim, dilate(changed, 1).numpy() & ~changed)   # the skin ring around the eye
    assert not removed_rim(eye, _eye(3), near=4).any()        # a bigger pupil: the iris stays next to it
    # half an eye painted away: only its pixels farther than ``near`` from the kept half are removed
    half = eye.copy()
    half[:, :16] = 1
    rim = removed_rim(eye, half, near=4)              # removed up to column 11, the rim to 12
    assert rim.any() and not rim[:, 13:].any()
    assert not removed_rim(eye, half, near=8).any()   # the eye spans columns 9..23


def test_painted_rim_reads_the_source_labels_at_the_model_scale():
    eye, closed = _eye(2), np.ones((32, 32), np.uint8)
    big = lambda labels: np.kron(labels, np.ones((4, 4), np.uint8))   # the same painting at 128²
    geo = Geometry.for_image(128, 128, 32)                             # 4 source pixels per model pixel
    rim = painted_rim(big(eye), big(closed), geo, near=4, width=1)
    assert np.array_equal(rim, big(removed_rim(eye, closed, near=4)))  # scaled to the model's pixels
    # a stray source pixel of the old class is one pixel of the 128² grid, not a whole model cell,
    # and only cancels the rim within 4 model pixels (16 source pixels) of it
    strayed = big(closed)
    strayed[64, 36] = 4
    assert painted_rim(big(eye), strayed, geo, near=4, width=1)[:, 96:].any()
    assert not painted_rim(big(eye), big(_eye(3)), geo, near=4, width=1).any()
    # a photo larger than RIM_GRID is read every few pixels: same rim, upsampled
    huge = Geometry.for_image(1024, 1024, 32)
    wide = painted_rim(np.kron(eye, np.ones((32, 32), np.uint8)), np.ones((1024, 1024), np.uint8), huge, 4, 1)
    assert np.array_equal(wide, np.kron(removed_rim(eye, closed, near=4), np.ones((32, 32), bool)))


def test_blend_back_rim_joins_the_composite_and_takes_the_result():
    source = _image(64, 64, 6)
    model, geo = fit(source, 32)
    result = np.full((32, 32, 3), 200, np.uint8)
    region = np.zeros((32, 32), bool)
    region[10:14, 10:14] = True
    rim = to_source(dilate(region, 1).numpy() & ~region, geo)
    drawn = to_source(region, geo)
    plain, region_plain, _ = blend_back(source, geo, result, model, region, drawn=drawn)
    out, region_src, _ = blend_back(source, geo, result, model, region, drawn=drawn, rim=rim)
    assert np.array_equal(region_src, region_plain | rim)
    assert np.all(out[rim] == 200) and not np.all(plain[rim] == 200)
    alpha = feather(region_src, 2)
    assert np.array_equal(out[alpha == 0], source[alpha == 0])   # bit-identical outside the feathered composite


def test_blend_back_no_change():
    source = _image(40, 40, 4)
    model, geo = fit(source, 32)
    region = np.zeros((32, 32), bool)
    region[5:9, 5:9] = True
    out, _, box = blend_back(source, geo, model, model, region)
    assert np.array_equal(out, source) and box == (0, 0, 0, 0)


def _padded_reference(array: np.ndarray, geo: Geometry, mode: str) -> torch.Tensor:
    """The plain path: build the edge-padded square, then resize it with F.interpolate."""
    pad = [(geo.top, geo.side - geo.height - geo.top), (geo.left, geo.side - geo.width - geo.left)]
    square = np.pad(array, pad + [(0, 0)] * (array.ndim - 2), mode="edge").astype(np.float32)
    x = torch.from_numpy(square.reshape(geo.side, geo.side, -1)).permute(2, 0, 1)[None]
    kw = dict(mode="area") if mode == "area" else dict(mode="bicubic", align_corners=False,
                                                       antialias=geo.resolution < geo.side)
    return F.interpolate(x, size=(geo.resolution, geo.resolution), **kw)[0].permute(1, 2, 0)


@pytest.mark.parametrize("h,w,r", [(100, 60, 32), (7, 300, 32), (40, 41, 64), (9, 5, 16)])
def test_fit_matches_padding_then_resizing(h, w, r):
    img = _image(h, w, seed=h + w)
    model, geo = fit(img, r)
    ref = _padded_reference(img, geo, "bicubic").round().clamp(0, 255).to(torch.uint8).numpy()
    assert model.shape == ref.shape == (r, r, 3)
    assert np.abs(model.astype(int) - ref.astype(int)).max() <= 1  # float summation order only
    assert np.mean(model == ref) > 0.99


@pytest.mark.parametrize("h,w,r", [(16, 16, 4), (30, 70, 8), (5, 200, 16)])
def test_area_vote_matches_padding_then_pooling(h, w, r):
    from editgan.geometry import _area, _square_axes, area_matrix
    mask = np.random.default_rng(h).random((h, w)) < 0.3
    geo = Geometry.for_image(h, w, r)
    ref = _padded_reference(mask.astype(np.float32), geo, "area")[..., 0]
    assert torch.allclose(_area(mask, _square_axes(area_matrix(geo.side, r), geo)), ref, atol=1e-5)


def test_thin_strip_is_resized_without_its_square():
    """An 8 × 8192 strip (a 256 KiB request) must not become an 8192² square (≈ 1 GiB as float)."""
    img = np.zeros((8, 8192, 3), np.uint8)
    img[:, 4096:] = 200
    model, geo = fit(img, 64)
    assert geo.side == 8192 and model.shape == (64, 64, 3)
    assert (model == model[:1]).all()  # edge padding repeats the strip's rows
    assert np.all(model[:, :30] == 0) and np.all(model[:, 34:] == 200)  # the step blurs over ~2 model px
    labels = np.zeros((8, 8192), np.uint8)
    edited = labels.copy()
    edited[:, :4096] = 3
    target = edit_to_model(edited, labels, np.zeros((64, 64), np.uint8), geo)
    assert np.all(target[:, :32] == 3) and np.all(target[:, 32:] == 0)
