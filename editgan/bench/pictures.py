"""Comparison sheet for the report: per edit task, source | ground truth | segmentation edit | preset + refine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import toyfaces
from ..editor import Editor, EditorError
from ..imageio import colorize
from ..train.stages import HELD_OUT_SEED_BASE, user_edit_labels

COLUMNS = ("source", "target (truth)", "user labels", "edit 30 steps", "preset + 10 refine")


def comparison_sheet(editor: Editor, out: str | Path, *, tasks=None, seed: int = HELD_OUT_SEED_BASE,
                     scale: int = 3, embed_steps: int = 100) -> Path:
    r = editor.generator.resolution
    palette = [tuple(c["color"]) for c in editor.info()["classes"]]
    presets = {p.name for p in editor.list_presets()}
    tile = r * scale
    tasks = list(tasks or toyfaces.EDITS)
    label_w = 110
    sheet = Image.new("RGB", (label_w + len(COLUMNS) * (tile + 4), 18 + len(tasks) * (tile + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(COLUMNS):
        draw.text((label_w + j * (tile + 4), 2), name, fill="black")
    blank = np.full((r, r, 3), 255, np.uint8)
    for i, task in enumerate(tasks):
        pair = toyfaces.sample_edit_pair(task, seed, size=r)
        session = editor.embed(pair["source_rgb"], steps=embed_steps)
        user = user_edit_labels(session.source_labels, pair["source_labels"], pair["target_labels"])
        try:
            edited = editor.edit(session, user).image
        except EditorError:
            edited = blank
        preset = editor.apply_presets(session, [(task, 1.0)], refine_steps=10).image if task in presets else blank
        row = [pair["source_rgb"], pair["target_rgb"], colorize(user, palette), edited, preset]
        y = 18 + i * (tile + 4)
        draw.text((4, y + tile // 2), task, fill="black")
        for j, im in enumerate(row):
            sheet.paste(Image.fromarray(im).resize((tile, tile), Image.NEAREST), (label_w + j * (tile + 4), y))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
