"""Pictures for the report: the edit comparison sheet (per task: source | ground truth | user labels |
segmentation edit | preset + refine) and the inversion sheet (render | reconstruction | true labels |
predicted labels) on held-out seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import toyfaces
from ..editor import Editor, EditorError
from ..imageio import colorize
from ..train.stages import HELD_OUT_SEED_BASE, user_edit_labels

COLUMNS = ("source", "target (truth)", "user labels", "edit 30 steps", "preset + 10 refine")
INVERSION_COLUMNS = ("held-out render", "reconstruction", "true labels", "predicted labels")


def _sheet(columns, row_names: list[str], rows: list[list[np.ndarray]], out: str | Path, scale: int) -> Path:
    """Grid of equally sized uint8 RGB tiles (nearest-upscaled) with column and row captions."""
    tile = rows[0][0].shape[0] * scale
    label_w = 110
    sheet = Image.new("RGB", (label_w + len(columns) * (tile + 4), 18 + len(rows) * (tile + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(columns):
        draw.text((label_w + j * (tile + 4), 2), name, fill="black")
    for i, (name, row) in enumerate(zip(row_names, rows)):
        y = 18 + i * (tile + 4)
        draw.text((4, y + tile // 2), name, fill="black")
        for j, im in enumerate(row):
            sheet.paste(Image.fromarray(im).resize((tile, tile), Image.NEAREST), (label_w + j * (tile + 4), y))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def comparison_sheet(editor: Editor, out: str | Path, *, tasks=None, seed: int = HELD_OUT_SEED_BASE,
                     scale: int = 3, embed_steps: int = 100) -> Path:
    r = editor.generator.resolution
    palette = [tuple(c["color"]) for c in editor.info()["classes"]]
    strengths = {p.name: p.default_strength for p in editor.list_presets()}
    tasks = list(tasks or toyfaces.EDITS)
    blank = np.full((r, r, 3), 255, np.uint8)
    rows = []
    for task in tasks:
        pair = toyfaces.sample_edit_pair(task, seed, size=r)
        session = editor.embed(pair["source_rgb"], steps=embed_steps)
        user = user_edit_labels(session.source_labels, pair["source_labels"], pair["target_labels"])
        try:
            edited = editor.edit(session, user).image
        except EditorError:
            edited = blank
        preset = blank if task not in strengths else \
            editor.apply_presets(session, [(task, strengths[task])], refine_steps=10).image
        rows.append([pair["source_rgb"], pair["target_rgb"], colorize(user, palette), edited, preset])
    return _sheet(COLUMNS, tasks, rows, out, scale)


def inversion_sheet(editor: Editor, out: str | Path, *, count: int = 6, seed: int = HELD_OUT_SEED_BASE + 900_000,
                    scale: int = 3, embed_steps: int = 100) -> Path:
    """Embedding (encoder + ``embed_steps``) of held-out renders and the segmentation of the result."""
    palette = [tuple(c["color"]) for c in editor.info()["classes"]]
    rows, names = [], []
    for i in range(count):
        rgb, labels = toyfaces.render(toyfaces.params_for_seed(seed + i), size=editor.generator.resolution)
        session = editor.embed(rgb, steps=embed_steps)
        rows.append([rgb, session.reconstruction, colorize(labels, palette), colorize(session.source_labels, palette)])
        names.append(f"{session.psnr:.1f} dB")
    return _sheet(INVERSION_COLUMNS, names, rows, out, scale)
