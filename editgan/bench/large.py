"""Per-step cost of a segmentation edit at the large configs (NVIDIA config-f widths, 256²–1024²).

Random-weight generator with NVIDIA config-f widths (channel_base 32768, channel_max 512,
512-d latents, 8 mapping layers), a segmenter ensemble (10 members, DatasetGAN widths) at
min(R, 512)², an edit region of ≈ 18k px; the class counts and resolutions are those of the
official EditGAN step measured on this kind of machine (:data:`ANCHORS`). Two cases:

* ``projection`` — our segmenter: per-map projection, logits only in the region's box;
* ``concat`` — the official way: upsample and concatenate every feature map, evaluate every
  member on every pixel, then use the region (same maths, same loss).

Each case runs in a fresh process (``python -m editgan.bench.large --case …`` prints one JSON
object) so peak RSS (``ru_maxrss``) belongs to that case alone. The child caps its address space
(``--max-gib``) so a case too big for the machine fails with an error instead of the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..cpu import RETAIN_ENV, retain_freed_memory
from ..editing import EditSettings, edit_objective, optimize_latent
from ..generator import Generator, GeneratorConfig
from ..perceptual import make_perceptual_loss
from ..segmenter import Segmenter, feature_layout

CONFIG_F = dict(z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512)
CASES = ("projection", "concat")


@dataclass(frozen=True)
class Anchor:
    """The official EditGAN editing step at one config, measured on this kind of machine (2 threads,
    its CPU fallbacks for its CUDA ops; design.md §9): what ``projection`` must beat ≥ 10× in time
    and ≥ 4× in peak memory."""

    classes: int
    seconds: float
    gib: float


ANCHORS = {256: Anchor(classes=32, seconds=14.0, gib=6.2),    # config-f widths at 256²
           512: Anchor(classes=32, seconds=55.0, gib=17.2),   # the car config
           1024: Anchor(classes=34, seconds=69.0, gib=18.0)}  # the face config, segmentation at 512²


class ConcatSegmenter(nn.Module):
    """Drop-in for :class:`Segmenter` in an edit that evaluates the official way, then crops to the box."""

    def __init__(self, segmenter: Segmenter):
        super().__init__()
        self.segmenter = segmenter
        self.resolution, self.num_classes = segmenter.resolution, segmenter.num_classes
        self.inputs = segmenter.inputs

    def forward(self, features, box):
        y0, y1, x0, x1 = box
        return self.segmenter.forward_concat(features)[..., y0:y1, x0:x1]


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def concat_gib(resolution: int, seg_resolution: int | None = None) -> float:
    """Size of the concatenated feature tensor the official segmenter builds (float32)."""
    channels, _ = feature_layout(GeneratorConfig(resolution=resolution, **CONFIG_F))
    s = seg_resolution or min(resolution, 512)
    return sum(channels) * s * s * 4 / 2**30


def measure(case: str, resolution: int = 512, classes: int = 32, members: int = 10, region_px: int = 18000,
            steps: int = 3, seed: int = 0, widths: dict = CONFIG_F, faces: int = 1,
            faces_per_batch: int | None = None) -> dict:
    """Run ``steps`` edit steps and report seconds per step (median after the first) and peak RSS.

    ``widths``: generator config fields besides the resolution (tests pass tiny ones).
    ``faces``, ``faces_per_batch``: a preset being learned on several faces that share one offset
    (:func:`editgan.presets.learn_vector`), run all at once or in chunks.
    """
    assert case in CASES, f"case must be one of {CASES}"
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(resolution=resolution, **widths)).eval().requires_grad_(False)
    seg = Segmenter.for_generator(g, classes, members=members).eval().requires_grad_(False)
    model = seg if case == "projection" else ConcatSegmenter(seg)
    perceptual, status = make_perceptual_loss("cpu", "auto")
    ws = g.mean_ws() + 0.5 * torch.randn(faces, g.num_ws, g.w_dim)
    side = min(resolution, round(math.sqrt(region_px)))
    lo = (resolution - side) // 2
    region = np.zeros((resolution, resolution), bool)
    region[lo:lo + side, lo:lo + side] = True
    target = np.random.default_rng(seed).integers(0, classes, (resolution, resolution)).astype(np.uint8)
    before = np.zeros_like(target)  # random target labels: "changed" nearly everywhere, as in a big edit
    before_k, region_k, target_k = (np.repeat(a[None], faces, axis=0) for a in (before, region, target))
    objective = edit_objective(g, model, perceptual, ws, before_k, region_k, target_k, EditSettings(), faces_per_batch)
    rss_before = _peak_rss_gib()
    stamps = [time.perf_counter()]
    optimize_latent(objective, torch.zeros_like(ws[:1]), steps, EditSettings().lr,
                    progress=lambda step, total, preview=None: stamps.append(time.perf_counter()))
    step_seconds = np.diff(stamps).tolist()
    return {"case": case, "resolution": resolution, "seg_resolution": seg.resolution, "classes": classes,
            "members": members, "region_px": int(region.sum()), "faces": faces,
            "faces_per_batch": objective.faces_per_batch, "steps": steps, "step_seconds": step_seconds,
            "seconds_per_step": float(np.median(step_seconds[1:] or step_seconds)),
            "peak_rss_gib": _peak_rss_gib(), "rss_before_edit_gib": rss_before,
            "concat_tensor_gib": concat_gib(resolution, seg.resolution), "perceptual": status["kind"],
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def available_gib() -> float:
    """MemAvailable from /proc/meminfo (inf where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


# Steps per case: a projection step settles only after a few (the allocator's first steps fault
# their memory in); a concat step costs a minute or more.
STEPS = {"projection": 8, "concat": 3}
# (case, keep freed memory): concat stands for the official code, so it runs on glibc's default
# allocator (kept, its fragmentation took 512² to 20.9 GiB); projection runs as the Editor does
# (:func:`editgan.cpu.retain_freed_memory`) and, like for like with concat, without.
RUNS = (("projection", True), ("projection", False), ("concat", False))


def run_large(runs=RUNS, resolutions=tuple(ANCHORS), steps: int | None = None, max_gib: float | None = None,
              timeout: float = 3600, **kw) -> list[dict]:
    """Each (resolution, case) in a fresh ``python -m editgan.bench.large`` process; failures are reported.

    ``max_gib`` caps each child's address space (default: available memory − 1 GiB); ``kw`` go
    to :func:`measure` (classes — by default the anchor's at that resolution, else 32 —, members,
    region_px, seed); ``runs``: (case, keep freed memory) pairs, see :data:`RUNS`; ``steps``
    default: :data:`STEPS`. Rows at an anchor's config carry its figures (``anchor_seconds``, ``anchor_gib``).
    """
    results = []
    for resolution in resolutions:
        anchor = ANCHORS.get(resolution)
        args = {"classes": anchor.classes if anchor else 32, **kw}
        for case, keep in runs:
            cap = max_gib if max_gib is not None else max(available_gib() - 1, 1)
            cmd = [sys.executable, "-m", "editgan.bench.large", "--case", case, "--resolution", str(resolution),
                   "--steps", str(steps or STEPS[case]), "--max-gib", str(cap)] + \
                [f"--{k.replace('_', '-')}={v}" for k, v in args.items()]
            env = {**os.environ, RETAIN_ENV: "1" if keep else "0"}
            row = {"case": case, "resolution": resolution}
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
                lines = proc.stdout.strip().splitlines()
                row = json.loads(lines[-1]) if lines else {**row, "error": f"exit {proc.returncode}: {proc.stderr[-500:]}"}
            except subprocess.TimeoutExpired:
                row["error"] = f"timed out after {timeout:.0f} s"
            if anchor is not None and args["classes"] == anchor.classes:
                row.update(anchor_seconds=anchor.seconds, anchor_gib=anchor.gib)
            results.append(row)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m editgan.bench.large", description=__doc__.split("\n\n")[0])
    p.add_argument("--case", choices=CASES, required=True)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--classes", type=int, default=32)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--region-px", type=int, default=18000)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--faces", type=int, default=1, help="faces sharing the offset (a preset being learned)")
    p.add_argument("--faces-per-batch", type=int, default=None, help="chunk size of those faces (default: all)")
    p.add_argument("--max-gib", type=float, default=None, help="address-space cap of this process")
    a = p.parse_args(argv)
    retained = retain_freed_memory()  # as the Editor does in the server (unless the environment says no)
    if a.max_gib:
        cap = int(a.max_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        out = measure(a.case, a.resolution, a.classes, a.members, a.region_px, a.steps, a.seed, faces=a.faces,
                      faces_per_batch=a.faces_per_batch)
    except (MemoryError, RuntimeError) as e:  # torch reports a refused allocation as RuntimeError
        out = {"case": a.case, "resolution": a.resolution, "error": f"{type(e).__name__}: {str(e)[:300]}",
               "peak_rss_gib": _peak_rss_gib(), "concat_tensor_gib": concat_gib(a.resolution)}
    out["retains_freed_memory"] = retained
    print(json.dumps(out))
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
