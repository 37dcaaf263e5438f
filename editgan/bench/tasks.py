"""Edit quality on toy-portrait counterfactuals (the renderer gives the exact edited image).

For each task and held-out seed: render the source and its counterfactual, embed the source, let
the "user" paint the true change (the current segmentation with the target's ground-truth labels
pasted where they differ), then run every mode:

* ``noop`` — return the source (the baseline every gain is measured against);
* ``edit`` — the product's segmentation edit: the bundle's edit settings (the paper's loss weights
  and our lr warm-up unless its ``edit_defaults`` say otherwise), ``edit_steps`` steps, started
  from the stored preset (or none) the edit's loss prefers (``Editor.edit(from_presets=True)``);
* ``edit-colours`` — ``edit`` by a user who also picks the colour of each class they paint
  (``Editor.edit(part_colours=…)``, the docker's swatch menu): the target's mean colour of that
  class over the painted pixels. Skipped when the bundle's edit settings have no class-colour term;
* ``edit-cold`` — the same started from the embedding itself (the only ``edit`` before presets
  were tried as starts);
* ``paper`` — started from the embedding, with the paper's settings: its loss weights (all of Q
  free, no class-colour term, the cross-entropy uniform over Q) and its constant lr (no warm-up);
* ``preset``, ``preset+10``, ``preset+30`` — the bundle's preset of the same name at its default
  strength, without / with self-supervised refinement (only when the bundle has that preset).

Metrics (all against ground truth, at the source size, Q = the true edit region):
``gain`` = PSNR(result, target) − PSNR(source, target); ``iou`` = mean IoU of the touched
classes inside Q (result labels vs target labels); ``leak`` = the editor's own leak meter, and
``leak_pooled`` = the leaked pixels of all the cell's edits over their pixels outside Q (the
editor's Q, at model resolution: a short-hair edit leaves a few dozen pixels outside it, so one
edit's share swings by percents on a handful of pixels); ``psnr_outside`` = PSNR(result, source)
outside Q (preservation, capped at 100 dB); ``painting_iou`` = the same IoU for the user's painted
labels themselves: what an edit whose result reads exactly as painted would score (the painting
keeps the segmentation's errors wherever the user did not paint); ``iou_vs_painting`` = the
editor's own target IoU (segmentation edits only): the result's labels against the painting, at
model resolution inside the editor's Q.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from .. import toyfaces
from ..editing import EditSettings
from ..regions import edit_region, psnr, region_iou, region_radius, touched_classes
from ..editor import Editor, EditorError
from ..geometry import to_source
from ..train.stages import HELD_OUT_SEED_BASE, user_edit_labels

PSNR_CAP = 100.0
MODES = ("noop", "edit", "edit-colours", "edit-cold", "paper", "preset", "preset+10", "preset+30")
EDIT_MODES = ("edit", "edit-colours", "edit-cold", "paper")  # segmentation edits of the painting
METRICS = ("gain", "iou", "leak", "psnr_outside", "seconds", "painting_iou", "iou_vs_painting")


def _psnr(a, b, mask=None) -> float:
    return min(psnr(a, b, mask), PSNR_CAP)


def _score(result_image, result_labels, pair, region, classes) -> dict:
    src, tgt = pair["source_rgb"], pair["target_rgb"]
    return {"gain": _psnr(result_image, tgt) - _psnr(src, tgt),
            "iou": region_iou(result_labels, pair["target_labels"], region, classes),
            "psnr_outside": _psnr(result_image, src, ~region) if (~region).any() else PSNR_CAP}


def picked_colours(editor: Editor, session, user_labels: np.ndarray, target_rgb: np.ndarray) -> dict:
    """{class name: (r, g, b)}: each painted class's mean colour in the target over the pixels painted with it."""
    painted = user_labels != session.source_labels
    return {editor.class_names[c]: tuple(int(round(v)) for v in target_rgb[painted & (user_labels == c)].mean(0))
            for c in np.unique(user_labels[painted]).tolist()}


def _run_mode(editor: Editor, session, mode: str, user_labels, task: str, edit_steps: int, strengths: dict,
              target_rgb: np.ndarray):
    if mode == "noop":
        return session.source, session.source_labels, {"leak": 0.0, "seconds": 0.0}
    if mode in EDIT_MODES:
        overrides = dataclasses.asdict(EditSettings(warmup=0.0)) if mode == "paper" else {}
        if mode == "edit-colours":  # the editor refuses colours (invalid_argument) without the colour term
            overrides["part_colours"] = picked_colours(editor, session, user_labels, target_rgb)
        result = editor.edit(session, user_labels, steps=edit_steps, from_presets=mode in ("edit", "edit-colours"),
                             **overrides)
    else:
        strength = strengths[task]
        refine = int(mode.split("+")[1]) if "+" in mode else 0
        result = editor.apply_presets(session, [(task, strength)], refine_steps=refine)
    labels = to_source(result.labels, session.geometry)
    extra = {k: result.metrics[k] for k in ("leak", "outside_q", "seconds")}
    if mode in EDIT_MODES:  # the editor's own IoU: its result vs the painting
        extra["iou_vs_painting"] = result.metrics["iou"]
    if result.metrics.get("start"):
        extra["start"] = result.metrics["start"]["preset"]
    return result.image, labels, extra


def run_tasks(editor: Editor, *, tasks=None, seeds: int = 5, seed_base: int | None = None, size: int | None = None,
              embed_steps: int = 100, edit_steps: int = 30, modes=MODES, progress=None) -> dict:
    """Run the counterfactual edit tasks; returns ``{"config", "summary", "samples"}``.

    Args:
        editor: an Editor on a toy-portrait bundle (needs a segmenter).
        tasks: edit names (default: every ``toyfaces.EDITS``).
        seeds: samples per task; seeds ``seed_base + i`` (default: the held-out range).
        size: render side (default: the model resolution).
        embed_steps, edit_steps: optimizer steps of the embedding and of the ``edit`` mode.
        modes: subset of :data:`MODES`; preset modes are skipped for tasks without a preset.
        progress: optional ``progress(done, total)`` over (task, seed) samples.

    ``summary[task][mode]`` holds the mean of each metric over the samples that ran, ``n``
    and ``skipped`` (e.g. the painted change was invisible at the model resolution).
    """
    seed_base = HELD_OUT_SEED_BASE if seed_base is None else seed_base
    tasks = list(tasks or toyfaces.EDITS)
    size = size or editor.generator.resolution
    strengths = {p.name: p.default_strength for p in editor.list_presets()}
    samples = []
    for ti, task in enumerate(tasks):
        for i in range(seeds):
            pair = toyfaces.sample_edit_pair(task, seed_base + i, size=size)
            classes = touched_classes(pair["source_labels"], pair["target_labels"])
            region = edit_region(pair["source_labels"], pair["target_labels"], region_radius(size))
            t0 = time.perf_counter()
            session = editor.embed(pair["source_rgb"], steps=embed_steps)
            embed_seconds = time.perf_counter() - t0
            user = user_edit_labels(session.source_labels, pair["source_labels"], pair["target_labels"])
            painting_iou = region_iou(user, pair["target_labels"], region, classes)
            for mode in modes:
                if mode.startswith("preset") and task not in strengths:
                    continue
                row = {"task": task, "seed": seed_base + i, "mode": mode, "embed_psnr": session.psnr,
                       "embed_seconds": embed_seconds, "painting_iou": painting_iou}
                try:
                    image, labels, extra = _run_mode(editor, session, mode, user, task, edit_steps, strengths,
                                                     pair["target_rgb"])
                    row.update(_score(image, labels, pair, region, classes), **extra)
                except EditorError as e:
                    row["error"] = e.code
                samples.append(row)
            if progress is not None:
                progress(ti * seeds + i + 1, len(tasks) * seeds)
    config = {"tasks": tasks, "seeds": seeds, "seed_base": seed_base, "size": size, "embed_steps": embed_steps,
              "edit_steps": edit_steps, "perceptual": editor.perceptual_status["kind"]}
    return {"config": config, "summary": summarize(samples), "samples": samples}


def summarize(samples: list[dict]) -> dict:
    """Mean metrics per task and mode (samples with an ``error`` count as skipped)."""
    out: dict = {}
    for row in samples:
        cell = out.setdefault(row["task"], {}).setdefault(row["mode"], {"rows": [], "skipped": 0})
        if "error" in row:
            cell["skipped"] += 1
        else:
            cell["rows"].append(row)
    for task in out.values():
        for mode, cell in task.items():
            rows = cell.pop("rows")
            for m in METRICS:
                values = [r[m] for r in rows if r.get(m) is not None and math.isfinite(r[m])]
                cell[m] = float(np.mean(values)) if values else None
            counted = [r for r in rows if r.get("outside_q")]
            if counted:  # pooled leak: leaked pixels over pixels outside Q, all the cell's edits together
                cell["leaked_px"] = float(sum(r["leak"] * r["outside_q"] for r in counted))
                cell["outside_px"] = int(sum(r["outside_q"] for r in counted))
                cell["leak_pooled"] = cell["leaked_px"] / cell["outside_px"]
            cell["n"] = len(rows)
            starts = [r["start"] for r in rows if r.get("start")]
            if starts:  # which presets the edit started from, and how often
                cell["starts"] = {name: starts.count(name) for name in sorted(set(starts))}
    return out
