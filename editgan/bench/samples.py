"""How varied the demo model's random samples are: the share of samples showing each rare part.

A GAN can draw recognisable faces and still drop the rarer modes of its data (glasses, open
mouths, closed eyes, a hair style). The renders' rates are known exactly, so each sample is read
by the bundle's own segmenter (its labels of G(w)), turned into a few yes/no attributes by pixel
counts, and the shares are set beside the renders' (read from their true labels by the same rules).

The rules, as shares of the image (at 64²: 20, 12, 10, 150 and 30 pixels), were checked on 256
renders: on their true labels they agree with the render parameters for every face (long hair:
255 of 256, a long fringe of a bob reaching the bottom rows); on the segmenter's reading of their
encoder reconstructions in 85 % (glasses: faint frames fall under 20 pixels) to 99 % of faces.
On the demo model's samples the segmenter reads mouths generously: many samples draw a dark line
over a white one between the lips, which it labels as mouth interior and teeth (looked at).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import toyfaces
from ..editing import render_probabilities
from ..editor import Editor
from ..train.stages import HELD_OUT_SEED_BASE

SEED_BASE = HELD_OUT_SEED_BASE + 700_000  # renders whose true rates are the reference
Z_SEED = 99
ATTRIBUTES = ("glasses", "open_mouth", "closed_eyes", "bald", "long_hair")


def part_attributes(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Yes/no per face of ``labels`` uint8 ``[N, H, W]`` (toy-portrait classes)."""
    assert labels.ndim == 3 and labels.shape[1] == labels.shape[2], f"need [N, H, W] label maps, got {labels.shape}"
    c = {name: toyfaces.CLASSES.index(name) for name in toyfaces.CLASSES}
    area = labels.shape[1] * labels.shape[2]

    def share(mask):
        return mask.sum(axis=(1, 2)) / area

    hair = labels == c["hair"]
    bottom = labels.shape[1] - labels.shape[1] // 8
    return {
        "glasses": share(labels == c["glasses"]) >= 20 / 4096,
        "open_mouth": share(np.isin(labels, [c["mouth_interior"], c["teeth"]])) >= 12 / 4096,
        "closed_eyes": share(np.isin(labels, [c["pupil"], c["iris"], c["eye_white"]])) <= 10 / 4096,
        "bald": share(hair) < 150 / 4096,
        "long_hair": share(hair[:, bottom:]) >= 30 / 4096,
    }


def render_rates(n: int, resolution: int) -> dict[str, float]:
    """The attributes' shares over ``n`` renders, read from their true labels."""
    params = [toyfaces.params_for_seed(SEED_BASE + i) for i in range(n)]
    _, labels = toyfaces.render_batch(params, size=resolution)
    return {k: float(v.mean()) for k, v in part_attributes(labels).items()}


@torch.no_grad()
def sample_labels(editor: Editor, z: torch.Tensor, truncation: float, chunk: int = 32) -> np.ndarray:
    """The segmenter's labels ``[N, R, R]`` uint8 of the generator's samples of ``z`` ``[N, z_dim]``."""
    g = editor.generator
    out = []
    for i in range(0, len(z), chunk):
        _, probs = render_probabilities(g, editor.segmenter, g.map(z[i:i + chunk].to(g.w_avg.device), truncation))
        out.append(probs.argmax(1).to(torch.uint8).cpu().numpy())
    return np.concatenate(out)


def run_sample_diversity(editor: Editor, *, n: int = 512, truncations=(1.0, 0.7)) -> dict:
    """Attribute shares of ``n`` random samples per truncation, and of ``n`` renders."""
    if editor.segmenter is None:
        raise ValueError("the bundle has no segmenter to read its samples with")
    z = torch.randn(n, editor.generator.z_dim, generator=torch.Generator().manual_seed(Z_SEED))
    samples = {}
    for psi in truncations:
        attrs = part_attributes(sample_labels(editor, z, psi))
        samples[f"{psi:g}"] = {k: float(v.mean()) for k, v in attrs.items()}
    return {"n": n, "z_seed": Z_SEED, "render_seed_base": SEED_BASE,
            "renders": render_rates(n, editor.generator.resolution), "samples": samples}
