"""What a painted pixel should look like: the colour its new class has nearby in the same image.

The segmentation edit's cross-entropy can be met by generator changes that do not look like the
part (docs/demo-model.md, "the generator's ceiling"): a bigger pupil drawn as a faint grey the
segmenter already calls pupil. The class-colour term of the edit (``EditSettings.lambda_colour``)
pulls each painted pixel towards the colour of its new class in this image, taken where that class
stays: near the pixel first (the same eye's pupil, the skin beside a closed eye), the class's mean
over the image where it is far away. A class the image does not show (glasses added to a face
without any) gives no reference, and those pixels are left to the cross-entropy alone.
"""

from __future__ import annotations

import math

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


def class_colour_reference(image: torch.Tensor, before: np.ndarray,
                           target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference colours of the painted pixels of one image and where they apply.

    Args:
        image: ``[3, R, R]`` float, the image whose colours are the reference (the reconstruction).
        before: int (R, R) labels of ``image``.
        target: int (R, R) edited labels.

    Returns:
        ``reference`` ``[3, R, R]`` (zeros where it does not apply) and ``weight`` ``[1, R, R]``:
        1 on changed pixels whose new class stays somewhere in the image, 0 elsewhere.
    """
    r = image.shape[-1]
    assert image.shape == (3, r, r) and before.shape == target.shape == (r, r)
    reference = torch.zeros_like(image)
    weight = torch.zeros(1, r, r, dtype=image.dtype, device=image.device)
    changed = before != target
    g = min(r, REFERENCE_GRID)
    radius = max(1, math.ceil(3 * g * SIGMA_SHARE))  # the kernel reaches 3σ
    taps = gaussian_taps(2 * radius + 1, g * SIGMA_SHARE)
    for c in np.unique(target[changed]):
        keep = torch.from_numpy((before == c) & (target == c)).to(image)
        if not keep.any():
            continue
        mean = (image * keep).sum((1, 2)) / keep.sum()
        # normalized convolution on the coarse grid: blur(colour · mask) / blur(mask)
        stacked = torch.cat([image * keep, keep[None]])[None]
        coarse = F.interpolate(stacked, size=(g, g), mode="area") if g != r else stacked
        blurred = separable_conv(coarse, taps, padding=radius)
        local = (blurred[:, :3] + GLOBAL_WEIGHT * mean[None, :, None, None]) / (blurred[:, 3:] + GLOBAL_WEIGHT)
        if g != r:
            local = F.interpolate(local, size=(r, r), mode="bilinear", align_corners=False)
        paint = torch.from_numpy(changed & (target == c)).to(image.device)
        reference[:, paint] = local[0][:, paint]
        weight[:, paint] = 1.0
    return reference, weight
