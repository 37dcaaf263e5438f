import pytest
import torch

from editgan.photo_labels import PhotoSnapSettings, bilateral_kernel, snap_to_photo, snap_to_photo_reference


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
                                 dict(iterations=-1)])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError):
        PhotoSnapSettings(**bad)
