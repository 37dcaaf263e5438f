import numpy as np
import pytest
import torch
import torch.nn.functional as F

from editgan.geometry import fit, to_source
from editgan.imageio import from_uint8
from editgan.photo_labels import (PhotoSnapSettings, _levels, bilateral_kernel, snap_to_photo,
                                  snap_to_photo_reference, snap_to_source)


def _random_case(seed: int, n=2, c=4, h=7, w=6):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n, c, h, w, generator=g), 1)
    image = torch.rand(n, 3, h, w, generator=g)
    return probs, image


@pytest.mark.parametrize("settings", [PhotoSnapSettings(), PhotoSnapSettings(3, 1.0, 0.2, 4.0, 2),
                                      PhotoSnapSettings(7, 3.0, 0.1, 1.0, 1)])
def test_matches_pixel_by_pixel_reference(settings):
    probs, image = _random_case(0)
    fast, slow = snap_to_photo(probs, image, settings), snap_to_photo_reference(probs, image, settings)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert torch.allclose(fast.sum(1), torch.ones(2, 7, 6), atol=1e-5)


def test_zero_iterations_or_weight_keep_the_probabilities():
    probs, image = _random_case(1)
    assert torch.equal(snap_to_photo(probs, image, PhotoSnapSettings(iterations=0)), probs)
    assert torch.allclose(snap_to_photo(probs, image, PhotoSnapSettings(weight=0.0)), probs, atol=1e-6)


def test_kernel_is_zero_off_the_image_and_across_colour_edges():
    image = torch.zeros(1, 3, 4, 4)
    image[..., 2:] = 1.0  # a vertical edge between columns 1 and 2
    k = bilateral_kernel(image, PhotoSnapSettings(window=3, colour_sigma=0.05))  # [1, 8, 4, 4]
    assert torch.all(k[0, :, 0, 0][[0, 1, 2, 3, 5]] == 0)  # the corner's neighbours above and left are off the image
    right = 4  # offset (0, +1) among the 8 neighbours of a 3×3 window
    assert k[0, right, 1, 0] > 0.5 and k[0, right, 1, 1] < 1e-6  # same colour vs across the edge


def test_boundary_moves_onto_the_photo_edge():
    """The segmenter's boundary sits one column left of the photo's edge; snapping moves it there."""
    h, w = 8, 8
    image = torch.zeros(1, 3, h, w)
    image[..., 4:] = 1.0
    probs = torch.full((1, 2, h, w), 0.1)
    probs[:, 0, :, :3], probs[:, 1, :, 3:] = 0.9, 0.9  # column 3 predicted as class 1, photo says 0
    probs[:, 0, :, 3], probs[:, 1, :, 3] = 0.4, 0.6    # ... with little confidence
    before = probs.argmax(1)
    after = snap_to_photo(probs, image, PhotoSnapSettings(window=5, weight=2.0)).argmax(1)
    assert torch.all(before[0, :, 3] == 1) and torch.all(after[0, :, 3] == 0)
    assert torch.equal(after[0, :, :3], before[0, :, :3]) and torch.equal(after[0, :, 4:], before[0, :, 4:])


@pytest.mark.parametrize("bad", [dict(window=4), dict(window=0), dict(colour_sigma=0), dict(weight=-1),
                                 dict(iterations=-1), dict(max_side=0)])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError):
        PhotoSnapSettings(**bad)


@pytest.mark.parametrize("model, side, max_side, expected", [
    (64, 256, 1024, [64, 128, 256]), (64, 300, 1024, [64, 128, 256, 300]), (64, 2000, 512, [64, 128, 256, 512]),
    (64, 64, 1024, [64]), (64, 40, 1024, [64]), (64, 2000, 32, [64])])
def test_levels_double_up_to_the_photo_or_the_cap(model, side, max_side, expected):
    assert _levels(model, side, max_side) == expected


def test_source_snap_at_the_model_size_is_the_plain_snap():
    """A photo no larger than the model: one level, the same result as before source snapping."""
    g = torch.Generator().manual_seed(3)
    photo = (torch.rand(16, 16, 3, generator=g) * 255).to(torch.uint8).numpy()
    probs = torch.softmax(2 * torch.randn(1, 4, 16, 16, generator=g), 1)
    model_image, geo = fit(photo, 16)
    plain = snap_to_photo(probs, (from_uint8(model_image) + 1) / 2)[0].argmax(0).to(torch.uint8).numpy()
    assert np.array_equal(snap_to_source(probs, photo), to_source(plain, geo))


def test_source_snap_follows_edges_finer_than_the_model_grid():
    """A 96×128 photo (padded to a 128² square) whose edge lies between two model pixels of a 32²
    grid: nearest-upsampled model labels miss it by up to a block, the source snap lands on it."""
    h, w, edge = 128, 96, 37
    truth = np.zeros((h, w), np.uint8)
    truth[:, edge:] = 1
    photo = np.where(truth[..., None] == 1, [40, 60, 200], [200, 60, 40]).astype(np.uint8)
    square = np.pad(truth, [(0, 0), (16, 16)], mode="edge")  # the padded square fit() uses
    one_hot = torch.from_numpy(np.stack([square == 0, square == 1])).float()[None]
    probs = F.avg_pool2d(one_hot, 4) * 0.8 + 0.1  # a 32² reading, uncertain along the edge
    coarse = to_source(probs[0].argmax(0).to(torch.uint8).numpy(), fit(photo, 32)[1])
    snapped = snap_to_source(probs, photo)
    assert snapped.shape == (h, w)
    assert (coarse != truth).sum() >= h  # at least a column wrong
    assert (snapped != truth).mean() < 0.002
    capped = snap_to_source(probs, photo, PhotoSnapSettings(max_side=32))
    assert np.array_equal(capped, coarse)  # the cap at the model grid: the old blocks
