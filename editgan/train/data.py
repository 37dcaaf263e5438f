"""Endless streams of toy-portrait renders for training (fresh faces every batch, no dataset on disk)."""

from __future__ import annotations

import numpy as np
import torch

from .. import toyfaces
from ..imageio import from_uint8
from .losses import class_balanced_weights


class ToyFaceStream:
    """Deterministic per seed: batch k of a stream is always the same faces."""

    def __init__(self, resolution: int, batch: int, seed: int = 0):
        self.resolution, self.batch = resolution, batch
        self.rng = np.random.default_rng(seed)

    def next_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        params = [toyfaces.sample_params(self.rng) for _ in range(self.batch)]
        return toyfaces.render_batch(params, size=self.resolution)

    def next_batch(self) -> torch.Tensor:
        return self.next_labelled_batch()[0]

    def next_labelled_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[N, 3, H, W]`` in [-1, 1] and their class labels ``[N, H, W]`` (int64)."""
        rgb, labels = self.next_arrays()
        return from_uint8(rgb), torch.from_numpy(labels.astype(np.int64))


def class_frequencies(resolution: int, count: int = 256, seed: int = 10 ** 9 + 7) -> torch.Tensor:
    """Share of the pixels of each class over ``count`` renders (a fixed sample: deterministic)."""
    stream = ToyFaceStream(resolution, 32, seed=seed)
    counts = np.zeros(len(toyfaces.CLASSES))
    for _ in range(-(-count // 32)):
        counts += np.bincount(stream.next_arrays()[1].ravel(), minlength=len(counts))
    return torch.from_numpy(counts / counts.sum()).float()


def class_pixel_weighting(resolution: int, power: float):
    """``labels [N, H, W] -> pixel weights [N, 1, H, W]`` for ``pixel_loss``, each class weighted by its
    frequency^-power (``class_balanced_weights``); None when ``power`` is 0 (every pixel alike)."""
    if power <= 0:
        return None
    table = class_balanced_weights(class_frequencies(resolution), power)
    return lambda labels: table.to(labels.device)[labels].unsqueeze(1)
