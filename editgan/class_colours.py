"""What a painted pixel should look like: the colour its new class has nearby in the same image.

The segmentation edit's cross-entropy can be met by generator changes that do not look like the
part (docs/demo-model.md, "the generator's ceiling"): a bigger pupil drawn as a faint grey the
segmenter already calls pupil. The class-colour term of the edit (``EditSettings.lambda_colour``)
pulls each painted pixel towards the colour of its new class in this image, taken where that class
stays: near the pixel first (the same eye's pupil, the skin beside a closed eye), the class's mean
over the image where it is far away. A class the image does not show (glasses added to a face
without any) follows its usual colour in the domain (the mean over the annotated images, kept in
the bundle as each class's ``appearance``); without one those pixels are left to the
cross-entropy alone. A colour the user chose for a part (red frames, blue eyes) decides over both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .ops import gaussian_taps, separable_conv

# The neighbourhood is computed on a grid of at most this side (area-resized), so a 512² edit costs
# what a 64² one does; the reference is smooth anyway.
REFERENCE_GRID = 64
# Gaussian σ of "nearby" as a share of the image side: 4 px at 64², about an eye's width.
SIGMA_SHARE = 1 / 16
# Weight of the image-wide class mean against the neighbourhood's (whose kernel sums to 1): it
# decides only where no pixel of the class lies within about 3 σ.
GLOBAL_WEIGHT = 1e-3


@dataclass(frozen=True)
class PartColours:
    """Colours, besides the image's own, that painted pixels of a class follow: class id → ``[3]``
    tensor in the image's range."""

    chosen: dict[int, torch.Tensor] = field(default_factory=dict)  # the user's: replace the image's
    usual: dict[int, torch.Tensor] = field(default_factory=dict)   # the domain's: where the image has none


def mean_class_colours(images, labels, num_classes: int) -> list[tuple[int, int, int] | None]:
    """Each class's mean colour (uint8 RGB) over annotated ``images`` (uint8 (H, W, 3)) and their
    ``labels`` (H, W); None for a class no annotation shows. The mean is the single colour closest,
    in squared error, to what the class looks like across those images."""
    sums, counts = np.zeros((num_classes, 3)), np.zeros(num_classes)
    for image, label in zip(images, labels):
        assert image.shape == (*label.shape, 3)
        flat = label.reshape(-1).astype(np.int64)
        counts += np.bincount(flat, minlength=num_classes)[:num_classes]
        for ch in range(3):
            sums[:, ch] += np.bincount(flat, weights=image[..., ch].reshape(-1), minlength=num_classes)[:num_classes]
    return [tuple(int(v) for v in np.rint(sums[c] / counts[c])) if counts[c] else None for c in range(num_classes)]


def class_colour_reference(image: torch.Tensor, before: np.ndarray, target: np.ndarray,
                           colours: PartColours | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference colours of the painted pixels of one image and where they apply.

    Args:
        image: ``[3, R, R]`` float, the image whose colours are the reference (the reconstruction).
        before: int (R, R) labels of ``image``.
        target: int (R, R) edited labels.
        colours: the user's chosen colours (used first) and the domain's usual ones (used for a
            class that stays nowhere in ``image``).

    Returns:
        ``reference`` ``[3, R, R]`` (zeros where it does not apply) and ``weight`` ``[1, R, R]``:
        1 on changed pixels whose new class has a colour, 0 elsewhere.
    """
    r = image.shape[-1]
    assert image.shape == (3, r, r) and before.shape == target.shape == (r, r)
    reference = torch.zeros_like(image)
    weight = torch.zeros(1, r, r, dtype=image.dtype, device=image.device)
    changed = before != target
    g = min(r, REFERENCE_GRID)
    radius = max(1, math.ceil(3 * g * SIGMA_SHARE))  # the kernel reaches 3σ
    taps = gaussian_taps(2 * radius + 1, g * SIGMA_SHARE)
    colours = colours or PartColours()

    def constant(paint, colour):
        assert colour.shape == (3,)
        reference[:, paint] = colour.to(image)[:, None]
        weight[:, paint] = 1.0

    for c in map(int, np.unique(target[changed])):
        paint = torch.from_numpy(changed & (target == c)).to(image.device)
        keep = torch.from_numpy((before == c) & (target == c)).to(image)
        if c in colours.chosen:
            constant(paint, colours.chosen[c])
            continue
        if not keep.any():
            if c in colours.usual:
                constant(paint, colours.usual[c])
            continue
        mean = (image * keep).sum((1, 2)) / keep.sum()
        # normalized convolution on the coarse grid: blur(colour · mask) / blur(mask)
        stacked = torch.cat([image * keep, keep[None]])[None]
        coarse = F.interpolate(stacked, size=(g, g), mode="area") if g != r else stacked
        blurred = separable_conv(coarse, taps, padding=radius)
        local = (blurred[:, :3] + GLOBAL_WEIGHT * mean[None, :, None, None]) / (blurred[:, 3:] + GLOBAL_WEIGHT)
        if g != r:
            local = F.interpolate(local, size=(r, r), mode="bilinear", align_corners=False)
        reference[:, paint] = local[0][:, paint]
        weight[:, paint] = 1.0
    return reference, weight
