"""Between the user's image (any size/aspect) and the model's square resolution R.

In: center-pad to a square (edge replication, so no artificial border reaches the model), resize
(bicubic, antialiased) to R. Both steps are linear and separable, so they run as one (R × H) and
one (R × W) matrix: a thin 8 × 8192 strip never becomes an 8192² square. Out: resize the
*difference* (result − reconstruction) back, crop, add it to the ORIGINAL source only inside a
feathered edit region, so every pixel outside it is bit-identical to the input; where the user
painted another class, the resized result itself replaces the source (see :func:`blend_back`).
Labels go model→source by nearest neighbour and source→model by an area-weighted majority vote.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

Box = tuple[int, int, int, int]  # (x, y, w, h); w = h = 0 when empty


@dataclass(frozen=True)
class Geometry:
    """Where a (height × width) source sits in the model frame.

    Attributes:
        height, width: source size.
        side: side of the padded square (max of height, width).
        top, left: offset of the source inside the padded square.
        resolution: model resolution R the square is resized to.
    """

    height: int
    width: int
    side: int
    top: int
    left: int
    resolution: int

    @classmethod
    def for_image(cls, height: int, width: int, resolution: int) -> "Geometry":
        side = max(height, width)
        return cls(height, width, side, (side - height) // 2, (side - width) // 2, resolution)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_BASIS_CHUNK = 256  # basis vectors resized at once: bounds the transient to 256 × in_size floats


def _matrix_of(resize_rows, in_size: int) -> torch.Tensor:
    """(out × in) matrix of a linear 1-D resize: column j is ``resize_rows`` of the j-th basis vector.

    ``resize_rows`` maps an (n, in) batch of signals to (n, out); the basis goes through it in
    chunks, so no in × in identity is ever built (8192 → 64 would need 256 MiB for it).
    """
    cols = []
    for start in range(0, in_size, _BASIS_CHUNK):
        n = min(_BASIS_CHUNK, in_size - start)
        basis = torch.zeros(n, in_size)
        basis[torch.arange(n), start + torch.arange(n)] = 1.0
        cols.append(resize_rows(basis).T)
    return torch.cat(cols, dim=1)


@functools.lru_cache(maxsize=16)
def resize_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(out × in) matrix of 1-D bicubic resizing (antialiased when shrinking), as F.interpolate does it.

    Each signal is resized as a 1-row image along its width: a height-1 image is kept exactly,
    a width-1 column is not (torch's antialiased bicubic treats it differently).
    Cached (callers only read it): every embed and blend-back of one image asks for the same sizes.
    """
    return _matrix_of(lambda rows: F.interpolate(rows[:, None, None], size=(1, out_size), mode="bicubic",
                                                 align_corners=False, antialias=out_size < in_size)[:, 0, 0],
                      in_size)


@functools.lru_cache(maxsize=16)
def area_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(out × in) matrix of 1-D area resizing (``F.interpolate(mode="area")``, i.e. adaptive average pooling)."""
    return _matrix_of(lambda rows: F.adaptive_avg_pool1d(rows[:, None], out_size)[:, 0], in_size)


def _fold_padding(matrix: torch.Tensor, offset: int, length: int) -> torch.Tensor:
    """Columns of a (out × side) matrix acting on an edge-padded axis → (out × length) on the unpadded one.

    Edge replication copies the first/last sample into the padding, so the padding's weights add
    to those samples' columns.
    """
    folded = matrix[:, offset:offset + length].clone()
    folded[:, 0] += matrix[:, :offset].sum(1)
    folded[:, -1] += matrix[:, offset + length:].sum(1)
    return folded


def _square_axes(matrix: torch.Tensor, geo: Geometry) -> tuple[torch.Tensor, torch.Tensor]:
    """A (R × side) resize of the padded square as its (R × height) row and (R × width) column matrices."""
    return _fold_padding(matrix, geo.top, geo.height), _fold_padding(matrix, geo.left, geo.width)


def _separable(array: np.ndarray, rows: torch.Tensor, cols: torch.Tensor, chunk_rows: int = 512) -> torch.Tensor:
    """``rows @ array @ cols.T`` over the first two axes of an (H, W[, C]) array, H in chunks of float32."""
    h = array.shape[0]
    acc = None
    for y in range(0, h, chunk_rows):
        part = torch.from_numpy(np.array(array[y:y + chunk_rows], dtype=np.float32))  # a copy: sources may be read-only
        term = torch.tensordot(rows[:, y:y + chunk_rows], part, dims=([1], [0]))  # (out_h, W[, C])
        acc = term if acc is None else acc + term
    return torch.tensordot(cols, acc, dims=([1], [1])).transpose(0, 1)  # (out_h, out_w[, C])


def _nearest_index(out_size: int, in_size: int) -> np.ndarray:
    return np.minimum(((np.arange(out_size) + 0.5) * (in_size / out_size)).astype(np.int64), in_size - 1)


def _to_square(array: np.ndarray, geo: Geometry) -> np.ndarray:
    pad = [(geo.top, geo.side - geo.height - geo.top), (geo.left, geo.side - geo.width - geo.left)]
    return np.pad(array, pad + [(0, 0)] * (array.ndim - 2), mode="edge")


def fit(image: np.ndarray, resolution: int) -> tuple[np.ndarray, Geometry]:
    """uint8 (H, W, 3) → (uint8 (R, R, 3) model input, Geometry)."""
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, f"bad image {image.dtype} {image.shape}"
    geo = Geometry.for_image(image.shape[0], image.shape[1], resolution)
    if geo.side == resolution:
        return _to_square(image, geo), geo
    x = _separable(image, *_square_axes(resize_matrix(geo.side, resolution), geo))
    return x.round().clamp(0, 255).to(torch.uint8).numpy(), geo


def to_source(array: np.ndarray, geo: Geometry) -> np.ndarray:
    """Nearest-neighbour map of a model-grid (R, R[, …]) array to the source grid (H, W[, …])."""
    assert array.shape[:2] == (geo.resolution, geo.resolution), f"expected {geo.resolution}² grid, got {array.shape}"
    rows = _nearest_index(geo.side, geo.resolution)[geo.top:geo.top + geo.height]
    cols = _nearest_index(geo.side, geo.resolution)[geo.left:geo.left + geo.width]
    return array[rows[:, None], cols[None, :]]


def _area(mask: np.ndarray, axes: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Share of each model pixel's footprint covered by a source-grid boolean mask, (R, R);
    ``axes``: ``_square_axes(area_matrix(side, R), geo)``, computed once per edit."""
    return _separable(mask.view(np.uint8), *axes)


def edit_to_model(labels: np.ndarray, source_labels: np.ndarray, model_labels: np.ndarray, geo: Geometry) -> np.ndarray:
    """The user's edited source-size labels → model-grid target labels.

    A model pixel takes an edited label when at least half of its footprint was repainted; its
    label is then the class covering most of the repainted part. Elsewhere it keeps
    ``model_labels``, so unchanged strokes never alter the target through resampling.
    """
    assert labels.shape == source_labels.shape == (geo.height, geo.width)
    changed = labels != source_labels
    target = model_labels.copy()
    if not changed.any():
        return target
    axes = _square_axes(area_matrix(geo.side, geo.resolution), geo)
    best = torch.zeros(geo.resolution, geo.resolution)
    winner = torch.zeros(geo.resolution, geo.resolution, dtype=torch.long)
    for c in np.unique(labels[changed]):
        score = _area(changed & (labels == c), axes)
        winner = torch.where(score > best, int(c), winner)
        best = torch.maximum(best, score)
    take = (_area(changed, axes) >= 0.5).numpy()
    target[take] = winner.numpy()[take].astype(target.dtype)
    return target


def dilate(mask: np.ndarray | torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation by a (2·radius+1)² square (separable max-pools); returns a bool tensor."""
    x = torch.as_tensor(mask).float()[None, None]
    if radius > 0:
        k = 2 * radius + 1
        x = F.max_pool2d(x, (1, k), stride=1, padding=(0, radius))
        x = F.max_pool2d(x, (k, 1), stride=1, padding=(radius, 0))
    return x[0, 0] > 0.5


def feather(mask: np.ndarray, radius: int) -> np.ndarray:
    """Soft alpha: 1 on ``mask``, outside it a box blur of the mask, so it falls from about ½ to 0
    within ``radius`` px.

    The ramp lies wholly outside the mask: the pixels the edit was asked to change get all of it,
    and the ring around them, where a 64² generator blurs its change into the part next to it (the
    iris around a bigger pupil), gets at most half. A ramp that starts at 1 one radius out (the
    mask dilated, then blurred) cost the demo model's edits 0.4 dB against the true targets
    (docs/demo-model.md, *the composite's ring*).
    """
    alpha = np.zeros(mask.shape, np.float32)
    if not mask.any():
        return alpha
    ys, xs = np.nonzero(mask)
    m = 2 * radius  # the ring's blur windows lie inside the crop (only the image's edges cut them)
    y0, y1 = max(ys.min() - m, 0), min(ys.max() + m + 1, mask.shape[0])
    x0, x1 = max(xs.min() - m, 0), min(xs.max() + m + 1, mask.shape[1])
    inner = mask[y0:y1, x0:x1]
    x = torch.from_numpy(inner.astype(np.float32))[None, None]
    if radius > 0:
        k = 2 * radius + 1
        x = F.avg_pool2d(x, (1, k), stride=1, padding=(0, radius), count_include_pad=False)
        x = F.avg_pool2d(x, (k, 1), stride=1, padding=(radius, 0), count_include_pad=False)
    alpha[y0:y1, x0:x1] = np.where(inner, 1.0, x[0, 0].numpy())
    return alpha


def removed_rim(before: np.ndarray, after: np.ndarray, near: int, width: int = 1) -> np.ndarray:
    """The rim of the parts a painting removes: bool, on the labels' grid.

    A part's outline and anti-aliased edge read as its neighbour (the dark rim of an eye is skin),
    so a composite over the painted pixels alone keeps them: a ghost of the open eye around a
    closed lid. A changed pixel whose old class has none of itself within ``near`` pixels of
    ``after`` belongs to a removed part; its rim is the unchanged pixels within ``width`` of it that
    ``after`` labels with a class painted over the part (the skin around a closed eye). A part that
    only grows or shrinks keeps its class nearby and has no rim: the iris around a bigger pupil
    stays the source's.
    """
    assert before.shape == after.shape and before.ndim == 2 and near >= 1 and width >= 1
    changed = before != after
    removed = np.zeros_like(changed)
    for c in np.unique(before[changed]).tolist():
        removed |= changed & (before == c) & ~dilate(after == c, near).numpy()
    if not removed.any():
        return removed
    return dilate(removed, width).numpy() & ~changed & np.isin(after, np.unique(after[removed]))


# The rim test reads the painting on a grid of at most this side (every few pixels of a larger
# photo), so a 12 MP photo costs what a 512² one does.
RIM_GRID = 512


def painted_rim(before: np.ndarray, after: np.ndarray, geo: Geometry, near: int, width: int) -> np.ndarray:
    """:func:`removed_rim` of a source-size painting, bool (H, W); ``near`` and ``width`` in model pixels.

    It reads the source's own labels rather than the model grid's: there, cells the strokes covered
    less than half of keep the reconstruction's labels, and a few stray cells of a closed eye's iris
    would each cancel the rim around them.
    """
    assert before.shape == after.shape == (geo.height, geo.width)
    step = max(1, -(-max(geo.height, geo.width) // RIM_GRID))
    per_model_pixel = geo.side / geo.resolution / step  # grid pixels
    rim = removed_rim(before[::step, ::step], after[::step, ::step], max(1, round(near * per_model_pixel)),
                      max(1, round(width * per_model_pixel)))
    rim = np.repeat(np.repeat(rim, step, 0), step, 1)[:geo.height, :geo.width]
    return rim & (before == after)


def changed_box(a: np.ndarray, b: np.ndarray) -> Box:
    """Bounding box (x, y, w, h) of pixels where two images differ; (0, 0, 0, 0) when identical."""
    diff = (a != b).reshape(a.shape[0], a.shape[1], -1).any(-1)
    if not diff.any():
        return (0, 0, 0, 0)
    ys, xs = np.nonzero(diff.any(1))[0], np.nonzero(diff.any(0))[0]
    return (int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1))


# A drawn pixel whose result moved this many uint8 levels (in some channel) or more is redrawn:
# it takes the result itself (see blend_back).
REDRAWN_LEVELS = 8.0


def blend_back(source: np.ndarray, geo: Geometry, result: np.ndarray, reconstruction: np.ndarray,
               region: np.ndarray, feather_px: int | None = None,
               drawn: np.ndarray | None = None, rim: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, Box]:
    """Composite a model-resolution edit into the full-resolution source.

    Args:
        source: uint8 (H, W, 3), the original image.
        geo: its geometry.
        result, reconstruction: (R, R, 3) model images after/before the edit (uint8 or float 0..255).
        region: bool (R, R), the pixels to composite (Q, or the painted change within it).
        feather_px: feather radius at source size; default ≈ one model pixel (``side / R``), ≥ 1.
        drawn: bool (H, W), pixels (within ``region``) that take the resized result itself instead
            of source + difference where the edit redrew them: those the user repainted with another
            class. There the source shows the part being replaced (an iris where a pupil now is),
            and adding the difference would keep it, together with the reconstruction's error; the
            generator's drawing of the new part is what belongs there. A drawn pixel the result
            moved by less than ``REDRAWN_LEVELS`` mixes the two in proportion, so an edit that left
            it alone leaves the source.
        rim: bool (H, W), the rim of parts the user painted away (:func:`painted_rim`): it joins
            the region and takes the result itself as drawn pixels do.

    Returns (image uint8 (H, W, 3), region at source size bool (H, W), changed box (x, y, w, h)).
    Pixels farther than feather_px from the region are bit-identical to ``source``.
    """
    r = geo.resolution
    assert source.shape == (geo.height, geo.width, 3) and source.dtype == np.uint8
    assert result.shape == reconstruction.shape == (r, r, 3) and region.shape == (r, r)
    region_src = to_source(region.astype(bool), geo)
    if rim is not None:
        assert rim.shape == (geo.height, geo.width), f"rim must be ({geo.height}, {geo.width}), got {rim.shape}"
        region_src = region_src | rim
    radius = max(1, round(geo.side / r)) if feather_px is None else int(feather_px)
    alpha = feather(region_src, radius)
    out = source.copy()
    ys, xs = np.nonzero(alpha.any(1))[0], np.nonzero(alpha.any(0))[0]
    if len(ys) == 0:
        return out, region_src, (0, 0, 0, 0)
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    # resize the difference only over the rows/columns the alpha touches: separable matrices
    a = resize_matrix(r, geo.side)
    ay, ax = a[geo.top + y0:geo.top + y1], a[geo.left + x0:geo.left + x1]

    def to_crop(model_image: np.ndarray) -> np.ndarray:
        return torch.einsum("yh,hwc,xw->yxc", ay, torch.from_numpy(model_image), ax).numpy()

    diff = to_crop(result.astype(np.float32) - reconstruction.astype(np.float32))
    a_crop = alpha[y0:y1, x0:x1, None]
    src = source[y0:y1, x0:x1]
    blended = src.astype(np.float32) + a_crop * diff
    # the pixels that take the result itself, over the crop only (a 12 MP photo's edit touches a few)
    replace = np.zeros(a_crop.shape, bool)
    if drawn is not None:
        assert drawn.shape == (geo.height, geo.width), f"drawn must be ({geo.height}, {geo.width}), got {drawn.shape}"
        replace |= drawn[y0:y1, x0:x1, None]
    if rim is not None:
        replace |= rim[y0:y1, x0:x1, None]
    replace &= region_src[y0:y1, x0:x1, None]
    if replace.any():
        weight = np.clip(np.abs(diff).max(-1, keepdims=True) / REDRAWN_LEVELS, 0, 1) * replace
        blended = weight * to_crop(result.astype(np.float32)) + (1 - weight) * blended
    blended = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(a_crop > 0, blended, src)
    return out, region_src, changed_box(out, source)
