"""``editgan train ...`` subcommands."""

from __future__ import annotations

import argparse
import logging

import torch

log = logging.getLogger("editgan.train")


def cmd_train_gan(args) -> int:
    from .gan import GanTrainConfig, GanTrainer
    torch.set_num_threads(args.threads)
    cfg = GanTrainConfig(batch=args.batch, seed=args.seed)
    trainer = GanTrainer(args.run_dir, cfg, device=args.device)
    trainer.train(total_images=int(args.kimg * 1000), sample_every=int(args.sample_kimg * 1000),
                  checkpoint_every=int(args.checkpoint_kimg * 1000), max_minutes=args.max_minutes)
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
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_train_gan)
