"""Where the shipped demo bundle lives, and a documented tiny random bundle for smoke runs."""

from __future__ import annotations

from pathlib import Path

import torch

from .bundle import Bundle, ClassInfo
from .generator import Generator, GeneratorConfig

DEMO_BUNDLE = Path(__file__).resolve().parent / "data" / "toyfaces-64"

# The tiny random bundle: a 32² StyleGAN2 with toy-portrait classes and random weights. It proves
# the install and the plumbing (load, render, save), nothing about quality.
TINY_RANDOM_CONFIG = GeneratorConfig(resolution=32, z_dim=32, w_dim=32, mapping_layers=2,
                                     channel_base=512, channel_max=32, use_noise=False)


def toy_classes() -> list[ClassInfo]:
    from .toyfaces import CLASSES, PALETTE
    return [ClassInfo(name, tuple(int(v) for v in color)) for name, color in zip(CLASSES, PALETTE)]


def random_bundle(config: GeneratorConfig = TINY_RANDOM_CONFIG, seed: int = 0, name: str = "tiny-random",
                  with_segmenter: bool = False) -> Bundle:
    """Random weights; ``with_segmenter`` adds a random segmenter (read like the demo's: 5×5
    neighbourhoods and the RGB output) so edits and presets run end to end."""
    torch.manual_seed(seed)
    g = Generator(config).eval()
    with torch.no_grad():
        g.mapping.w_avg.copy_(g.mapping(torch.randn(4000, config.z_dim)).mean(0))
    bundle = Bundle(name=name, generator=g, classes=toy_classes(), domain="toy-portraits",
                    licence="MIT", provenance={"kind": "random weights", "seed": seed})
    if with_segmenter:
        from .segmenter import Segmenter
        torch.manual_seed(seed + 1)
        bundle.components["segmenter"] = Segmenter.for_generator(g, len(bundle.classes), context=5,
                                                                   read_image=True).eval()
    return bundle


def default_bundle_path() -> Path:
    return DEMO_BUNDLE
