"""``editgan train ...`` subcommands."""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import time
from pathlib import Path

import torch

log = logging.getLogger("editgan.train")


def _cpu_setup(threads: int) -> None:
    """Threads, and subnormal floats flushed to zero (:func:`editgan.cpu.flush_subnormals`)."""
    from ..cpu import flush_subnormals
    torch.set_num_threads(threads)
    flush_subnormals()


def _stop_on_sigterm(*_):
    raise KeyboardInterrupt  # the trainer's ``finally`` writes a checkpoint before exiting


def cmd_train_gan(args) -> int:
    from .gan import GanTrainConfig, GanTrainer
    _cpu_setup(args.threads)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    cfg = GanTrainConfig(batch=args.batch, seed=args.seed)
    try:
        trainer = GanTrainer(args.run_dir, cfg, device=args.device, init_from=args.init_from, overrides=dict(args.set))
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    try:
        trainer.train(total_images=int(args.kimg * 1000), sample_every=int(args.sample_kimg * 1000),
                      checkpoint_every=int(args.checkpoint_kimg * 1000), max_minutes=args.max_minutes)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: ``train`` has written the checkpoint on its way out
        log.info("interrupted at %d images; checkpoint in %s (run the same command to resume)",
                 trainer.images_seen, Path(args.run_dir) / "checkpoint.pt")
        return 130
    return 0


def _parse_setting(text: str) -> tuple[str, float]:
    """argparse type of ``--set``: ``NAME=VALUE`` with a numeric value (bad syntax is a usage error)."""
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not math.isfinite(number):  # nan / inf parse as floats but would wreck a run
        raise argparse.ArgumentTypeError(f"--set wants NAME=NUMBER (a finite number), got {text!r}")
    return name.strip(), number


def _load(path):
    from ..bundle import Bundle
    from ..models import default_bundle_path
    return Bundle.load(path or default_bundle_path())


def _timed(report: dict, key: str, fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    report[key] = {"seconds": round(time.perf_counter() - t0, 1), **(out if isinstance(out, dict) else {})}
    return out


def cmd_export(args) -> int:
    from .stages import export_bundle
    export_bundle(args.run_dir, args.out, name=args.name)
    return 0


def cmd_encoder(args) -> int:
    from .stages import finetune_encoder
    _cpu_setup(args.threads)
    bundle = _load(args.model)
    psnr = finetune_encoder(bundle, steps=args.steps, batch=args.batch)
    bundle.save(bundle.path)
    print(f"encoder fine-tuned: reconstruction PSNR over the last 100 steps {sum(psnr[-100:]) / len(psnr[-100:]):.2f} dB")
    return 0


def cmd_segmenter(args) -> int:
    from .. import toyfaces
    from .stages import train_segmenter_stage
    _cpu_setup(args.threads)
    bundle = _load(args.model)
    report = train_segmenter_stage(bundle, embed_steps=args.embed_steps, seg_steps=args.steps,
                                   members=args.members, seeds=toyfaces.stratified_seeds(args.annotations),
                                   class_weight_power=args.class_weight_power, mirror=not args.no_mirror,
                                   context=args.context, read_image=not args.no_image,
                                   standardize=not args.no_standardize)
    bundle.save(bundle.path)
    print(json.dumps(report, indent=2))
    return 0


def _update_bundle(args, stage, **kwargs) -> int:
    """``stage(bundle, **kwargs)`` on ``--model``, saved in place (its recipe goes into the provenance),
    its report printed; a ValueError (e.g. an unknown edit name) is a usage error."""
    _cpu_setup(args.threads)
    bundle = _load(args.model)
    try:
        report = stage(bundle, **kwargs)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    bundle.save(bundle.path)
    print(json.dumps(report, indent=2))
    return 0


def _edit_names(args):
    return args.edits.split(",") if args.edits else None


def cmd_presets(args) -> int:
    from .stages import train_presets_stage
    return _update_bundle(args, train_presets_stage, steps=args.steps, faces=args.faces,
                          embed_steps=args.embed_steps, edits=_edit_names(args), strength_faces=args.strength_faces)


def cmd_strengths(args) -> int:
    from .stages import choose_strengths_stage
    return _update_bundle(args, choose_strengths_stage, faces=args.faces, embed_steps=args.embed_steps,
                          edits=_edit_names(args))


def cmd_all(args) -> int:
    """GAN checkpoint → finished bundle: export, encoder, segmenter, presets; writes a timing report."""
    from .stages import export_bundle, finetune_encoder, train_presets_stage, train_segmenter_stage
    _cpu_setup(args.threads)
    report: dict = {}
    bundle = _timed(report, "export", export_bundle, args.run_dir, args.out, name=args.name)
    psnr = _timed(report, "encoder", finetune_encoder, bundle, steps=args.encoder_steps)
    report["encoder"]["train_psnr_last100"] = round(sum(psnr[-100:]) / max(1, len(psnr[-100:])), 2)
    bundle.save(bundle.path)
    _timed(report, "segmenter", train_segmenter_stage, bundle, seg_steps=args.segmenter_steps)
    bundle.save(bundle.path)
    _timed(report, "presets", train_presets_stage, bundle)
    bundle.save(bundle.path)
    out = Path(args.out) / "training-report.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train the demo model's parts").add_subparsers(dest="train_command", required=True)
    p = train.add_parser("gan", help="StyleGAN2 + joint encoder on streamed toy-portrait renders (resumable)")
    p.add_argument("--run-dir", default="runs/toyfaces-64", help="checkpoints, sample grids and logs (resumes if present)")
    p.add_argument("--kimg", type=float, default=300, help="stop after this many thousand training images")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time (a checkpoint is written)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-kimg", type=float, default=4)
    p.add_argument("--checkpoint-kimg", type=float, default=2)
    p.add_argument("--init-from", default=None, help="bundle to warm-start G and the encoder from when run-dir is empty")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=_parse_setting,
                   help="change a numeric hyper-parameter, also of a resumed run (e.g. --set adv_weight=0.1); "
                        "the checkpoint keeps the new value")
    p.set_defaults(func=cmd_train_gan)

    def export_args(p):
        p.add_argument("--run-dir", default="runs/toyfaces-64")
        p.add_argument("--out", required=True)
        p.add_argument("--name", default="toyfaces-64")

    p = train.add_parser("export", help="GAN checkpoint -> bundle (EMA generator + encoder)")
    export_args(p)
    p.set_defaults(func=cmd_export)

    def model_args(p, steps):
        p.add_argument("--model", default=None, help="bundle to update in place (default: the demo model)")
        p.add_argument("--steps", type=int, default=steps)
        p.add_argument("--threads", type=int, default=2)

    p = train.add_parser("encoder", help="fine-tune the bundle's encoder on the final generator")
    model_args(p, 2000)
    p.add_argument("--batch", type=int, default=16)
    p.set_defaults(func=cmd_encoder)

    p = train.add_parser("segmenter", help="DatasetGAN few-shot: embed N annotated renders, train the ensemble")
    model_args(p, 1500)
    p.add_argument("--annotations", type=int, default=16, help="size of the stratified annotation set")
    p.add_argument("--class-weight-power", type=float, default=0.5,
                   help="cross-entropy class weights (1/frequency)^power; 0 = plain cross-entropy")
    p.add_argument("--embed-steps", type=int, default=100)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--context", type=int, default=5,
                   help="odd side of the neighbourhood the full-resolution feature maps are read over (1: per pixel)")
    p.add_argument("--no-image", action="store_true", help="do not read the generator's RGB output as a feature map")
    p.add_argument("--no-standardize", action="store_true",
                   help="train on the raw maps instead of per-channel standardized ones (folded in afterwards)")
    p.add_argument("--no-mirror", action="store_true",
                   help="do not also train on the annotations mirrored left-right")
    p.set_defaults(func=cmd_segmenter)

    p = train.add_parser("presets", help="learn one editing vector per counterfactual edit")
    model_args(p, 100)
    p.add_argument("--faces", type=int, default=8, help="renders each vector is fitted to at once")
    p.add_argument("--embed-steps", type=int, default=100)
    p.add_argument("--edits", default="", help="comma-separated edit names to (re)learn (default: all)")
    p.add_argument("--strength-faces", type=int, default=8,
                   help="other renders each default strength is chosen on (0: every default stays 1)")
    p.set_defaults(func=cmd_presets)

    p = train.add_parser("strengths", help="choose each preset's default strength by its edit gain on other renders")
    p.add_argument("--model", default=None, help="bundle to update in place (default: the demo model)")
    p.add_argument("--faces", type=int, default=8, help="renders per preset")
    p.add_argument("--embed-steps", type=int, default=100)
    p.add_argument("--edits", default="", help="comma-separated preset names (default: every edit)")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_strengths)

    p = train.add_parser("all", help="export + encoder + segmenter + presets into a finished bundle")
    export_args(p)
    p.add_argument("--encoder-steps", type=int, default=2000)
    p.add_argument("--segmenter-steps", type=int, default=1500)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_all)
