"""Segmentation branch (DatasetGAN): an ensemble of per-pixel MLPs over every generator feature map.

The official code upsamples all feature maps to the output resolution, concatenates them
(~6k channels; 5.9 GiB at 512²) and runs each MLP on every pixel. The first MLP layer is linear
and bilinear upsampling is linear with rows summing to 1, so

    W · concat_i(up(f_i)) + b  ==  Σ_i up(W_i · f_i) + b

where ``W_i`` is the slice of the first-layer weight that reads map ``i``. We therefore project
each map to the hidden width *at its native resolution* and upsample only the (much narrower)
projections — identical maths, a fraction of the memory. With ``context`` > 1 each map at the
output resolution is read over a k×k neighbourhood (its unfolded patches are the "features"), so
its projection is a k×k convolution: still linear, still the same identity. :meth:`Segmenter.forward` can also
evaluate only a box of the output grid (an edit needs logits only inside its region); its
resizes reproduce ``F.interpolate(mode="bilinear", align_corners=False)`` exactly, in training
and editing alike. :meth:`Segmenter.forward_concat` is the straightforward reference.
"""

from __future__ import annotations

import functools
import random

import torch
import torch.nn.functional as F
from torch import nn

from .generator import Generator, GeneratorConfig

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1) on the output grid, half-open

# Maps up to this side are resized by explicit interpolation matrices (fastest on CPU for small
# maps: no layout copies); larger ones by F.interpolate on a window. Both are exact (see tests).
MATRIX_MAX_SIDE = 32


def feature_layout(gcfg: GeneratorConfig) -> tuple[list[int], list[int]]:
    """(channels, resolutions) of the maps ``synthesis(ws)`` returns: one per conv layer."""
    channels, resolutions = [], []
    for res in gcfg.block_resolutions:
        n = 1 if res == 4 else 2
        channels += [gcfg.channels(res)] * n
        resolutions += [res] * n
    return channels, resolutions


def input_layout(gcfg: GeneratorConfig, image_channels: int = 0) -> tuple[list[int], list[int]]:
    """(channels, resolutions) of what a segmenter reads: the feature maps, then the RGB output
    when ``image_channels`` > 0 (``Segmenter.inputs``)."""
    channels, resolutions = feature_layout(gcfg)
    if image_channels:
        channels, resolutions = channels + [image_channels], resolutions + [gcfg.resolution]
    return channels, resolutions


def interpolation_matrix(in_size: int, out_size: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Rows ``start:stop`` of the (out_size × in_size) matrix of 1-D bilinear resizing, align_corners=False.

    Same source-coordinate rule as PyTorch (``(i + 0.5)·in/out − 0.5``, clamped at 0) so
    ``A @ x @ B.T`` equals ``F.interpolate(x, mode="bilinear", align_corners=False)``.
    """
    stop = out_size if stop is None else stop
    i = torch.arange(start, stop, dtype=torch.float64)
    src = ((i + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo
    m = torch.zeros(stop - start, in_size, dtype=torch.float64)
    rows = torch.arange(stop - start)
    m.index_put_((rows, lo), 1 - frac, accumulate=True)
    m.index_put_((rows, hi), frac, accumulate=True)
    return m.float()


def _zoom(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bilinear zoom (align_corners=False) of a channels-last ``[N, h, w, C]`` tensor.

    Channels-last because PyTorch's CPU kernel is ~10× faster in that layout than in NCHW for
    our wide projections.
    """
    x = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=scale, mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1)


def _project(maps: list[torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
    """1x1 convolution of same-size maps ``[N, C_i, h, w]`` (concatenated) by ``weight`` ``[O, ΣC_i]``.

    Returns channels-last ``[N, h, w, O]``; one 2-D matmul (faster on CPU than conv2d or bmm).
    """
    x = torch.cat(maps, 1) if len(maps) > 1 else maps[0]
    n, c, h, w = x.shape
    return torch.mm(x.permute(0, 2, 3, 1).reshape(n * h * w, c), weight.T).view(n, h, w, -1)


def _neighbourhood(x: torch.Tensor, k: int) -> torch.Tensor:
    """``[N, C, h, w]`` → ``[N, C·k², h, w]``: each pixel's k×k patch (edges replicated), channel-major."""
    n, c, h, w = x.shape
    p = k // 2
    return F.unfold(F.pad(x, (p, p, p, p), mode="replicate"), k).view(n, c * k * k, h, w)


def _project_neighbourhood(maps: list[torch.Tensor], weight: torch.Tensor, k: int, box: Box) -> torch.Tensor:
    """:func:`_project` of the maps' k×k neighbourhoods over ``box``, channels-last ``[N, h, w, O]``.

    The box is cut with a margin of k // 2 (replicated where the margin leaves the map, as
    :func:`_neighbourhood` pads the whole map) and convolved once: ``weight`` ``[O, C·k²]`` is
    laid out like the unfolded channels, i.e. a conv2d kernel ``[O, C, k, k]``.
    """
    x = torch.cat(maps, 1) if len(maps) > 1 else maps[0]
    n, c, s, _ = x.shape
    p = k // 2
    y0, y1, x0, x1 = box
    wy0, wy1, wx0, wx1 = max(y0 - p, 0), min(y1 + p, s), max(x0 - p, 0), min(x1 + p, s)
    pads = (wx0 - (x0 - p), x1 + p - wx1, wy0 - (y0 - p), y1 + p - wy1)
    window = F.pad(x[:, :, wy0:wy1, wx0:wx1], pads, mode="replicate") if any(pads) else x[:, :, wy0:wy1, wx0:wx1]
    return F.conv2d(window, weight.view(weight.shape[0], c, k, k)).permute(0, 2, 3, 1)


@functools.lru_cache(maxsize=256)
def _window(in_size: int, out_size: int, start: int, stop: int) -> tuple[torch.Tensor, int, int]:
    """Interpolation rows ``start:stop`` cut to the input range they read: (matrix, lo, hi).

    Cached: an edit evaluates the same box at every step. Callers must not modify the matrix.
    """
    m = interpolation_matrix(in_size, out_size, start, stop)
    used = m.abs().sum(0).nonzero()[:, 0]
    lo, hi = int(used[0]), int(used[-1]) + 1
    return m[:, lo:hi].contiguous(), lo, hi


class Segmenter(nn.Module):
    """Ensemble of ``members`` pixel MLPs ``Linear(ΣC→hidden)→ReLU→Linear(→hidden2)→ReLU→Linear(→classes)``.

    Args:
        feature_channels: channels of each generator feature map, in ``synthesis`` order.
        feature_resolutions: native side of each map (same order).
        num_classes: segmentation classes.
        resolution: side of the predicted label map (the generator's, at most 512 for big models).
        members: ensemble size (paper: 10; our small demo: 3).
        hidden: width of the first hidden layer (DatasetGAN: 128).
        hidden2: width of the second hidden layer (DatasetGAN: 32).
        context: odd side of the neighbourhood over which each map *at the output resolution* is
            read (1: the pixel only, as DatasetGAN). Pixel MLPs see the coarse maps' layout but not
            the fine maps' local shape. Coarser maps are always read per pixel.
        image_channels: > 0 when the generator's RGB output is read too, as one more map after
            the feature maps (it is in ``feature_channels``/``feature_resolutions``; callers pass
            :meth:`inputs`). The image is what the user sees; the last feature maps reach it only
            through the per-sample modulated toRGB.

    The first layer of all members is stored stacked (``proj_weight``: members·hidden × ΣC) so
    one matmul per feature resolution projects for the whole ensemble; later layers are batched
    matmuls (``fc1_weight``: members × hidden2 × hidden, ``fc2_weight``: members × classes × hidden2).
    """

    def __init__(self, feature_channels: list[int], feature_resolutions: list[int], num_classes: int,
                 resolution: int, members: int = 3, hidden: int = 128, hidden2: int = 32, context: int = 1,
                 image_channels: int = 0):
        super().__init__()
        assert len(feature_channels) == len(feature_resolutions) > 0
        assert list(feature_resolutions) == sorted(feature_resolutions), "maps must come in synthesis order"
        if num_classes < 2 or members < 1 or hidden < 1 or hidden2 < 1 or resolution < 1:
            raise ValueError("num_classes ≥ 2, members, hidden, hidden2 and resolution ≥ 1 required")
        if context < 1 or context % 2 == 0:
            raise ValueError(f"context must be an odd number ≥ 1, got {context}")
        self.feature_channels = [int(c) for c in feature_channels]
        self.feature_resolutions = [int(r) for r in feature_resolutions]
        self.num_classes, self.resolution = int(num_classes), int(resolution)
        self.members, self.hidden, self.hidden2 = int(members), int(hidden), int(hidden2)
        self.context, self.image_channels = int(context), int(image_channels)
        if self.image_channels and self.feature_channels[-1] != self.image_channels:
            raise ValueError("the image must be the last map of the layout")
        total = sum(c * self._kernel(r) ** 2 for c, r in zip(self.feature_channels, self.feature_resolutions))
        self.proj_weight = nn.Parameter(torch.empty(members * hidden, total))
        self.proj_bias = nn.Parameter(torch.empty(members * hidden))
        self.fc1_weight = nn.Parameter(torch.empty(members, hidden2, hidden))
        self.fc1_bias = nn.Parameter(torch.empty(members, hidden2))
        self.fc2_weight = nn.Parameter(torch.empty(members, num_classes, hidden2))
        self.fc2_bias = nn.Parameter(torch.empty(members, num_classes))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """nn.Linear's default init (uniform ±1/√fan_in), member by member."""
        for weight, bias in ((self.proj_weight.view(self.members, self.hidden, -1), self.proj_bias.view(self.members, -1)),
                             (self.fc1_weight, self.fc1_bias), (self.fc2_weight, self.fc2_bias)):
            bound = weight.shape[-1] ** -0.5
            with torch.no_grad():
                weight.uniform_(-bound, bound, generator=generator)
                bias.uniform_(-bound, bound, generator=generator)

    def inputs(self, image: torch.Tensor, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """What :meth:`forward` reads from ``synthesis``'s ``(image, features)``."""
        return [*features, image] if self.image_channels else features

    def _kernel(self, map_resolution: int) -> int:
        """Neighbourhood side a map of this resolution is read over."""
        return self.context if map_resolution == self.resolution else 1

    @torch.no_grad()
    def fold_input_scaling(self, mean: list[torch.Tensor], std: list[torch.Tensor]) -> None:
        """Make the first layer read ``x`` as it read ``(x - mean) / std`` (per map, per channel).

        Exact: every path reads a map through a linear layer after replicate-padding or an
        interpolation whose weights sum to 1, both of which commute with a per-channel affine map.
        """
        assert len(mean) == len(std) == len(self.feature_channels)
        scale, shift = [], []
        for m, sd, c, r in zip(mean, std, self.feature_channels, self.feature_resolutions):
            assert m.shape == sd.shape == (c,), f"expected {c} channel statistics, got {tuple(m.shape)}"
            taps = self._kernel(r) ** 2  # neighbourhood columns are channel-major
            scale.append((1 / sd).repeat_interleave(taps))
            shift.append((m / sd).repeat_interleave(taps))
        scale, shift = torch.cat(scale).to(self.proj_weight), torch.cat(shift).to(self.proj_weight)
        self.proj_bias -= self.proj_weight @ shift
        self.proj_weight *= scale

    # ---- bundle contract ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: dict, generator_config: GeneratorConfig) -> "Segmenter":
        allowed = {"num_classes", "resolution", "members", "hidden", "hidden2", "context", "image_channels"}
        unknown = set(cfg) - allowed
        if unknown:
            raise ValueError(f"unknown segmenter config fields {sorted(unknown)}")
        if "num_classes" not in cfg:
            raise KeyError("num_classes")
        kw = {k: int(v) for k, v in cfg.items()}
        kw.setdefault("resolution", min(generator_config.resolution, 512))
        return cls(*input_layout(generator_config, kw.get("image_channels", 0)), **kw)

    def config_dict(self) -> dict:
        return {"num_classes": self.num_classes, "resolution": self.resolution, "members": self.members,
                "hidden": self.hidden, "hidden2": self.hidden2, "context": self.context,
                "image_channels": self.image_channels}

    @classmethod
    def for_generator(cls, generator: Generator, num_classes: int, read_image: bool = False, **kw) -> "Segmenter":
        """A fresh segmenter fitted to ``generator``'s feature maps (output resolution ≤ 512), and to
        its RGB output with ``read_image``."""
        kw.setdefault("resolution", min(generator.resolution, 512))
        if read_image:
            kw["image_channels"] = generator.cfg.img_channels
        return cls(*input_layout(generator.cfg, kw.get("image_channels", 0)), num_classes, **kw)

    # ---- evaluation ----------------------------------------------------------------------------
    def _check(self, features: list[torch.Tensor]) -> None:
        assert len(features) == len(self.feature_channels), \
            f"expected {len(self.feature_channels)} feature maps, got {len(features)}"
        n = features[0].shape[0]
        for f, c, r in zip(features, self.feature_channels, self.feature_resolutions):
            assert f.shape == (n, c, r, r), f"feature map {tuple(f.shape)} != {(n, c, r, r)}"

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """Channels-last pre-ReLU hidden ``[N, h, w, members·hidden]`` → logits ``[members, N, C, h, w]``."""
        n, hh, ww, _ = h.shape
        h = F.relu(h).view(n * hh * ww, self.members, self.hidden).transpose(0, 1)  # [M, P, hidden]
        h = F.relu(torch.baddbmm(self.fc1_bias[:, None], h, self.fc1_weight.transpose(1, 2)))
        out = torch.baddbmm(self.fc2_bias[:, None], h, self.fc2_weight.transpose(1, 2))   # [M, P, C]
        return out.view(self.members, n, hh, ww, self.num_classes).permute(0, 1, 4, 2, 3)

    def _by_resolution(self, features: list[torch.Tensor]):
        """(resolution, maps, first-layer weight slice) per resolution: the maps of one resolution
        are adjacent, so they are projected together and resized once."""
        groups: dict[int, list] = {}
        for f in features:
            groups.setdefault(f.shape[-1], []).append(f)
        offset = 0
        for r, maps in groups.items():
            c = sum(f.shape[1] for f in maps) * self._kernel(r) ** 2
            yield r, maps, self.proj_weight[:, offset:offset + c]
            offset += c

    def forward(self, features: list[torch.Tensor], box: Box | None = None) -> torch.Tensor:
        """Per-member logits ``[members, N, classes, h, w]`` over ``box`` (default: the whole grid).

        Projection trick, with the maps of one resolution projected and summed before a single
        resize. Each map is first cut to the rows/columns the box reads. Small maps (and odd
        ratios) are resized by interpolation matrices restricted to the box; big maps with an
        integer zoom by F.interpolate on the window plus one row/column of context (so the border
        weights match the full-grid resize), then cropped. Every box gives
        ``forward(features)[..., y0:y1, x0:x1]`` (see tests).
        """
        self._check(features)
        s = self.resolution
        y0, y1, x0, x1 = box if box is not None else (0, s, 0, s)
        assert 0 <= y0 < y1 <= s and 0 <= x0 < x1 <= s, f"box {box} outside the {s}² grid"
        hidden = None
        for r, maps, w in self._by_resolution(features):
            if r == s and self.context > 1:
                p = _project_neighbourhood(maps, w, self.context, (y0, y1, x0, x1))
            elif r == s:
                p = _project([f[:, :, y0:y1, x0:x1] for f in maps], w)
            elif r <= MATRIX_MAX_SIDE or s % r:  # interpolation matrices restricted to the box
                (ay, ry0, ry1), (ax, rx0, rx1) = _window(r, s, y0, y1), _window(r, s, x0, x1)
                p = _project([f[:, :, ry0:ry1, rx0:rx1] for f in maps], w)  # [N, h, w, O]
                p = torch.matmul(ay.to(p), p.flatten(2)).unflatten(2, p.shape[2:])  # rows
                p = torch.matmul(ax.to(p), p)                                         # columns
            else:  # integer zoom of a big map: resize a window with 1 row/column of context, crop
                k = s // r
                wy0, wy1 = max(y0 // k - 1, 0), min(-(-y1 // k) + 1, r)
                wx0, wx1 = max(x0 // k - 1, 0), min(-(-x1 // k) + 1, r)
                p = _zoom(_project([f[:, :, wy0:wy1, wx0:wx1] for f in maps], w), scale=k)
                if p.shape[1:3] != (y1 - y0, x1 - x0):
                    p = p[:, y0 - wy0 * k:y1 - wy0 * k, x0 - wx0 * k:x1 - wx0 * k]
            hidden = p if hidden is None else hidden.add_(p)  # in place: add's backward keeps nothing
        return self._head(hidden.add_(self.proj_bias))

    def forward_concat(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Reference (the official way): upsample every map, concatenate, run the MLPs per pixel.

        Maps at the output resolution are unfolded to their ``context`` neighbourhoods first.
        """
        self._check(features)
        s = self.resolution

        def full_grid(f):
            if f.shape[-1] == s:
                return f if self.context == 1 else _neighbourhood(f, self.context)
            return F.interpolate(f, size=(s, s), mode="bilinear", align_corners=False)
        x = torch.cat([full_grid(f) for f in features], dim=1)
        return self._head(_project([x], self.proj_weight) + self.proj_bias)

    @torch.no_grad()
    def probabilities(self, features: list[torch.Tensor], rows_per_tile: int = 64) -> torch.Tensor:
        """Mean of member softmaxes ``[N, classes, S, S]``, computed in row tiles to bound memory."""
        s = self.resolution
        tiles = [self(features, (y, min(y + rows_per_tile, s), 0, s)).softmax(2).mean(0)
                 for y in range(0, s, rows_per_tile)]
        return torch.cat(tiles, dim=2)

    def predict(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Label map ``[N, S, S]`` (int64): argmax of the ensemble's mean softmax."""
        return self.probabilities(features).argmax(1)


def train_segmenter(generator: Generator, ws_list: list[torch.Tensor], labels_list: list[torch.Tensor], *,
                    num_classes: int, segmenter: Segmenter | None = None, steps: int = 400, batch: int = 2,
                    lr: float = 1e-3, seed: int = 0, class_weight_power: float = 0.0, standardize: bool = True,
                    progress=None, **segmenter_kw) -> tuple[Segmenter, list[float]]:
    """Few-shot training (DatasetGAN): cross-entropy on annotated generator samples.

    Args:
        generator: frozen generator; features are computed once, without gradients.
        ws_list: W+ latents ``[1, num_ws, w_dim]`` (e.g. embeddings of annotated renders).
        labels_list: matching label maps ``[S, S]`` (int) at the segmenter's resolution.
        num_classes: classes of the label maps.
        segmenter: model to train in place; by default a new ``Segmenter.for_generator``.
        steps: Adam steps per member.
        batch: images per step (all their pixels; the image order is each member's own shuffle).
        lr: Adam learning rate.
        seed: base seed; member ``m`` is initialized and shuffled with ``seed + m``.
        class_weight_power: cross-entropy class weights ∝ (1 / pixel frequency) ** power over the
            annotations (0: plain CE). mIoU averages classes, so a pupil counts as much as the
            background; 0.5 lifts the small parts without drowning the large ones.
        standardize: train on every input channel standardized over the annotations, then fold the
            scaling into the first layer (:meth:`Segmenter.fold_input_scaling`), so the result reads
            raw maps. The maps differ in scale by orders of magnitude while Adam moves every weight
            at one pace; on the demo model's 80 held-out renders (5×5 + RGB) mIoU 0.703 → 0.714.
        progress: optional ``progress(step, total)`` over all members' steps.
        segmenter_kw: constructor overrides for a new segmenter (members, hidden, …).

    Returns the trained segmenter (eval mode) and the mean loss per step (averaged over members).
    """
    assert len(ws_list) == len(labels_list) > 0, "need as many label maps as latents"
    seg = segmenter or Segmenter.for_generator(generator, num_classes, **segmenter_kw)
    s = seg.resolution
    with torch.no_grad():
        feats = [seg.inputs(*generator.synthesis(ws)) for ws in ws_list]
    feats = [torch.cat(maps, 0) for maps in zip(*feats)]  # one tensor per layer: [n_images, C, r, r]
    labels = torch.stack([torch.as_tensor(l, dtype=torch.long) for l in labels_list]).to(feats[0].device)
    assert labels.shape[1:] == (s, s), f"labels must be {s}×{s}, got {tuple(labels.shape[1:])}"
    assert int(labels.max()) < seg.num_classes, "label id ≥ num_classes"

    if standardize:
        mean = [f.mean((0, 2, 3)) for f in feats]
        std = [f.std((0, 2, 3)) for f in feats]
        std = [torch.where(sd > 1e-6, sd, torch.ones_like(sd)) for sd in std]  # a constant channel stays as is
        feats = [(f - m[:, None, None]) / sd[:, None, None] for f, m, sd in zip(feats, mean, std)]
    weight = _class_weights(labels, seg.num_classes, class_weight_power)
    trained = Segmenter(seg.feature_channels, seg.feature_resolutions, seg.num_classes, s, 1, seg.hidden, seg.hidden2,
                        seg.context, seg.image_channels)
    trained = trained.to(feats[0].device)
    history = [0.0] * steps
    n = labels.shape[0]
    for m in range(seg.members):
        gen = torch.Generator().manual_seed(seed + m)
        trained.reset_parameters(gen)
        rng = random.Random(seed + m)
        opt = torch.optim.Adam(trained.parameters(), lr=lr)
        order: list[int] = []
        for step in range(steps):
            if len(order) < batch:
                order += rng.sample(range(n), n)
            idx, order = order[:batch], order[batch:]
            logits = trained([f[idx] for f in feats])[0]
            loss = F.cross_entropy(logits, labels[idx], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history[step] += loss.item() / seg.members
            if progress is not None:
                progress(m * steps + step + 1, seg.members * steps)
        _copy_member(trained, seg, m)
    if standardize:
        seg.fold_input_scaling(mean, std)
    return seg.eval(), history


def _class_weights(labels: torch.Tensor, num_classes: int, power: float) -> torch.Tensor | None:
    """(1 / frequency) ** power per class, scaled so the average annotated pixel weighs 1; absent classes get 0."""
    if power == 0:
        return None
    counts = torch.bincount(labels.flatten(), minlength=num_classes).double()
    weight = torch.where(counts > 0, (counts.sum() / counts.clamp(min=1)) ** power, torch.zeros_like(counts))
    return (weight * counts.sum() / (weight * counts).sum()).float()


@torch.no_grad()
def _copy_member(single: Segmenter, ensemble: Segmenter, m: int) -> None:
    h = ensemble.hidden
    ensemble.proj_weight[m * h:(m + 1) * h] = single.proj_weight
    ensemble.proj_bias[m * h:(m + 1) * h] = single.proj_bias
    for name in ("fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"):
        getattr(ensemble, name)[m] = getattr(single, name)[0]
