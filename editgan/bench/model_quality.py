"""Demo-model quality on held-out renders: inversion PSNR and per-class segmentation IoU.

Seeds start at ``HELD_OUT_SEED_BASE + 500_000`` (never used by training or the edit tasks).
IoU is accumulated over all images (intersection and union summed), the usual mIoU. The headline
figures score the labels a user paints on (``Session.source_labels``: the segmenter's reading
snapped to the photo's edges, see :mod:`editgan.photo_labels`); ``reconstruction`` scores the
segmenter's reading of the reconstruction alone (``Session.labels``), which edits optimize against.
"""

from __future__ import annotations

import numpy as np

from .. import toyfaces
from ..editor import Editor
from ..geometry import to_source
from ..train.stages import HELD_OUT_SEED_BASE

SEED_BASE = HELD_OUT_SEED_BASE + 500_000


class ClassIoU:
    """Per-class IoU over many label maps (intersections and unions summed); absent classes → None."""

    def __init__(self, num_classes: int):
        self.inter, self.union = np.zeros(num_classes), np.zeros(num_classes)

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        assert pred.shape == truth.shape, f"label maps differ in size: {pred.shape} vs {truth.shape}"
        for c in range(len(self.inter)):
            p, t = pred == c, truth == c
            self.inter[c] += np.count_nonzero(p & t)
            self.union[c] += np.count_nonzero(p | t)

    def result(self, names: list[str]) -> dict:
        per_class = {n: (float(i / u) if u else None) for n, i, u in zip(names, self.inter, self.union)}
        present = [v for v in per_class.values() if v is not None]
        return {"miou": float(np.mean(present)) if present else None, "per_class_iou": per_class}


def run_model_quality(editor: Editor, *, n: int = 200, embed_steps: int = 100, progress=None) -> dict:
    info = editor.info()
    classes = [c["name"] for c in info["classes"]]
    k = len(classes)
    iou, iou_reconstruction = ClassIoU(k), ClassIoU(k)
    psnr_opt, psnr_enc = [], []
    r = editor.generator.resolution
    for i in range(n):
        rgb, labels = toyfaces.render(toyfaces.params_for_seed(SEED_BASE + i), size=r)
        if info.get("encoder"):
            psnr_enc.append(editor.embed(rgb, steps=0).psnr)
        session = editor.embed(rgb, steps=embed_steps)
        psnr_opt.append(session.psnr)
        if session.source_labels is not None:
            iou.add(session.source_labels, labels)
            iou_reconstruction.add(to_source(session.labels, session.geometry), labels)
        if progress is not None:
            progress(i + 1, n)
    return {"n": n, "embed_steps": embed_steps, "seed_base": SEED_BASE,
            "psnr_mean": float(np.mean(psnr_opt)), "psnr_median": float(np.median(psnr_opt)),
            "psnr_encoder_only_mean": float(np.mean(psnr_enc)) if psnr_enc else None,
            **iou.result(classes), "reconstruction": iou_reconstruction.result(classes)}
