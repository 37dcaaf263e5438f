"""Endless streams of toy-portrait renders for training (fresh faces every batch, no dataset on disk)."""

from __future__ import annotations

import numpy as np
import torch

from .. import toyfaces
from ..imageio import from_uint8


class ToyFaceStream:
    """Deterministic per seed: batch k of a stream is always the same faces."""

    def __init__(self, resolution: int, batch: int, seed: int = 0):
        self.resolution, self.batch = resolution, batch
        self.rng = np.random.default_rng(seed)

    def next_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        params = [toyfaces.sample_params(self.rng) for _ in range(self.batch)]
        return toyfaces.render_batch(params, size=self.resolution)

    def next_batch(self) -> torch.Tensor:
        rgb, _ = self.next_arrays()
        return from_uint8(rgb)
