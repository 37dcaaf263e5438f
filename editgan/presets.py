"""Editing vectors ("presets"): store, load, compose, apply and refine.

A preset is δ = w_edit − w (``num_ws × w_dim``), the classes it edits and a default strength,
stored as ``<name>.npy`` (``np.save``; read with ``allow_pickle=False``) + ``<name>.json``
(``{name, classes, default_strength, created, source}``) in the bundle's ``presets/`` folder.
A preset is learned from one edit or, better, from the same edit on several faces
(:func:`learn_vector`). Several presets compose by summing ``s_i · δ_i``. Self-supervised
refinement (EditGAN §3.3): the target labels are the segmentation of G(ws + Σ s_i δ_i) itself,
the region Q is every pixel of the vectors' classes before ∪ after, and the usual edit loss keeps
everything outside Q.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .bundle import BundleError, sanitize_name
from .class_colours import PartColours
from .editing import (PAPER_LR, Cancelled, EditOutcome, EditSettings, Progress, ShouldCancel, edit_objective,
                      optimize_latent, render, segmentation_edit)
from .regions import class_region, leak, leak_metrics, region_iou, region_radius, touched_classes
from .generator import Generator
from .imageio import to_uint8
from .segmenter import Segmenter


class PresetError(ValueError):
    """A preset name is invalid or unknown, or its files are malformed."""


@dataclass
class Preset:
    """An editing vector and its metadata.

    Attributes:
        name: file stem (already sanitized).
        delta: float32 (num_ws, w_dim).
        classes: names of the classes it edits (they define the refinement region).
        default_strength: strength the UI starts from.
        created: ISO-8601 UTC timestamp.
        source: free text: how it was made.
    """

    name: str
    delta: np.ndarray
    classes: list[str]
    default_strength: float = 1.0
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    source: str = ""

    def metadata(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "default_strength": float(self.default_strength),
                "created": self.created, "source": self.source}


def _paths(directory: Path, name: str) -> tuple[Path, Path]:
    """``<name>.json``, ``<name>.npy``; only exact sanitized stems are accepted (no ``../``)."""
    try:
        ok = isinstance(name, str) and sanitize_name(name) == name
    except BundleError:
        ok = False
    if not ok:
        raise PresetError(f"invalid preset name {name!r}")
    return Path(directory) / f"{name}.json", Path(directory) / f"{name}.npy"


def save_preset(directory: str | Path, preset: Preset) -> Path:
    """Write (or overwrite) a preset; each file is written to a temporary name, then renamed."""
    js, npy = _paths(Path(directory), preset.name)
    delta = np.asarray(preset.delta, dtype=np.float32)
    if delta.ndim != 2 or not np.isfinite(delta).all():
        raise PresetError("delta must be a finite 2-D (num_ws, w_dim) array")
    if not math.isfinite(preset.default_strength):
        raise PresetError("default_strength must be finite")
    js.parent.mkdir(parents=True, exist_ok=True)
    with open(npy.with_suffix(".npy.tmp"), "wb") as f:
        np.save(f, delta, allow_pickle=False)
    os.replace(npy.with_suffix(".npy.tmp"), npy)
    _write_metadata(js, preset.metadata())
    return js


def set_default_strength(directory: str | Path, name: str, strength: float) -> None:
    """Change a stored preset's default strength: only its JSON is rewritten, the vector stays."""
    if not math.isfinite(strength):
        raise PresetError("default_strength must be finite")
    meta = {**read_metadata(directory, name), "default_strength": float(strength)}
    _write_metadata(_paths(Path(directory), name)[0], meta)


def _write_metadata(js: Path, meta: dict) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    js.with_suffix(".json.tmp").write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(js.with_suffix(".json.tmp"), js)


def read_metadata(directory: str | Path, name: str) -> dict:
    """The validated JSON of a preset (no array loaded)."""
    js, npy = _paths(Path(directory), name)
    if not js.is_file() or not npy.is_file():
        raise PresetError(f"unknown preset {name!r}")
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PresetError(f"{js}: not valid JSON ({e})") from None
    ok = (isinstance(meta, dict) and meta.get("name") == name and isinstance(meta.get("classes"), list)
          and all(isinstance(c, str) for c in meta["classes"])
          and isinstance(meta.get("default_strength"), (int, float)) and math.isfinite(meta["default_strength"]))
    if not ok:
        raise PresetError(f"{js}: needs 'name' (= file stem), 'classes' (list of names), finite 'default_strength'")
    return {"name": name, "classes": meta["classes"], "default_strength": float(meta["default_strength"]),
            "created": str(meta.get("created", "")), "source": str(meta.get("source", ""))}


def load_preset(directory: str | Path, name: str, shape: tuple[int, int] | None = None) -> Preset:
    """Load a preset; ``shape`` (num_ws, w_dim) is checked when given."""
    meta = read_metadata(directory, name)
    npy = _paths(Path(directory), name)[1]
    try:
        delta = np.load(npy, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise PresetError(f"{npy}: not a plain .npy array ({e})") from None
    if delta.dtype != np.float32 or delta.ndim != 2 or (shape is not None and delta.shape != tuple(shape)):
        raise PresetError(f"{npy}: expected float32 {shape or '(num_ws, w_dim)'}, got {delta.dtype} {delta.shape}")
    if not np.isfinite(delta).all():
        raise PresetError(f"{npy}: contains NaN or infinite values")
    return Preset(delta=delta, **meta)


def list_presets(directory: str | Path | None) -> list[dict]:
    """Metadata of every readable preset, sorted by name (malformed ones are skipped)."""
    if directory is None or not Path(directory).is_dir():
        return []
    out = []
    for js in sorted(Path(directory).glob("*.json")):
        try:
            out.append(read_metadata(directory, js.stem))
        except PresetError:
            continue
    return out


def delete_preset(directory: str | Path, name: str) -> None:
    js, npy = _paths(Path(directory), name)
    if not js.is_file():
        raise PresetError(f"unknown preset {name!r}")
    js.unlink()
    npy.unlink(missing_ok=True)


def compose(deltas: list[tuple[np.ndarray | torch.Tensor, float]]) -> torch.Tensor:
    """Σ strength_i · δ_i as a float32 tensor ``[1, num_ws, w_dim]``."""
    assert deltas, "nothing to compose"
    total = sum(float(s) * torch.as_tensor(np.asarray(d), dtype=torch.float32) for d, s in deltas)
    return total.reshape(1, *total.shape[-2:])


def apply_vector(generator: Generator, segmenter: Segmenter, perceptual, ws: torch.Tensor, reconstruction: np.ndarray,
                 labels: np.ndarray, delta: torch.Tensor, classes: list[int], *, refine_steps: int = 0,
                 settings: EditSettings = EditSettings(), progress: Progress | None = None,
                 should_cancel: ShouldCancel | None = None) -> EditOutcome:
    """G(ws + delta), optionally refined self-supervisedly for ``refine_steps`` steps.

    Args:
        ws: session latent ``[1, num_ws, w_dim]``; reconstruction, labels: G(ws) and its
            segmentation at model resolution (uint8).
        delta: composed offset ``[1, num_ws, w_dim]``.
        classes: ids of the vectors' classes (Q = their pixels before ∪ after, dilated).
    Metrics are those of an edit; ``iou`` (vs the self-supervised target) is None without refinement.
    """
    t0 = time.perf_counter()
    delta = delta.to(ws)
    img, after = render(generator, segmenter, ws.detach() + delta)
    region = class_region(labels, after, classes, region_radius(generator.resolution))
    if refine_steps > 0 and region.any():
        # Nobody painted the vector's labels, so there is no painting for the class-colour term to
        # colour (with it, the demo bundle's big_pupils refinement lost 2.2 dB, docs/demo-model.md);
        # the cross-entropy stays uniform over Q too: the change share was measured on paintings only.
        # Refinement polishes a change the vector already draws: its steps stay at most the paper's
        # (at the demo bundle's edit lr of the time, 0.06, its preset + 30 refine fell from +1.74
        # to +1.47 dB).
        refined = segmentation_edit(generator, segmenter, perceptual, ws, reconstruction, labels, after,
                                    classes=classes, init_delta=delta, steps=refine_steps,
                                    settings=settings.replace(lambda_colour=0.0, ce_change_share=0.0,
                                                              lr=min(settings.lr, PAPER_LR)),
                                    progress=progress, should_cancel=should_cancel)
        # the vector's labels are not a painting: like an unrefined preset, composite all of Q
        return dataclasses.replace(refined, composite=refined.region)
    if should_cancel is not None and should_cancel():
        raise Cancelled()
    image = to_uint8(img[0])
    metrics = dict(iou=None, **leak_metrics(image, reconstruction, region), steps=0, best_step=0,
                   seconds=time.perf_counter() - t0)
    return EditOutcome(ws.detach() + delta, delta, image, after, region, region, sorted(classes), metrics)


@dataclass
class LearnedVector:
    """An editing vector fitted to several faces at once (see :func:`learn_vector`)."""

    delta: torch.Tensor   # [1, num_ws, w_dim]
    classes: list[int]    # every class some face's edit touches
    metrics: dict         # iou, leak (means over the faces), per_face, faces, steps, best_step, seconds


# Faces per synthesis batch when learning a vector: as many pixels as one 256² face, so memory stays
# that of a single edit step at 256² and above (one face per batch at 512²; all 8 demo faces at 64²).
BATCH_PIXELS = 256 * 256


def learn_vector(generator: Generator, segmenter: Segmenter, perceptual, ws: torch.Tensor, before: np.ndarray,
                 target: np.ndarray, *, steps: int = 100, settings: EditSettings = EditSettings(),
                 faces_per_batch: int | None = None, progress: Progress | None = None,
                 should_cancel: ShouldCancel | None = None,
                 part_colours: list[PartColours] | None = None) -> LearnedVector:
    """One δ that makes the same edit on K faces: the mean of their segmentation-edit losses, optimized jointly.

    A vector learned on one face also carries whatever kept *that* face's other parts in place,
    which moves the parts of the next face; shared by K faces, only the common change fits all of
    them. On the demo model (8 faces vs 1, 8 held-out faces, docs/demo-model.md) this took
    short_hair from +0.9 to +3.0 dB, big_pupils from −4.2 to +0.2 dB.

    Args:
        ws: the faces' latents ``[K, num_ws, w_dim]``.
        before: uint8 (K, R, R), their current labels; target: uint8 (K, R, R), edited labels (each
            face must change somewhere). Each face's Q comes from its own touched classes.
        faces_per_batch: faces per synthesis; default ``BATCH_PIXELS // R²`` (at least 1). Chunks
            accumulate the gradient, so the result does not depend on it, only memory and speed do.
        part_colours: per face, the colours its painted parts follow (:class:`EditObjective`).
    With K = 1 this is exactly :func:`editgan.editing.segmentation_edit`'s optimization.
    """
    t0 = time.perf_counter()
    k, r = ws.shape[0], generator.resolution
    assert before.shape == target.shape == (k, r, r) and k >= 1
    touched = [touched_classes(b, t) for b, t in zip(before, target)]
    assert all(touched), "a face without any change teaches nothing"
    regions = np.stack([class_region(b, t, c, region_radius(r)) for b, t, c in zip(before, target, touched)])
    if faces_per_batch is None:
        faces_per_batch = max(1, BATCH_PIXELS // (r * r))
    objective = edit_objective(generator, segmenter, perceptual, ws, before, regions, target, settings,
                               faces_per_batch, should_cancel, part_colours)
    opt = optimize_latent(objective, torch.zeros_like(ws[:1]), steps, settings.lr, progress, should_cancel,
                          warmup=settings.warmup)
    per_face = []
    for i in range(k):
        img, labels = render(generator, segmenter, ws[i:i + 1] + opt.delta)
        reconstruction = to_uint8(objective.reconstruction[i])  # G(ws) was rendered once, for the loss
        per_face.append({"iou": region_iou(labels, target[i], regions[i], touched[i]),
                         "leak": leak(to_uint8(img[0]), reconstruction, regions[i])})
    metrics = {"iou": float(np.mean([f["iou"] for f in per_face])),
               "leak": float(np.mean([f["leak"] for f in per_face])), "per_face": per_face,
               "faces": k, "steps": steps, "best_step": opt.best_step, "seconds": time.perf_counter() - t0}
    return LearnedVector(opt.delta, sorted(set().union(*touched)), metrics)
