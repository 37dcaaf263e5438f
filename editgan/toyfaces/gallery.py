"""The documentation images of the toy-portrait domain (docs/images/toyfaces-*.png).

    python -m editgan.toyfaces.gallery [OUT_DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .edits import sample_edit_pair
from .params import params_for_seed
from .render import colorize, render, render_batch

GAP = 4


def grid(seeds, size: int = 64, cols: int = 8, gap: int = 2, zoom: int = 2) -> Image.Image:
    """Renders of `seeds` in a grid, enlarged `zoom`× without smoothing so pixels stay visible."""
    rgb, _ = render_batch([params_for_seed(s) for s in seeds], size)
    rows = -(-len(rgb) // cols)
    out = np.full((rows * (size + gap) - gap, cols * (size + gap) - gap, 3), 255, np.uint8)
    for k, im in enumerate(rgb):
        r, c = divmod(k, cols)
        out[r * (size + gap):r * (size + gap) + size, c * (size + gap):c * (size + gap) + size] = im
    img = Image.fromarray(out)
    return img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def _row(tiles, caption: str, font) -> Image.Image:
    """Tiles side by side under a caption strip."""
    h, w = tiles[0].shape[:2]
    strip = 26
    row = Image.new("RGB", (len(tiles) * (w + GAP) - GAP, h + strip), "white")
    for k, t in enumerate(tiles):
        row.paste(Image.fromarray(t), (k * (w + GAP), strip))
    ImageDraw.Draw(row).text((4, 4), caption, fill=(30, 30, 30), font=font)
    return row


def labels_sheet(seeds=(3, 13, 44, 100), edits=(("smile", 2), ("add_glasses", 5)),
                 size: int = 256) -> Image.Image:
    """Renders next to their label maps, then counterfactual pairs (source, edited, labels)."""
    font = _font(18)
    rows = []
    for a, b in zip(seeds[::2], seeds[1::2]):
        (ra, la), (rb, lb) = render(params_for_seed(a), size), render(params_for_seed(b), size)
        rows.append(_row([ra, colorize(la), rb, colorize(lb)],
                         f"seed {a}: render, labels        seed {b}: render, labels", font))
    for name, seed in edits:
        e = sample_edit_pair(name, seed, size)
        rows.append(_row([e["source_rgb"], e["target_rgb"], colorize(e["source_labels"]),
                          colorize(e["target_labels"])],
                         f"edit '{name}' (seed {seed}): source, counterfactual, their labels", font))
    sheet = Image.new("RGB", (rows[0].width, sum(r.height + GAP for r in rows) - GAP), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + GAP
    return sheet


def main(argv=None) -> None:
    out = Path((argv if argv is not None else sys.argv[1:])[0] if (argv or sys.argv[1:]) else "docs/images")
    out.mkdir(parents=True, exist_ok=True)
    grid(range(64)).save(out / "toyfaces-grid.png", optimize=True)
    labels_sheet().save(out / "toyfaces-labels.png", optimize=True)


if __name__ == "__main__":
    main()
