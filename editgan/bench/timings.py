"""Wall-time of the interactive operations on a bundle: embed, edit, preset apply, refinement.

Each operation runs ``repeats`` times on the same toy-portrait task; we report the median (and
min / all runs). The edit and the preset calls reuse one session so they time only themselves.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .. import toyfaces
from ..editor import Editor
from ..train.stages import HELD_OUT_SEED_BASE, user_edit_labels


def _timed(fn, repeats: int) -> tuple[dict, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return {"median": float(np.median(times)), "min": float(min(times)), "runs": times}, out


def run_timings(editor: Editor, *, task: str = "smile", seed: int = HELD_OUT_SEED_BASE, repeats: int = 5,
                embed_steps: int = 100, edit_steps: int = 30, refine_steps: int = 10, preset: str | None = None) -> dict:
    """Median seconds of ``embed``, ``edit``, ``preset`` (apply) and ``refine`` on one counterfactual task.

    Args:
        editor: Editor on a toy-portrait bundle.
        task, seed: the toyfaces edit pair used as input and painted change.
        repeats: runs per operation (median of ≥ 5 recommended).
        embed_steps, edit_steps, refine_steps: optimizer steps of each timed call.
        preset: preset to apply (default: ``task`` if the bundle has it, else the first preset;
            preset timings are omitted when the bundle has none).
    """
    pair = toyfaces.sample_edit_pair(task, seed, size=editor.generator.resolution)
    out = {"config": {"task": task, "seed": seed, "repeats": repeats, "embed_steps": embed_steps,
                      "edit_steps": edit_steps, "refine_steps": refine_steps, "threads": torch.get_num_threads(),
                      "device": str(editor.device), "perceptual": editor.perceptual_status["kind"]}}
    out["embed"], session = _timed(lambda: editor.embed(pair["source_rgb"], steps=embed_steps), repeats)
    user = user_edit_labels(session.source_labels, pair["source_labels"], pair["target_labels"])
    out["edit"], _ = _timed(lambda: editor.edit(session, user, steps=edit_steps), repeats)
    names = [p.name for p in editor.list_presets()]
    name = preset or (task if task in names else (names[0] if names else None))
    if name is not None:
        out["config"]["preset"] = name
        out["preset"], _ = _timed(lambda: editor.apply_presets(session, [(name, 1.0)]), repeats)
        out["refine"], _ = _timed(lambda: editor.apply_presets(session, [(name, 1.0)], refine_steps=refine_steps),
                                  repeats)
    return out
