"""Benchmark results → JSON file and markdown tables (``docs/benchmarks.md``).

``results`` is a dict with any of: ``"header"`` (free key → value facts such as bundle, device,
perceptual loss), ``"tasks"`` (:func:`run_tasks`), ``"timings"`` (:func:`run_timings`),
``"large"`` (:func:`run_large`), ``"model_quality"``, ``"samples"``, ``"generator"``, ``"server"``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return lines


def _pooled(cells: list[dict]):
    """Leaked pixels over pixels outside Q, over every edit of ``cells`` (None when none counted them)."""
    counted = [c for c in cells if c.get("outside_px")]
    return sum(c["leaked_px"] for c in counted) / sum(c["outside_px"] for c in counted) if counted else None


def _mean(values: list):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _percent(share):
    return None if share is None else 100 * share


def tasks_means_table(tasks: dict) -> list[str]:
    """Per mode, the mean over the tasks that ran it (the bars are on these), the leak also pooled."""
    modes: dict = {}
    for task_modes in tasks["summary"].values():
        for mode, m in task_modes.items():
            modes.setdefault(mode, []).append(m)
    def mean(key):
        return lambda cells: _mean([c.get(key) for c in cells])
    columns = [mean("gain"), mean("iou"), mean("iou_vs_painting"), mean("painting_iou"),
               lambda cells: _percent(_mean([c["leak"] for c in cells])), lambda cells: _percent(_pooled(cells)), len]
    rows = [[mode] + [column(cells) for column in columns] for mode, cells in modes.items()]
    return _table(["mode", "edit gain (dB)", "target IoU", "IoU with the painting", "the painting's IoU",
                   "leak % (mean of edits)", "leak % (pooled pixels)", "tasks"], rows)


def tasks_table(tasks: dict) -> list[str]:
    rows = []
    for task, modes in tasks["summary"].items():
        for mode, m in modes.items():
            starts = ", ".join(f"{name} ×{count}" for name, count in m.get("starts", {}).items())
            rows.append([task, mode, m["gain"], m["iou"], m.get("painting_iou"), _percent(m["leak"]),
                         _percent(m.get("leak_pooled")), m["psnr_outside"], m["seconds"],
                         f"{m['n']}" + (f" (+{m['skipped']} skipped)" if m["skipped"] else ""), starts])
    means = ["Mean over the tasks. *Target IoU*: the result's labels against the target's true labels. *IoU with the "
             "painting*: against what the user painted (the editor's own figure, segmentation edits only). *The "
             "painting's IoU*: the user's painted labels scored as a result would be (they keep the segmentation's "
             "errors wherever the user did not paint). *Pooled leak*: leaked pixels "
             "over pixels outside Q, all edits together (Q is often nearly the whole picture, so one edit's share "
             "is of a few dozen pixels).", ""] + tasks_means_table(tasks)
    return means + ["", "Per task:", ""] + _table(
        ["task", "mode", "edit gain (dB)", "target IoU", "the painting's IoU", "leak %", "leak % (pooled)",
         "PSNR outside Q (dB)", "seconds", "n", "started from preset (times)"], rows)


def timings_table(timings: dict) -> list[str]:
    cfg = timings["config"]
    labels = {"embed": f"embed ({cfg['embed_steps']} steps)", "edit": f"edit ({cfg['edit_steps']} steps)",
              "preset": "preset apply", "refine": f"preset + refine ({cfg['refine_steps']} steps)"}
    rows = [[labels[k], timings[k]["median"], timings[k]["min"], len(timings[k]["runs"])]
            for k in labels if k in timings]
    return _table(["operation", "median s", "min s", "runs"], rows)


def _allocator_note(row: dict) -> str:
    """How the row's process allocated (absent from rows measured before the allocator setting)."""
    if "retains_freed_memory" not in row:
        return ""
    return ", freed memory kept" if row["retains_freed_memory"] else ", glibc's allocator as is"


def large_table(large: list[dict]) -> list[str]:
    rows = []
    for r in large:
        anchor = (f"{r['anchor_seconds']:g} s, {r['anchor_gib']:g} GiB" if "anchor_seconds" in r else "–")
        if "error" in r:
            rows.append([r["case"], r["resolution"], "–", "–", "–", anchor, "–", f"failed: {r['error'][:80]}"])
            continue
        ratio = (f"{r['anchor_seconds'] / r['seconds_per_step']:.1f}× / {r['anchor_gib'] / r['peak_rss_gib']:.1f}×"
                 if "anchor_seconds" in r else "–")
        rows.append([r["case"], r["resolution"], r["seg_resolution"], r["seconds_per_step"], r["peak_rss_gib"], anchor,
                     ratio, f"{r['classes']} classes, {r['members']} members, Q {r['region_px']} px, {r['threads']} threads, "
                     f"perceptual {r['perceptual']}, {len(r['step_seconds'])} steps{_allocator_note(r)}"])
    head = ("The official EditGAN step at the same configs, measured on this kind of machine (design.md §9), is the "
            "anchor; the goal is ≥ 10× faster and ≥ 4× less peak memory.")
    return [head, ""] + _table(["segmenter", "generator", "segmentation", "s / edit step", "peak RSS GiB",
                                "official step", "faster / less memory than it", "notes"], rows)


def model_quality_table(q: dict) -> list[str]:
    rows = [["inversion PSNR, encoder + %d steps (mean / median)" % q["embed_steps"], f"{q['psnr_mean']:.2f} / {q['psnr_median']:.2f} dB"],
            ["inversion PSNR, encoder only (mean)", _fmt(q["psnr_encoder_only_mean"]) + " dB"],
            [f"segmentation mIoU ({len(q['per_class_iou'])} classes)", _fmt(q["miou"], 3)]]
    rows += [[f"IoU {name}", _fmt(v, 3)] for name, v in q["per_class_iou"].items()]
    head = (f"{q['n']} held-out renders (seeds from {q['seed_base']}). Segmentation: the labels the user paints on, "
            "snapped to the photo's edges (`editgan.photo_labels`)")
    recon = q.get("reconstruction")  # absent from results written before it was measured
    if recon is None:
        return [head + ".", ""] + _table(["measure", "value"], rows)
    rows = [r + [""] for r in rows[:2]] + [r + [_fmt(v, 3)] for r, v in zip(
        rows[2:], [recon["miou"], *recon["per_class_iou"].values()])]
    return [head + "; the last column: the segmenter's reading of the reconstruction alone (what edits use).",
            ""] + _table(["measure", "value", "reconstruction's reading"], rows)


def samples_table(s: dict) -> list[str]:
    names = list(s["renders"])
    rows = [["renders (their true labels)"] + [_fmt(s["renders"][k], 2) for k in names]]
    rows += [[f"samples, truncation {psi}"] + [_fmt(v[k], 2) for k in names] for psi, v in s["samples"].items()]
    head = (f"Share of {s['n']} random samples (z seed {s['z_seed']}) showing each part, read by the bundle's "
            f"segmenter, beside {s['n']} renders (seeds from {s['render_seed_base']}) read from their true labels "
            "by the same pixel-count rules (`editgan/bench/samples.py`). The segmenter reads the samples' "
            "blurrier mouths generously: a dark line over a white one counts as open.")
    return [head, ""] + _table(["faces"] + [k.replace("_", " ") for k in names], rows)


def generator_table(g: dict) -> list[str]:
    rows = [[name, r["params_M"], r["median_ms"], r["min_ms"], r["repeats"]] for name, r in g["results"].items()]
    return [f"torch {g['torch']}, {g['threads']} threads, batch 1, synthesis forward + backward to W+.", ""] + \
        _table(["config / modulated-conv path", "params (M)", "median ms", "min ms", "runs"], rows)


def server_table(srv: dict) -> list[str]:
    rows = []
    for key, value in srv.items():
        if isinstance(value, dict) and "p50_ms" in value:
            rows.append([key, value["p50_ms"], value.get("p95_ms"), value.get("n")])
    return _table(["round trip", "p50 ms", "p95 ms", "n"], rows)


def to_markdown(results: dict, title: str = "EditGAN benchmarks") -> str:
    """Markdown report with one section per part present in ``results``."""
    out = [f"# {title}", ""]
    for key, value in results.get("header", {}).items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} ({v})" for k, v in value.items())
        out.append(f"- **{key}**: {value}")
    sections = [("model_quality", "Demo model: inversion and segmentation", model_quality_table),
                ("samples", "Demo model: random samples", samples_table),
                ("tasks", "Edit quality on toy-portrait counterfactuals", tasks_table),
                ("timings", "Timings", timings_table),
                ("generator", "Generator: synthesis forward + backward", generator_table),
                ("server", "Server round trips", server_table),
                ("large", "Large config: one edit step (random weights, config-f widths)", large_table)]
    for key, heading, fn in sections:
        if results.get(key):
            out += ["", f"## {heading}", ""] + fn(results[key])
    return "\n".join(out) + "\n"


def _json_safe(x):
    """inf/NaN → None so the file is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_results(results: dict, json_path: str | Path, markdown_path: str | Path | None = None) -> None:
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(_json_safe(results), indent=2, allow_nan=False) + "\n")
    if markdown_path is not None:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(to_markdown(results))
