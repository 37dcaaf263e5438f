"""Synthesis forward+backward timing at batch 1 (the editing inner loop): demo and 256² configs.

Part of ``editgan bench``; also ``python -m editgan.bench.generator`` (prints JSON). Run on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from editgan.generator import Generator, GeneratorConfig
from editgan.train.gan import DEMO_GENERATOR

CONFIGS = {
    "demo-64": DEMO_GENERATOR,
    "256-config-f-widths/4": GeneratorConfig(resolution=256, z_dim=512, w_dim=512, channel_base=8192, channel_max=128, use_noise=True),
    "256-config-f": GeneratorConfig(resolution=256, z_dim=512, w_dim=512, channel_base=32768, channel_max=512, use_noise=True),
}


def time_config(cfg: GeneratorConfig, repeats: int, mode: str) -> dict:
    torch.manual_seed(0)
    g = Generator(cfg).eval().requires_grad_(False)
    ws = g.mean_ws().clone().requires_grad_(True)
    times = []
    for i in range(repeats + 2):
        t = time.perf_counter()
        img, feats = g.synthesis(ws, mode=mode)
        (img.square().mean() + sum(f.mean() for f in feats)).backward()
        if i >= 2:
            times.append(time.perf_counter() - t)
        ws.grad = None
    return {"params_M": round(g.num_params() / 1e6, 3), "mode": mode, "median_ms": round(statistics.median(times) * 1000, 1),
            "min_ms": round(min(times) * 1000, 1), "repeats": repeats}


def run_generator_timings(repeats: int = 20) -> dict:
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "results": {}}
    for name, cfg in CONFIGS.items():
        for mode in ("grouped", "scaled"):
            n = repeats if cfg.resolution <= 64 else max(3, repeats // 5)
            out["results"][f"{name}/{mode}"] = time_config(cfg, n, mode)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(run_generator_timings(args.repeats), indent=2))


if __name__ == "__main__":
    main()
