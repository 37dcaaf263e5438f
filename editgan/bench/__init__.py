"""Benchmarks (results in docs/benchmarks.md): edit quality on toy-portrait counterfactuals, timings, the large config.

* :func:`run_tasks` — per edit task (smile, open_mouth, …) and seed: embed the source render,
  paint the ground-truth change, then segmentation edit / preset / preset + refinement; edit gain
  in PSNR vs the true counterfactual, target-class IoU, leak, preservation PSNR.
* :func:`run_timings` — median wall time of embed, 30-step edit, preset apply, 10-step refine.
* :func:`run_large` — seconds per edit step and peak RSS on random-weight config-f generators at
  256², 512² and 1024² (the official step's measured anchors), projection vs concat segmenter,
  each case in a fresh subprocess (``python -m editgan.bench.large --case projection|concat``).
* :func:`to_markdown` / :func:`write_results` — the report.
"""

from .report import to_markdown, write_results
from .tasks import run_tasks
from .timings import run_timings

__all__ = ["run_tasks", "run_timings", "run_large", "to_markdown", "write_results"]


def __getattr__(name):
    # imported lazily so that ``python -m editgan.bench.large`` does not find its module pre-imported
    if name == "run_large":
        from .large import run_large
        return run_large
    raise AttributeError(name)
