"""The edit region Q and the figures an edit is judged by (numpy in, numpy out).

Q holds every changed pixel and every pixel of a class touched by the change, before or after,
dilated by a few pixels (:func:`region_radius`). Inside it an edit may change the image; outside,
the *leak* is the share of pixels it changed anyway, and the *target IoU* scores its labels.
"""

from __future__ import annotations

import numpy as np

from .geometry import dilate

LEAK_THRESHOLD = 8                      # uint8 levels, i.e. 8/255


def region_radius(resolution: int) -> int:
    """Dilation of Q: 3 px at 512², scaled with resolution, at least 1 px."""
    return max(1, round(3 * resolution / 512))


def rim_distances(resolution: int) -> dict[str, int]:
    """``near`` and ``width`` (model pixels) of :func:`editgan.geometry.painted_rim`: a part with none
    of its class left within 1/16 of the side is removed (4 px at 64²), and its rim is one region
    radius wide (1 px at 64², 3 at 512²)."""
    return dict(near=max(1, round(resolution / 16)), width=region_radius(resolution))


def touched_classes(before: np.ndarray, after: np.ndarray) -> list[int]:
    """Sorted class ids present on either side of a changed pixel."""
    changed = before != after
    return sorted(set(np.unique(before[changed]).tolist()) | set(np.unique(after[changed]).tolist()))


def class_region(before: np.ndarray, after: np.ndarray, classes: list[int], radius: int) -> np.ndarray:
    """Q: every pixel of ``classes`` before or after, dilated by ``radius`` (bool, same shape).

    With ``classes = touched_classes(before, after)`` this contains every changed pixel.
    """
    assert before.shape == after.shape and before.ndim == 2
    q = np.isin(before, classes) | np.isin(after, classes)
    return dilate(q, radius).numpy()


def edit_region(before: np.ndarray, after: np.ndarray, radius: int) -> np.ndarray:
    """Q of a segmentation edit: changed pixels ∪ all pixels of the touched classes, dilated."""
    return class_region(before, after, touched_classes(before, after), radius)


def region_iou(pred: np.ndarray, target: np.ndarray, region: np.ndarray, classes: list[int]) -> float:
    """Mean over ``classes`` of the IoU of predicted vs target masks inside ``region``.

    A class absent from both inside the region (e.g. removed, and predicted removed) scores 1.
    """
    scores = []
    for c in classes:
        p, t = (pred == c) & region, (target == c) & region
        union = np.count_nonzero(p | t)
        scores.append(1.0 if union == 0 else np.count_nonzero(p & t) / union)
    return float(np.mean(scores)) if scores else 1.0


def leak(result: np.ndarray, reconstruction: np.ndarray, region: np.ndarray) -> float:
    """Share of pixels outside ``region`` where some channel changed by more than 8/255.

    When Q covers nearly the picture (hair or glasses touch the background and the skin) the share
    is of a few dozen pixels; edit metrics carry ``outside_q``, the count, so that a benchmark can
    pool leaked pixels over edits instead of averaging such ratios.
    """
    outside = ~region
    if not outside.any():
        return 0.0
    changed = (np.abs(result.astype(np.int16) - reconstruction.astype(np.int16)) > LEAK_THRESHOLD).any(-1)
    return float(np.count_nonzero(changed & outside) / np.count_nonzero(outside))


def leak_metrics(result: np.ndarray, reconstruction: np.ndarray, region: np.ndarray) -> dict:
    """``{"leak", "outside_q"}`` of an edit's metrics: the leak and the pixel count it is a share of."""
    return {"leak": leak(result, reconstruction, region), "outside_q": int(np.count_nonzero(~region))}


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 images (optionally over ``mask`` pixels only); inf when identical."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d[mask].mean() if mask is not None else d.mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
