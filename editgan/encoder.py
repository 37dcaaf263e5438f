"""Image → W+ encoder: the embedding's starting point (then a few optimizer steps refine it).

A small residual CNN; like pSp it reads coarse W+ entries from the lowest-resolution features and
fine entries from higher-resolution ones, and predicts offsets from the generator's mean latent so
an untrained encoder starts at the mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .generator import GeneratorConfig


class _ResBlockDown(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, stride=2, bias=False)

    def forward(self, x):
        y = self.conv2(F.leaky_relu(self.conv1(x), 0.2))
        return F.leaky_relu(y + self.skip(x), 0.2) / math.sqrt(2)


class _StyleHead(nn.Module):
    """Features at resolution r → ``count`` W vectors (strided convs down to 4², then a linear map)."""

    def __init__(self, channels: int, resolution: int, count: int, w_dim: int, head_channels: int):
        super().__init__()
        layers, c = [], channels
        while resolution > 4:
            layers += [nn.Conv2d(c, head_channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c, resolution = head_channels, resolution // 2
        layers += [nn.Conv2d(c, head_channels, 1), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        self.count, self.w_dim = count, w_dim
        self.fc = nn.Linear(head_channels * 16, count * w_dim)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(self.convs(x).flatten(1)).reshape(-1, self.count, self.w_dim)


class Encoder(nn.Module):
    """Predicts W+ = w_avg + offsets for images at the generator's resolution.

    Args:
        resolution: input side (the generator's).
        num_ws, w_dim: the W+ shape to predict.
        base_channels: channels of the first stage; doubled per stage up to ``max_channels``.
        max_channels: cap on trunk channels.
        head_channels: channels inside each style head.
    """

    def __init__(self, resolution: int, num_ws: int, w_dim: int, base_channels: int = 32,
                 max_channels: int = 256, head_channels: int = 64):
        super().__init__()
        self.resolution, self.num_ws, self.w_dim = resolution, num_ws, w_dim
        self.base_channels, self.max_channels, self.head_channels = base_channels, max_channels, head_channels
        self.stem = nn.Conv2d(3, base_channels, 3, padding=1)
        stages, chans, c, r = [], {}, base_channels, resolution
        while r > 4:
            cout = min(c * 2, max_channels)
            stages.append(_ResBlockDown(c, cout))
            c, r = cout, r // 2
            chans[r] = c
        self.stages = nn.ModuleList(stages)
        # coarse W+ entries (≈ first 40 %) from 4², middle from 8², fine from 16² features
        n_coarse = max(1, round(num_ws * 0.4))
        n_mid = max(1, round(num_ws * 0.3)) if num_ws > 2 else 0
        n_fine = num_ws - n_coarse - n_mid
        self.groups = [(4, n_coarse), (8, n_mid), (16, n_fine)]
        self.heads = nn.ModuleDict({str(res): _StyleHead(chans[res], res, n, w_dim, head_channels)
                                    for res, n in self.groups if n > 0})
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @classmethod
    def from_config(cls, cfg: dict, generator_config: GeneratorConfig) -> "Encoder":
        allowed = {"base_channels", "max_channels", "head_channels"}
        if set(cfg) - allowed - {"resolution", "num_ws", "w_dim"}:
            raise ValueError(f"unknown encoder config fields {sorted(set(cfg) - allowed)}")
        return cls(generator_config.resolution, generator_config.num_ws, generator_config.w_dim,
                   **{k: int(v) for k, v in cfg.items() if k in allowed})

    def config_dict(self) -> dict:
        return {"resolution": self.resolution, "num_ws": self.num_ws, "w_dim": self.w_dim,
                "base_channels": self.base_channels, "max_channels": self.max_channels,
                "head_channels": self.head_channels}

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.ndim == 4 and img.shape[1:] == (3, self.resolution, self.resolution), \
            f"encoder expects [N, 3, {self.resolution}, {self.resolution}], got {tuple(img.shape)}"
        x = F.leaky_relu(self.stem(img), 0.2)
        feats = {}
        r = self.resolution
        for stage in self.stages:
            x = stage(x)
            r //= 2
            feats[r] = x
        offsets = torch.cat([self.heads[str(res)](feats[res]) for res, n in self.groups if n > 0], dim=1)
        return self.w_avg.reshape(1, 1, -1) + offsets
