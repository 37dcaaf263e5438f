"""Editing by segmentation: the conditional latent optimization (Q and the metrics: :mod:`editgan.regions`).

Given W+ ``ws`` of an embedded image and edited labels, find ``delta`` such that
G(ws + delta) (a) is segmented as the edited labels inside Q and (b) still looks like the
reconstruction outside Q. Loss (EditGAN):

    λ_rgb · (λ_lpips · perceptual + λ_mse · MSE)   outside Q, vs the reconstruction
    + λ_ce · cross-entropy                          inside Q, vs the edited labels
    + λ_colour · MSE                                on the painted pixels, vs their new class's
                                                    colour nearby (:mod:`editgan.class_colours`)

where a bundle may also keep the appearance of Q's pixels away from any changed label
(``EditSettings.keep_q``). The defaults (λ_colour = keep_q = 0) are the paper's: Q entirely free.

The same objective drives preset refinement (:mod:`editgan.presets`); the optimization loop
(:func:`optimize_latent`, with progress and cancellation) also drives the embedding.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .class_colours import PartColours, class_colour_reference
from .generator import Generator
from .geometry import dilate
from .regions import class_region, leak_metrics, region_iou, region_radius, touched_classes
from .imageio import to_uint8
from .segmenter import Segmenter

Progress = Callable[..., None]          # progress(step, total, preview=None)
ShouldCancel = Callable[[], bool]
PREVIEW_EVERY = 5
PREVIEW_MAX_SIDE = 128


class Cancelled(Exception):
    """``should_cancel()`` returned True; the computation stopped and nothing was changed."""


# Images per gradient-free synthesis when scoring candidate starts: one at 512², 64 at 64².
CANDIDATE_PIXELS = 512 * 512
PAPER_LR = 0.02
WARMUP_FRACTION = 0.3


@dataclass(frozen=True)
class EditSettings:
    """Loss weights and optimizer of a segmentation edit (EditGAN paper/code defaults)."""

    lambda_rgb: float = 15.0
    lambda_lpips: float = 10.0
    lambda_mse: float = 5.0
    lambda_ce: float = 1.0
    lr: float = PAPER_LR
    warmup: float = WARMUP_FRACTION  # 0 = the paper's constant lr
    # Weight of the appearance loss on the pixels of Q whose label stays and that lie farther than
    # region_radius from a changed one (e.g. the skin around a smile). 0 = the paper, where all of
    # Q is free. It pays only where the result is composited over all of Q: the 160k demo model,
    # composited so, gained -0.64 -> +0.19 dB at 0.5; composited over the painted change (as now),
    # the 219k one loses 0.4-0.6 dB at 0.5 (docs/demo-model.md). A bundle may set it (``edit_defaults``).
    keep_q: float = 0.0
    # Weight of the class-colour term: the painted pixels' squared distance (in [-1, 1] units,
    # mean over them) to the colour their new class has nearby in the reconstruction. 0 = the paper.
    lambda_colour: float = 0.0
    # Share of the cross-entropy on Q's *changed* pixels, the rest spread over Q's others. 0 = the
    # paper: every pixel of Q weighs the same, so a pupil's ring of new pixels is a few percent of
    # the loss and the CE is met by keeping the rest of Q as it was.
    ce_change_share: float = 0.0

    def replace(self, **overrides) -> "EditSettings":
        """Copy with overrides; unknown names, non-finite or negative values (lr ≤ 0) raise ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(f"unknown edit setting {key!r} (known: {sorted(known)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (key == "lr" and value == 0) or (key == "ce_change_share" and value > 1):
                raise ValueError(f"{key} must be a finite number ≥ 0 (lr > 0, ce_change_share ≤ 1), got {value!r}")
        return dataclasses.replace(self, **{k: float(v) for k, v in overrides.items()})


# ---- optimization ----------------------------------------------------------------------------
def preview(img: torch.Tensor) -> np.ndarray:
    """Small uint8 RGB (side ≤ 128) of a generator image ``[1, 3, R, R]``."""
    if img.shape[-1] > PREVIEW_MAX_SIDE:
        img = F.interpolate(img, size=(PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), mode="area")
    return to_uint8(img[0])


@dataclass
class OptimResult:
    delta: torch.Tensor       # best delta [1, num_ws, w_dim]
    best_step: int            # optimizer updates behind the best state (0: the initial one)
    losses: list[float]       # total loss of states 0..steps


def optimize_latent(objective: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], init: torch.Tensor,
                    steps: int, lr: float, progress: Progress | None = None,
                    should_cancel: ShouldCancel | None = None, warmup: float = WARMUP_FRACTION) -> OptimResult:
    """Adam on a latent offset; keeps the state with the lowest loss.

    ``objective(delta) -> (loss, image)`` is evaluated on states 0..steps (the last without
    gradients); an objective that accumulated ``delta.grad`` itself returns its loss detached
    (see :class:`EditObjective`). ``should_cancel`` is checked before each evaluation (→ :class:`Cancelled`);
    ``progress(step, steps, preview)`` follows each update, with a preview every 5 steps.
    """
    assert steps >= 0  # 0: just evaluate the starting point
    delta = init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([delta], lr=lr)
    # Linear lr warm-up over the first ``warmup`` fraction of the steps: Adam's first updates move
    # every W+ coordinate by about lr at once, which overshot on the demo model (edit loss 0.36 →
    # 0.71 at lr 0.02, so a 10-step edit ended at its start and changed nothing).
    warmup = max(1, round(warmup * steps))
    best, best_step, losses = None, 0, []
    for t in range(steps + 1):
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        opt.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(t < steps):
            loss, img = objective(delta)
        losses.append(float(loss.detach()))
        if best is None or losses[-1] < losses[best_step]:
            best, best_step = delta.detach().clone(), t
        if t == steps:
            break
        if loss.requires_grad:
            loss.backward()
        opt.param_groups[0]["lr"] = lr * min(1.0, (t + 1) / warmup)
        opt.step()
        if progress is not None:
            show = (t + 1) % PREVIEW_EVERY == 0 or t + 1 == steps
            progress(t + 1, steps, preview(img.detach()) if show else None)
    return OptimResult(best, best_step, losses)


def _to_grid(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a bool mask to ``size``² keeping every touched cell (area > 0)."""
    if mask.shape[0] == size:
        return mask
    x = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (F.interpolate(x, size=(size, size), mode="area")[0, 0] > 0).numpy()


def _grid_index(in_size: int, size: int) -> np.ndarray:
    """Nearest source row/column of each of ``size`` rows/columns resampled from ``in_size``."""
    return np.minimum(((np.arange(size) + 0.5) * in_size / size).astype(np.int64), in_size - 1)


def _labels_to_grid(labels: np.ndarray, size: int) -> np.ndarray:
    idx = _grid_index(labels.shape[0], size)
    return labels[idx[:, None], idx[None, :]]


class EditObjective:
    """The EditGAN loss of ``ws + delta``; everything that does not depend on delta is precomputed.

    ``K`` faces may share the one delta (a preset learned on several faces): the loss is then the
    mean of their losses, evaluated in one batched synthesis.

    Args:
        generator, segmenter, perceptual: frozen models (perceptual: ``(x, y) -> (N,)``).
        ws: latents ``[K, num_ws, w_dim]``.
        reconstruction: G(ws) ``[K, 3, R, R]`` in [-1, 1], the appearance to keep.
        before: the faces' current labels, int (K, R, R).
        region: Q of each face, bool (K, R, R), none empty.
        target: edited labels, int (K, R, R); only their values inside Q matter.
        settings: loss weights.
        faces_per_batch: faces per synthesis (default: all K at once). With fewer, a call with
            gradients enabled runs the faces chunk by chunk and accumulates ``delta.grad`` itself
            (memory of one chunk instead of K faces; the same loss and gradient), and returns the
            loss detached — :func:`optimize_latent` then skips its own backward.
        should_cancel: checked between chunks (a step of 8 faces at 512² takes half a minute).
        part_colours: per face, colours in [-1, 1] its painted pixels follow besides the
            reconstruction's own: the user's and the domain's (see :func:`class_colour_reference`;
            weighed by ``lambda_colour``).
    """

    def __init__(self, generator: Generator, segmenter: Segmenter, perceptual, ws: torch.Tensor,
                 reconstruction: torch.Tensor, before: np.ndarray, region: np.ndarray, target: np.ndarray,
                 settings: EditSettings, faces_per_batch: int | None = None,
                 should_cancel: ShouldCancel | None = None, part_colours: list[PartColours] | None = None):
        r, s, k = generator.resolution, segmenter.resolution, ws.shape[0]
        assert ws.shape == (k, generator.num_ws, generator.w_dim)
        assert reconstruction.shape == (k, 3, r, r) and before.shape == region.shape == target.shape == (k, r, r)
        assert region.any(axis=(1, 2)).all(), "empty edit region"
        assert faces_per_batch is None or faces_per_batch >= 1
        self.generator, self.segmenter, self.perceptual, self.settings = generator, segmenter, perceptual, settings
        self.ws, self.reconstruction = ws.detach(), reconstruction.detach()
        self.faces_per_batch = k if faces_per_batch is None else min(k, faces_per_batch)
        self.should_cancel = should_cancel
        device = ws.device
        # appearance weight per pixel: 1 outside Q, keep_q on Q's unchanged pixels, 0 near a change
        near_change = np.stack([dilate(b != t, region_radius(r)).numpy() for b, t in zip(before, target)])
        weight = np.where(region, settings.keep_q, 1.0) * ~(near_change & region)
        self.rgb_weight = torch.from_numpy(weight.astype(np.float32)).to(device)[:, None]
        part_colours = [None] * k if part_colours is None else part_colours
        assert len(part_colours) == k
        references = [class_colour_reference(rec, b, t, colours)
                      for rec, b, t, colours in zip(self.reconstruction, before, target, part_colours)]
        self.colour_reference = torch.stack([ref for ref, _ in references])
        colour_weight = torch.stack([w for _, w in references])
        self.colour_weight = colour_weight / (3 * colour_weight.sum((1, 2, 3), keepdim=True)).clamp(min=1)
        region_s = np.stack([_to_grid(q, s) for q in region])
        target_s = np.stack([_labels_to_grid(t, s) for t in target])
        ys, xs = np.nonzero(region_s.any((0, 2)))[0], np.nonzero(region_s.any((0, 1)))[0]
        self.box = (int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1)  # union of the faces' boxes
        y0, y1, x0, x1 = self.box
        changed_s = np.stack([_to_grid(b != t, s) for b, t in zip(before, target)])
        weights = ce_weights(region_s, changed_s, settings.ce_change_share)[:, y0:y1, x0:x1]
        self.ce_weight = torch.from_numpy(np.ascontiguousarray(weights)).to(device)  # a weighted sum, no boolean gather
        self.ce_target = torch.from_numpy(target_s[:, y0:y1, x0:x1].astype(np.int64)).to(device)[None, :, None]

    def per_image(self, delta: torch.Tensor, faces: slice = slice(None)) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Unweighted loss terms ``{rgb, ce, colour}`` (each ``[B]``) and the images of ``ws + delta``.

        ``delta`` is ``[1 or B, num_ws, w_dim]`` against the ``faces`` chunk (``B`` faces), or ``B``
        offsets against a single face (candidate starts, see :meth:`candidate_losses`).
        """
        st = self.settings
        ws, recon = self.ws[faces], self.reconstruction[faces]
        img, features = self.generator.synthesis(ws + delta)
        b = img.shape[0]
        recon = recon.expand(b, -1, -1, -1)
        kept = recon + self.rgb_weight[faces] * (img - recon)  # weight 0: no RGB loss
        rgb = st.lambda_lpips * self.perceptual(kept, recon) + st.lambda_mse * (kept - recon).pow(2).flatten(1).mean(1)
        logits = self.segmenter(self.segmenter.inputs(img, features), self.box)  # [members, B, C, h, w]
        m = logits.shape[0]
        # cross-entropy per member and image; the target index is broadcast over members, not copied
        target = self.ce_target[:, faces].expand(m, b, -1, -1, -1)
        nll = -logits.log_softmax(2).gather(2, target)[:, :, 0]
        ce = (nll * self.ce_weight[faces]).sum((0, 2, 3)) / m
        colour = (self.colour_weight[faces] * (img - self.colour_reference[faces]).pow(2)).sum((1, 2, 3))
        return dict(rgb=rgb, ce=ce, colour=colour), img

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The total loss of unweighted ``terms``."""
        st = self.settings
        return st.lambda_rgb * terms["rgb"] + st.lambda_ce * terms["ce"] + st.lambda_colour * terms["colour"]

    def terms(self, delta: torch.Tensor, faces: slice = slice(None)) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Loss terms ({rgb, ce, colour, total}) and the image of ``ws + delta``.

        ``faces``: a chunk of the K faces; its terms are its share of the whole loss (the chunks'
        terms sum to those of all faces, each face weighing 1/K).
        """
        k = self.ws.shape[0]
        per_image, img = self.per_image(delta, faces)
        terms = {name: value.sum() / k for name, value in per_image.items()}
        return dict(terms, total=self.weighted(terms)), img

    @torch.no_grad()
    def candidate_losses(self, deltas: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """Total loss of each of ``deltas`` ``[N, num_ws, w_dim]`` for a single face, ``batch`` per
        synthesis (default: :data:`CANDIDATE_PIXELS` worth of images, all 24 demo candidates at 64²)."""
        assert self.ws.shape[0] == 1, "candidate starts are scored for one face"
        batch = batch or max(1, CANDIDATE_PIXELS // self.generator.resolution ** 2)
        return torch.cat([self.weighted(self.per_image(deltas[i:i + batch])[0])
                          for i in range(0, deltas.shape[0], batch)])

    def __call__(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, step = self.ws.shape[0], self.faces_per_batch
        if step >= k:
            terms, img = self.terms(delta)
            return terms["total"], img
        total, first = 0.0, None
        for start in range(0, k, step):
            if start and self.should_cancel is not None and self.should_cancel():
                raise Cancelled()
            terms, img = self.terms(delta, slice(start, start + step))
            if torch.is_grad_enabled() and delta.requires_grad:
                terms["total"].backward()  # frees this chunk's graph before the next one is built
            total += float(terms["total"].detach())
            first = img.detach() if first is None else first
        return torch.tensor(total), first


@dataclass
class EditOutcome:
    """A finished edit at model resolution (numpy arrays except the latents)."""

    ws: torch.Tensor          # [1, num_ws, w_dim] = session ws + delta
    delta: torch.Tensor       # [1, num_ws, w_dim]
    image: np.ndarray         # uint8 (R, R, 3)
    labels: np.ndarray        # uint8 (R, R), the segmentation of the result
    region: np.ndarray        # bool (R, R), Q
    composite: np.ndarray     # bool (R, R) ⊆ Q, what is blended into the source
    classes: list[int]        # class ids the edit targets
    metrics: dict


@torch.no_grad()
def render_probabilities(generator: Generator, segmenter: Segmenter | None,
                         ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """G(ws) ``[1,3,R,R]`` and the ensemble's mean softmax ``[1,C,R,R]`` (nearest-resized from the
    segmenter grid; None without a segmenter)."""
    img, features = generator.synthesis(ws)
    if segmenter is None:
        return img, None
    probs = segmenter.probabilities(segmenter.inputs(img, features))
    idx = torch.from_numpy(_grid_index(probs.shape[-1], generator.resolution)).to(probs.device)
    return img, probs[:, :, idx][:, :, :, idx]


def labels_of(probs: torch.Tensor | None) -> np.ndarray | None:
    """uint8 (R, R) labels of the first image of ``probs`` ``[N,C,R,R]`` (None stays None)."""
    return None if probs is None else probs[0].argmax(0).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def render(generator: Generator, segmenter: Segmenter | None, ws: torch.Tensor) -> tuple[torch.Tensor, np.ndarray | None]:
    """G(ws) ``[1,3,R,R]`` and its labels uint8 (R, R) (nearest-resized from the segmenter grid)."""
    img, probs = render_probabilities(generator, segmenter, ws)
    return img, labels_of(probs)


def segmentation_edit(generator: Generator, segmenter: Segmenter, perceptual, ws: torch.Tensor,
                      reconstruction: np.ndarray, before: np.ndarray, target: np.ndarray, *,
                      classes: list[int] | None = None, init_delta: torch.Tensor | None = None,
                      starts: list[torch.Tensor] | None = None, steps: int = 30,
                      settings: EditSettings = EditSettings(), progress: Progress | None = None,
                      should_cancel: ShouldCancel | None = None,
                      part_colours: PartColours | None = None) -> EditOutcome:
    """Optimize ``delta`` so G(ws + delta) matches ``target`` labels inside Q and the reconstruction outside.

    Args:
        ws: session latent ``[1, num_ws, w_dim]``.
        reconstruction: uint8 (R, R, 3), G(ws) as the user saw it (the leak reference).
        before: uint8 (R, R) labels of the reconstruction.
        target: uint8 (R, R) edited labels.
        classes: the classes defining Q (default: those touched by ``before`` → ``target``).
        init_delta: starting offset (a preset's δ when refining); default zeros.
        starts: other candidate starting offsets (e.g. presets at a few strengths). The edit
            starts from whichever of ``init_delta`` and these has the lowest loss; ``metrics["start"]``
            is its index in ``starts`` (None: ``init_delta``). A 30-step edit from zero often stops
            short of a change a learned vector already draws (closing the eyes, opening the mouth).
        steps, settings, progress, should_cancel: see :func:`optimize_latent` / :class:`EditSettings`.
        part_colours: the user's and the domain's colours of painted classes, see :class:`EditObjective`.

    The outcome's ``composite`` (what the caller blends into the source, feathered) is the painted
    change within Q (the editor adds the rim of parts painted away, :func:`editgan.regions.rim_distances`). Q also
    holds every other pixel of a touched class (all the skin of a smile), where the generator's
    changes are side effects; a 64² generator draws a bigger pupil as a blurred dark blob, so even a
    one-pixel ring around the change darkens the iris.
    """
    t0 = time.perf_counter()
    r = generator.resolution
    assert reconstruction.shape == (r, r, 3) and before.shape == target.shape == (r, r)
    classes = touched_classes(before, target) if classes is None else sorted(classes)
    region = class_region(before, target, classes, region_radius(r))
    objective = edit_objective(generator, segmenter, perceptual, ws, before[None], region[None], target[None], settings,
                               part_colours=[part_colours])
    init = torch.zeros_like(ws) if init_delta is None else init_delta.to(ws)
    chosen = None
    if starts:
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        losses = objective.candidate_losses(torch.cat([init, *(d.to(ws) for d in starts)]))
        best = int(losses.argmin())
        if best > 0:
            chosen, init = best - 1, starts[best - 1].to(ws)
    opt = optimize_latent(objective, init, steps, settings.lr, progress, should_cancel, warmup=settings.warmup)
    new_ws = ws.detach() + opt.delta
    img, labels = render(generator, segmenter, new_ws)
    image = to_uint8(img[0])
    metrics = dict(iou=region_iou(labels, target, region, classes), **leak_metrics(image, reconstruction, region),
                   steps=steps, best_step=opt.best_step, start=chosen, seconds=time.perf_counter() - t0)
    return EditOutcome(new_ws, opt.delta, image, labels, region, region & (before != target), classes, metrics)


def ce_weights(region: np.ndarray, changed: np.ndarray, change_share: float) -> np.ndarray:
    """Per-pixel cross-entropy weights ``[K, h, w]`` float32, summing to 1 per face over its Q.

    ``change_share`` 0: uniform over Q (the paper). Otherwise the changed pixels of Q share that
    much of the weight and Q's other pixels the rest (all of it to one side when the other is empty).
    """
    assert region.shape == changed.shape and region.ndim == 3 and 0 <= change_share <= 1
    q = region.astype(np.float32)
    if change_share == 0:
        return q / np.maximum(q.sum((1, 2), keepdims=True), 1)
    new = (region & changed).astype(np.float32)
    rest = q - new
    n_new, n_rest = new.sum((1, 2), keepdims=True), rest.sum((1, 2), keepdims=True)
    share = np.where(n_rest == 0, 1.0, np.where(n_new == 0, 0.0, change_share)).astype(np.float32)
    return share * new / np.maximum(n_new, 1) + (1 - share) * rest / np.maximum(n_rest, 1)


def edit_objective(generator: Generator, segmenter: Segmenter, perceptual, ws: torch.Tensor, before: np.ndarray,
                   region: np.ndarray, target: np.ndarray, settings: EditSettings,
                   faces_per_batch: int | None = None, should_cancel: ShouldCancel | None = None,
                   part_colours: list[PartColours] | None = None) -> EditObjective:
    """:class:`EditObjective` of faces ``ws`` ``[K, num_ws, w_dim]`` against their own reconstructions.

    The reference is the float G(ws), so uint8 rounding never enters the loss.
    """
    with torch.no_grad():  # one face at a time: K faces at 512² would not fit at once
        reconstruction = torch.cat([render(generator, None, ws[i:i + 1])[0] for i in range(ws.shape[0])])
    return EditObjective(generator, segmenter, perceptual, ws, reconstruction, before, region, target, settings,
                         faces_per_batch, should_cancel, part_colours)
