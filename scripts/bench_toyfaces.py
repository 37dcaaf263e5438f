"""Throughput of the toy-portrait renderer (single-threaded numpy): prints images/s.

Usage: python scripts/bench_toyfaces.py [--n 500] [--rounds 5] [--size 64] [--supersample 4] [--big 512]

The images are rendered in `rounds` equal rounds; the best round is the figure for an idle core,
the median what this machine gives right now (others may be using the cores).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from editgan.toyfaces import render, render_batch, sample_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="images in all")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--supersample", type=int, default=4)
    ap.add_argument("--big", type=int, default=512, help="also time single renders at this size (0: skip)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    params = [sample_params(rng) for _ in range(args.n)]
    sample_us = 1e6 * (time.perf_counter() - t0) / args.n
    render_batch(params[:20], args.size, args.supersample)  # warm-up
    per = max(1, args.n // args.rounds)
    walls, cpus = [], []
    for r in range(args.rounds):
        chunk = params[r * per:(r + 1) * per]
        t0, c0 = time.perf_counter(), time.process_time()
        render_batch(chunk, args.size, args.supersample)
        walls.append(len(chunk) / (time.perf_counter() - t0))
        cpus.append(len(chunk) / (time.process_time() - c0))
    print(f"{args.size}² with {args.supersample}² samples/pixel: best round {max(walls):.0f} images/s, "
          f"median {np.median(walls):.0f} images/s wall ({np.median(cpus):.0f} per CPU-second), "
          f"one core")
    print(f"sample_params: {sample_us:.0f} µs per draw")
    if args.big:
        times = []
        for p in params[:5]:
            t0 = time.perf_counter()
            render(p, args.big, args.supersample)
            times.append(time.perf_counter() - t0)
        print(f"{args.big}² with {args.supersample}² samples/pixel: best {min(times):.3f} s, "
              f"median {np.median(times):.3f} s per image")


if __name__ == "__main__":
    main()
