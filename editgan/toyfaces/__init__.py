"""Procedural toy portraits: the ground-truth domain of the demo model (docs/demo-model.md).

`render(params)` draws a front-facing cartoon face with an exact, pixel-aligned label map;
`apply_edit` changes one attribute, so rendering before and after gives exact counterfactuals.
Pure numpy, deterministic, no global RNG.
"""

from .edits import EDITS, apply_edit, edit_applies, sample_edit_pair
from .params import CLASSES, PALETTE, FaceParams, params_for_seed, sample_params, stratified_seeds
from .render import colorize, render, render_batch

__all__ = [
    "CLASSES", "PALETTE", "FaceParams", "sample_params", "params_for_seed", "stratified_seeds", "render",
    "render_batch", "colorize", "EDITS", "apply_edit", "edit_applies", "sample_edit_pair",
]
