"""`editgan render`: write a toy portrait (and optionally its labels and an edited version)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .edits import EDITS, apply_edit, edit_applies
from .params import FaceParams, params_for_seed
from .render import colorize, render

MAX_SAMPLES = 4096   # samples per side: ~0.5 GB of temporaries at most


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `render` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "render", help="render a toy portrait (the built-in model's domain) to PNG",
        description="Render a procedural toy portrait, its colourised label map and, with "
                    "--edit, the exact counterfactual after one attribute edit.")
    p.add_argument("--seed", type=int, default=0, help="portrait seed (default 0)")
    p.add_argument("--params", type=Path, help="JSON file of FaceParams (instead of --seed)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--supersample", type=int, default=4,
                   help="samples per pixel and axis (lowered for big images to bound memory)")
    p.add_argument("--out", type=Path, required=True, help="RGB PNG to write")
    p.add_argument("--labels", type=Path, help="colourised label PNG to write")
    p.add_argument("--save-params", type=Path, help="write the FaceParams as JSON")
    p.add_argument("--edit", choices=sorted(EDITS), help="also render this counterfactual edit")
    p.add_argument("--out-edited", type=Path, help="RGB PNG of the edited portrait")
    p.add_argument("--labels-edited", type=Path, help="colourised label PNG of the edited portrait")
    p.set_defaults(func=run)
    return p


def _save(path: Path, array: np.ndarray) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def run(args: argparse.Namespace) -> int:
    if not 8 <= args.size <= 4096 or args.supersample < 1:
        raise SystemExit("--size must be in 8..4096 and --supersample >= 1")
    ss = min(args.supersample, max(1, MAX_SAMPLES // args.size))
    if (args.out_edited or args.labels_edited) and not args.edit:
        raise SystemExit("--out-edited/--labels-edited need --edit")
    if args.edit and not (args.out_edited or args.labels_edited):
        raise SystemExit("--edit needs --out-edited and/or --labels-edited")
    params = (FaceParams.from_dict(json.loads(args.params.read_text())) if args.params
              else params_for_seed(args.seed))
    rgb, labels = render(params, args.size, ss)
    _save(args.out, rgb)
    if args.labels:
        _save(args.labels, colorize(labels))
    if args.save_params:
        args.save_params.write_text(json.dumps(params.to_dict(), indent=1))
    if args.edit:
        if not edit_applies(params, args.edit):
            print(f"note: edit {args.edit!r} makes no recognisable change to this portrait")
        rgb2, labels2 = render(apply_edit(params, args.edit), args.size, ss)
        if args.out_edited:
            _save(args.out_edited, rgb2)
        if args.labels_edited:
            _save(args.labels_edited, colorize(labels2))
    return 0
