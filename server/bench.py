"""Round-trip latency of the server: ``python -m server.bench`` prints JSON.

* ``ping`` — the socket loop's floor (msgpack header only).
* ``upload_echo_1024`` — a 1024² rgba8 layer (4 MiB) up and back through the documented diagnostics
  op ``echo``: the same framing, size limits and buffer validation as ``embed``/``edit``, minus the
  compute. That is what any 1024² request pays for transport alone.
* ``apply_preset`` — end to end on a ``--size``² picture: request, queue, engine, crop, reply.
* ``ping_while_busy`` — ping while the worker runs a long embed (GIL/loop responsiveness).

Without ``--address`` it starts its own server in a thread (demo bundle, or the tiny random one
with ``--random`` or when the demo bundle is absent). Targets: ping p50 ≤ 1 ms, 1024² ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from editgan.client import EditGANClient


def _stats(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1000
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3),
            "min_ms": round(float(a.min()), 3), "max_ms": round(float(a.max()), 3)}


def _timed(fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _ensure_preset(c: EditGANClient, session: dict, info: dict) -> tuple[str, bool]:
    """An existing preset, or one made here from a real 30-step edit (deleted afterwards)."""
    if info["presets"]:
        return info["presets"][0]["name"], False
    labels = session["labels"]
    palette = [tuple(x["color"]) for x in info["classes"]]
    target = int(np.argmin(np.bincount(labels.ravel(), minlength=len(palette))[1:])) + 1
    h, w = labels.shape
    seg = np.zeros((h, w, 4), np.uint8)
    seg[h // 3:h // 2, w // 3:2 * w // 3] = (*palette[target], 255)
    c.edit(session["session"], seg, steps=30)
    return c.save_preset(session["session"], "bench_tmp")["preset"]["name"], True


def run_bench(address: str, *, n_ping: int = 500, n_upload: int = 40, n_preset: int = 5, size: int = 512,
              embed_steps: int = 20, refine_steps: int = 0) -> dict:
    with EditGANClient(address, timeout=600) as c:
        info = c.hello()
        report = {"address": address, "model": info["model"], "device": info["device"],
                  "perceptual": info["perceptual"], "protocol": info["protocol"]}
        report["ping"] = _stats(_timed(lambda: c.ping(), n_ping, warmup=20))
        big = np.random.default_rng(0).integers(0, 256, (1024, 1024, 4), dtype=np.uint8)
        report["upload_echo_1024"] = _stats(_timed(lambda: c.echo(big), n_upload))
        img = np.random.default_rng(1).integers(0, 256, (size, size, 4), dtype=np.uint8)
        t0 = time.perf_counter()
        session = c.embed(img, steps=embed_steps)
        report["embed"] = {"size": size, "steps": embed_steps, "seconds": round(time.perf_counter() - t0, 3)}
        name, temporary = _ensure_preset(c, session, info)
        try:
            samples = _timed(lambda: c.apply_presets(session["session"], [(name, 1.0)], refine_steps=refine_steps),
                             n_preset, warmup=1)
            report["apply_preset"] = {"preset": name, "size": size, "refine_steps": refine_steps, **_stats(samples)}
        finally:
            if temporary:
                c.delete_preset(name)
        # the socket loop answers while the worker computes: ping during a long embed, then cancel it
        rid = c.submit("embed", {"steps": 1000}, {"image": img})
        while c.next_event(rid)["event"] != "progress":
            pass
        report["ping_while_busy"] = _stats(_timed(lambda: c.ping(), max(20, n_ping // 5), warmup=0))
        c.cancel(rid)
        try:
            c.wait(rid)
        except Exception:
            pass
        report["targets_met"] = {"ping_p50_le_1ms": report["ping"]["p50_ms"] <= 1.0,
                                 "upload_1024_p50_le_50ms": report["upload_echo_1024"]["p50_ms"] <= 50.0}
    return report


def local_server(model: str | None, random: bool, tmp: Path):
    from editgan.bundle import Bundle
    from editgan.editor import Editor
    from editgan.models import default_bundle_path, random_bundle

    from .app import Server

    path = Path(model) if model else default_bundle_path()
    if random or not path.is_dir():
        path = random_bundle(with_segmenter=True).save(tmp / "tiny-random")
    return Server(Editor(Bundle.load(path), device="cpu"), "tcp://127.0.0.1:*").start_background()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m server.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default=None, help="a running server; default: start one in-process")
    p.add_argument("--model", default=None)
    p.add_argument("--random", action="store_true", help="use the tiny random bundle")
    p.add_argument("--n-ping", type=int, default=500)
    p.add_argument("--n-upload", type=int, default=40)
    p.add_argument("--n-preset", type=int, default=5)
    p.add_argument("--size", type=int, default=512, help="side of the picture used for apply_preset")
    p.add_argument("--embed-steps", type=int, default=20)
    p.add_argument("--refine-steps", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        server = None if args.address else local_server(args.model, args.random, Path(tmp))
        try:
            report = run_bench(args.address or server.endpoint, n_ping=args.n_ping, n_upload=args.n_upload,
                               n_preset=args.n_preset, size=args.size, embed_steps=args.embed_steps,
                               refine_steps=args.refine_steps)
        finally:
            if server is not None:
                server.close()
    perceptual = report["perceptual"] or {}
    if perceptual.get("kind") != "lpips-vgg16":
        print(f"# NOTE: perceptual loss is a fallback, not LPIPS: {perceptual.get('detail')}", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
