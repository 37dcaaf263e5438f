import numpy as np
import torch

from editgan.class_colours import PartColours, class_colour_reference, mean_class_colours


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


def test_a_chosen_colour_decides_and_a_usual_one_only_where_the_image_shows_no_such_part():
    image, before = _two_tone()
    target = before.copy()
    target[10:14, 10:14] = 2          # blue painted into the red half: the image shows class 2
    target[20:22, 4:6] = 3            # class 3 is nowhere in the image
    green, grey, white = torch.tensor([-1.0, 1.0, -1.0]), torch.tensor([0.1, 0.1, 0.1]), torch.ones(3)
    at = lambda ref, y, x: ref[:, y, x]

    usual = PartColours(usual={2: white, 3: grey})
    reference, weight = class_colour_reference(image, before, target, usual)
    assert torch.allclose(at(reference, 11, 11), image[:, 0, -1], atol=1e-4)   # the image's own blue wins
    assert torch.equal(at(reference, 20, 4), grey) and float(weight[0, 20, 4]) == 1.0

    chosen = PartColours(chosen={2: green}, usual={2: white, 3: grey})
    reference, weight = class_colour_reference(image, before, target, chosen)
    assert torch.equal(at(reference, 11, 11), green) and torch.equal(at(reference, 20, 4), grey)
    painted = before != target
    assert np.array_equal(weight[0].numpy() > 0, painted)


def test_mean_class_colours_of_annotations():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2] = (10, 20, 30)
    image[2:] = (200, 100, 0)
    image[3, 3] = (100, 50, 1)
    labels = np.zeros((4, 4), np.uint8)
    labels[2:] = 1
    second = np.full((2, 2, 3), 7, np.uint8), np.zeros((2, 2), np.uint8)
    colours = mean_class_colours([image, second[0]], [labels, second[1]], num_classes=3)
    assert colours[0] == (round((8 * 10 + 4 * 7) / 12), round((8 * 20 + 4 * 7) / 12), round((8 * 30 + 4 * 7) / 12))
    assert colours[1] == (round((7 * 200 + 100) / 8), round((7 * 100 + 50) / 8), round(1 / 8))
    assert colours[2] is None
