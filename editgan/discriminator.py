"""StyleGAN2 residual discriminator (training only; never shipped in a bundle)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .generator import FullyConnectedLayer


class Conv2dLayer(nn.Module):
    """Conv with equalized learning rate, optional 2x average-pool downsampling, bias + activation."""

    def __init__(self, cin: int, cout: int, kernel: int, *, down: bool = False, bias: bool = True,
                 activation: str = "lrelu"):
        super().__init__()
        self.down, self.activation, self.pad = down, activation, kernel // 2
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.weight_gain = 1 / math.sqrt(cin * kernel * kernel)

    def forward(self, x):
        if self.down:
            x = F.avg_pool2d(x, 2)
        x = F.conv2d(x, self.weight * self.weight_gain, padding=self.pad)
        return ops.bias_act(x, self.bias, act=self.activation)


class DiscriminatorBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = Conv2dLayer(cin, cin, 3)
        self.conv1 = Conv2dLayer(cin, cout, 3, down=True)
        self.skip = Conv2dLayer(cin, cout, 1, down=True, bias=False, activation="linear")

    def forward(self, x):
        y = self.skip(x)
        x = self.conv1(self.conv0(x))
        return (x + y) * math.sqrt(0.5)


class Discriminator(nn.Module):
    """Residual D: fromRGB → blocks down to 4² → minibatch-stddev → conv → fc → score.

    Args:
        resolution: input side (power of two ≥ 8).
        channel_base, channel_max: channels at resolution r = min(channel_base // r, channel_max).
        mbstd_group: minibatch standard deviation group size (the feature that fights mode collapse).
    """

    def __init__(self, resolution: int, channel_base: int = 4096, channel_max: int = 256, mbstd_group: int = 4):
        super().__init__()
        self.resolution, self.mbstd_group = resolution, mbstd_group
        ch = lambda r: min(channel_base // r, channel_max)  # noqa: E731
        self.fromrgb = Conv2dLayer(3, ch(resolution), 1)
        blocks, r = [], resolution
        while r > 4:
            blocks.append(DiscriminatorBlock(ch(r), ch(r // 2)))
            r //= 2
        self.blocks = nn.Sequential(*blocks)
        self.conv = Conv2dLayer(ch(4) + 1, ch(4), 3)
        self.fc = FullyConnectedLayer(ch(4) * 16, ch(4), activation="lrelu")
        self.out = FullyConnectedLayer(ch(4), 1)

    def _mbstd(self, x):
        n, c, h, w = x.shape
        g = min(self.mbstd_group, n)
        while n % g:
            g -= 1
        y = x.reshape(g, -1, c, h, w)
        y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean(dim=[1, 2, 3])
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.shape[1:] == (3, self.resolution, self.resolution), f"D expects 3x{self.resolution}², got {tuple(img.shape)}"
        x = self.blocks(self.fromrgb(img))
        x = self.conv(self._mbstd(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)
