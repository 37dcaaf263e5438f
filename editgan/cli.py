"""``editgan`` command line: info, sample, demo, import-stylegan, render, train and bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .bundle import Bundle, BundleError
from .imageio import grid, save_png, to_uint8
from .models import default_bundle_path, random_bundle

log = logging.getLogger("editgan")


def _bundle_arg(p: argparse.ArgumentParser, positional: bool = True):
    help_text = "model bundle folder (default: the shipped demo model)"
    if positional:
        p.add_argument("bundle", nargs="?", default=None, help=help_text)
    else:
        p.add_argument("--model", dest="bundle", default=None, help=help_text)


def load_bundle_or_exit(path: str | None, device: str = "cpu") -> Bundle:
    path = Path(path) if path else default_bundle_path()
    try:
        return Bundle.load(path, device=device)
    except BundleError as e:
        sys.exit(f"error: {e}")


def cmd_info(args) -> int:
    b = load_bundle_or_exit(args.bundle)
    m = b.manifest()
    print(json.dumps({k: m[k] for k in ("name", "domain", "resolution", "num_ws", "w_dim", "licence")}, indent=2))
    print(f"generator: {b.generator.num_params() / 1e6:.2f} M parameters, config {m['generator']}")
    print("classes: " + ", ".join(f"{c.name}{list(c.color)}" for c in b.classes))
    for key, module in b.components.items():
        print(f"{key}: {sum(p.numel() for p in module.parameters()) / 1e6:.2f} M parameters")
    presets = sorted(p.stem for p in b.presets_dir.glob("*.json")) if b.presets_dir and b.presets_dir.is_dir() else []
    print("presets: " + (", ".join(presets) if presets else "(none)"))
    return 0


def render_samples(bundle: Bundle, seeds: list[int], truncation: float) -> torch.Tensor:
    g = bundle.generator
    with torch.no_grad():
        z = torch.cat([g.z_from_seed(s) for s in seeds])
        return g(z.to(g.w_avg.device), truncation_psi=truncation)


def cmd_sample(args) -> int:
    b = load_bundle_or_exit(args.bundle)
    seeds = list(range(args.seed, args.seed + args.count))
    imgs = to_uint8(render_samples(b, seeds, args.truncation))
    out = save_png(args.out, imgs[0] if args.count == 1 else grid(imgs, cols=min(args.count, 8)), scale=args.scale)
    print(f"wrote {out} ({len(seeds)} sample(s), seeds {seeds[0]}..{seeds[-1]}, truncation {args.truncation})")
    return 0


def cmd_demo(args) -> int:
    """Offline proof of the install: load the default bundle (or the tiny random one), render, write PNGs."""
    out_dir = Path(args.out_dir)
    if default_bundle_path().is_dir() and not args.random:
        bundle = load_bundle_or_exit(None)
    else:
        print("note: using the tiny random bundle (random weights: shapes, not faces)")
        saved = random_bundle().save(out_dir / "tiny-random-bundle")
        bundle = Bundle.load(saved)  # through the real loader, as any bundle would be
    t0 = time.perf_counter()
    imgs = to_uint8(render_samples(bundle, list(range(16)), truncation=0.7))
    dt = time.perf_counter() - t0
    path = save_png(out_dir / "demo-samples.png", grid(imgs, cols=4), scale=max(1, 256 // bundle.resolution))
    print(f"bundle {bundle.name!r}: {bundle.resolution}² generator, {bundle.generator.num_params() / 1e6:.2f} M params")
    print(f"rendered 16 samples in {dt * 1000:.0f} ms -> {path}")
    return 0


def cmd_import(args) -> int:
    from .importers import ImportErrorBadCheckpoint, UnsafePickleError, load_checkpoint
    from .models import toy_classes
    try:
        g, info = load_checkpoint(args.src, fmt=args.format)
    except (ImportErrorBadCheckpoint, UnsafePickleError, FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    classes = toy_classes() if args.classes is None else _read_classes(args.classes)
    name = args.name or Path(args.src).stem
    bundle = Bundle(name=name, generator=g, classes=classes, domain=args.domain, licence=args.licence, provenance=info)
    bundle.save(args.out)
    print(f"imported {info['source_format']} {g.resolution}² generator ({g.num_params() / 1e6:.1f} M params) -> {args.out}")
    print("note: the bundle has no segmenter yet: editing by segmentation and presets need one, trained on "
          "annotated images of this domain (`editgan train segmenter --model OUT` trains on toy portraits only)")
    return 0


def _read_classes(path: str):
    from .bundle import validate_classes
    return validate_classes(json.loads(Path(path).read_text()), Path(path))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editgan", description="EditGAN semantic image editing")
    parser.add_argument("--version", action="version", version=f"editgan {__version__}")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="describe a model bundle")
    _bundle_arg(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("sample", help="render random samples from the mapping network")
    _bundle_arg(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=1, help="consecutive seeds; >1 writes a grid")
    p.add_argument("--truncation", type=float, default=0.7)
    p.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscale of the PNG")
    p.add_argument("--out", default="sample.png")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("demo", help="offline smoke run: load the default model, render, write PNGs")
    p.add_argument("--out-dir", default="out/demo")
    p.add_argument("--random", action="store_true", help="use the tiny random bundle even if the demo model exists")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import-stylegan", help="convert an NVIDIA .pkl or rosinality .pt generator into a bundle")
    p.add_argument("src")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--format", default="auto", choices=["auto", "nvidia", "rosinality"])
    p.add_argument("--name", default=None)
    p.add_argument("--domain", default="unknown")
    p.add_argument("--licence", default="see the source checkpoint's licence")
    p.add_argument("--classes", default=None, help="JSON list of {name, color}; default: the toy-portrait classes")
    p.set_defaults(func=cmd_import)

    from .bench.cli import register as register_bench
    from .client import register as register_remote
    from .package_krita import register as register_package
    from .toyfaces.cli import register as register_render
    from .train.cli import register as register_train
    register_render(sub)
    register_train(sub)
    register_remote(sub)
    register_package(sub)
    register_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
