import numpy as np
import torch

from editgan.class_colours import class_colour_reference


def _two_tone(r: int = 32):
    """Left half class 1 red, right half class 2 blue, as a [3, R, R] image in [-1, 1] and its labels."""
    labels = np.ones((r, r), np.uint8)
    labels[:, r // 2:] = 2
    image = torch.zeros(3, r, r)
    image[0, :, : r // 2] = 0.8
    image[2, :, r // 2:] = -0.6
    return image, labels


def test_painted_pixels_get_their_new_class_colour_and_nothing_else_is_weighted():
    image, before = _two_tone()
    target = before.copy()
    target[10:14, 10:14] = 2          # blue painted into the red half
    target[20:22, 4:6] = 3            # a class the image does not show: no reference
    reference, weight = class_colour_reference(image, before, target)
    painted = (before != target) & (target == 2)
    assert weight.shape == (1, 32, 32) and reference.shape == (3, 32, 32)
    assert np.array_equal(weight[0].numpy() > 0, painted)
    assert torch.allclose(reference[:, torch.from_numpy(painted)], image[:, 0, -1:].expand(3, 16), atol=1e-4)
    assert not reference[:, torch.from_numpy(~painted)].any()


def test_reference_is_the_nearby_colour_of_the_class_falling_back_to_its_mean():
    r = 64
    image, before = _two_tone(r)
    image[1, : r // 2, r // 2:] = 0.9    # the top of class 2 is green: two looks of one class
    target = before.copy()
    target[4:8, 26:28] = 2               # beside the green part
    target[56:60, 26:28] = 2             # beside the blue part
    target[30:32, 2:4] = 2               # far from both (26+ px = 6.5 σ away): the image-wide mean
    reference, _ = class_colour_reference(image, before, target)
    assert abs(float(reference[1, 5, 26]) - 0.9) < 0.05 and abs(float(reference[1, 57, 26])) < 0.05
    mean = image[:, :, r // 2:].mean((1, 2))
    assert torch.allclose(reference[:, 31, 2], mean, atol=0.05)


def test_reference_at_512_is_the_64_grid_result_upsampled():
    image, before = _two_tone(64)
    target = before.copy()
    target[20:30, 20:30] = 2
    big = torch.nn.functional.interpolate(image[None], scale_factor=8, mode="nearest")[0]
    up = lambda a: np.kron(a, np.ones((8, 8), a.dtype))
    ref_small, _ = class_colour_reference(image, before, target)
    ref_big, weight_big = class_colour_reference(big, up(before), up(target))
    assert int(weight_big.sum()) == 64 * 100
    assert torch.allclose(ref_big[:, 8 * 25, 8 * 25], ref_small[:, 25, 25], atol=0.02)
