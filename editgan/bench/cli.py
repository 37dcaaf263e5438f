"""``editgan bench``: every benchmark of the project in one run → JSON + docs/benchmarks.md.

Parts: ``model`` (inversion PSNR / segmentation IoU on held-out renders), ``samples`` (how often
random samples show glasses, open mouths, closed eyes, hair styles, beside the renders), ``tasks`` (edit quality
on counterfactuals), ``timings`` (demo-model operations), ``generator`` (synthesis fwd+bwd),
``server`` (round trips over real sockets), ``large`` (256²–1024² step time and peak RSS, fresh
processes), ``pictures`` (a comparison sheet). Benchmarks are never timed tests.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import logging
import platform
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from .report import write_results

PARTS = ("model", "samples", "tasks", "timings", "generator", "server", "large", "pictures")
log = logging.getLogger("editgan.bench")


def _progress(desc: str):
    bar = tqdm(total=1, desc=desc, unit="it")

    def update(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()
    return bar, update


def cmd_bench(args) -> int:
    from ..bundle import Bundle
    from ..editor import Editor
    from ..models import default_bundle_path
    from . import run_large, run_tasks, run_timings

    torch.set_num_threads(args.threads)
    parts = PARTS if args.parts == "all" else tuple(p.strip() for p in args.parts.split(","))
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"error: unknown parts {sorted(unknown)}; choose from {PARTS}")
    model = Path(args.model) if args.model else default_bundle_path()
    editor = Editor(Bundle.load(model))
    info = editor.info()
    perceptual = editor.perceptual_status
    results: dict = {"header": {
        "date": datetime.date.today().isoformat(), "bundle": f"{info['name']} ({model})",
        "machine": f"{platform.machine()}, device {editor.device} (torch threads: see parts)",
        "torch": torch.__version__,
        "perceptual loss": ("LPIPS-VGG16" if perceptual["kind"] == "lpips-vgg16" else
                            f"**FALLBACK, NOT LPIPS**: {perceptual['detail']}"),
    }}
    if "model" in parts:
        from .model_quality import run_model_quality
        bar, cb = _progress("model quality")
        results["model_quality"] = run_model_quality(editor, n=args.quality_images, embed_steps=args.embed_steps, progress=cb)
        bar.close()
    if "samples" in parts:
        from .samples import run_sample_diversity
        results["samples"] = run_sample_diversity(editor, n=args.samples)
    if "tasks" in parts:
        bar, cb = _progress("edit tasks")
        results["tasks"] = run_tasks(editor, seeds=args.seeds, embed_steps=args.embed_steps, progress=cb)
        bar.close()
    if "timings" in parts:
        results["timings"] = run_timings(editor, repeats=args.repeats, embed_steps=args.embed_steps)
    if "generator" in parts:
        from .generator import run_generator_timings
        results["generator"] = run_generator_timings(repeats=args.repeats * 4)
    if "server" in parts:
        from server.bench import local_server, run_bench
        with tempfile.TemporaryDirectory() as tmp:
            server = local_server(str(model), False, Path(tmp))
            try:
                results["server"] = run_bench(server.endpoint, size=512)
            finally:
                server.close()
    if "large" in parts:
        results["large"] = run_large()  # fresh processes with torch's default threads, like the anchors
    if "pictures" in parts:
        from .pictures import comparison_sheet, inversion_sheet
        sheet = comparison_sheet(editor, Path(args.images_dir) / "bench-edits.png", embed_steps=args.embed_steps)
        results["header"]["comparison sheet"] = f"![edits]({Path('images') / sheet.name})"
        sheet = inversion_sheet(editor, Path(args.images_dir) / "demo-inversion.png", embed_steps=args.embed_steps)
        results["header"]["inversion sheet"] = f"![inversion]({Path('images') / sheet.name})"
    ran = f"{results['header']['date']}, torch threads: {torch.get_num_threads()}"
    results["header"]["parts"] = {p: ran for p in parts}
    if args.update:
        _merge_and_write(results, Path(args.out_json), args.out_md)
    else:
        write_results(results, args.out_json, args.out_md)
    print(json.dumps(results["header"], indent=2))
    print(f"wrote {args.out_json} and {args.out_md}")
    return 0


def _merge_and_write(results: dict, out_json: Path, out_md) -> None:
    """Merge into ``out_json`` under a lock: parts run in parallel processes (or on another day)
    land in one report, and the header's "parts" line says which ran when."""
    out_json.parent.mkdir(parents=True, exist_ok=True)
    with open(out_json.with_name(out_json.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = json.loads(out_json.read_text()) if out_json.is_file() else {}
        header = {**previous.get("header", {}), **results["header"]}
        header["parts"] = {**previous.get("header", {}).get("parts", {}), **results["header"]["parts"]}
        write_results({**previous, **results, "header": header}, out_json, out_md)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run the benchmarks and write JSON + markdown (docs/benchmarks.md)")
    p.add_argument("--model", default=None, help="bundle (default: the demo model)")
    p.add_argument("--parts", default="all", help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    p.add_argument("--seeds", type=int, default=20, help="held-out seeds per edit task")
    p.add_argument("--quality-images", type=int, default=200, help="held-out renders for inversion/segmentation")
    p.add_argument("--samples", type=int, default=512, help="random samples (and renders) in the samples part")
    p.add_argument("--repeats", type=int, default=5, help="runs per timing (median reported)")
    p.add_argument("--embed-steps", type=int, default=100, help="embedding optimizer steps (paper: 100)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--update", action="store_true",
                   help="merge into an existing --out-json: its other parts are kept (run parts in parallel)")
    p.add_argument("--out-json", default="docs/benchmarks.json")
    p.add_argument("--out-md", default="docs/benchmarks.md")
    p.add_argument("--images-dir", default="docs/images")
    p.set_defaults(func=cmd_bench)
