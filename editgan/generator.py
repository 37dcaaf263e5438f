"""StyleGAN2 generator (mapping + synthesis) in plain PyTorch.

Parameter names follow NVIDIA's stylegan2-ada-pytorch (``mapping.fc0.weight``,
``synthesis.b4.const``, ``synthesis.b8.conv0.affine.weight`` …) so importing a checkpoint is a
key map. ``synthesis(ws)`` returns the image *and* every conv layer's feature map at its native
resolution: the segmentation branch reads them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from . import ops


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a generator; stored in a bundle's ``model.json``.

    Attributes:
        resolution: output side, a power of two in 32…1024.
        z_dim: input latent size.
        w_dim: intermediate latent (W) size.
        mapping_layers: fully connected layers in the mapping network.
        mapping_lr_multiplier: learning-rate multiplier of the mapping network (equalized lr).
        channel_base: channels at resolution r are ``min(channel_base // r, channel_max)``.
        channel_max: upper bound on channels.
        img_channels: output image channels.
        conv_clamp: clamp conv outputs to ±value (NVIDIA configs use 256), or None.
        use_noise: per-layer noise inputs (fixed buffers, so W+ → image is deterministic).
        w_avg_beta: EMA decay of the tracked mean latent during training.
    """

    resolution: int = 64
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    channel_base: int = 32768
    channel_max: int = 512
    img_channels: int = 3
    conv_clamp: float | None = None
    use_noise: bool = True
    w_avg_beta: float = 0.995

    def __post_init__(self):
        r = self.resolution
        if not (32 <= r <= 1024 and r & (r - 1) == 0):
            raise ValueError(f"resolution must be a power of two in 32..1024, got {r}")
        for name in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "img_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1")

    @property
    def block_resolutions(self) -> list[int]:
        return [2 ** i for i in range(2, int(math.log2(self.resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        """Number of W+ vectors: one per conv layer plus one for the last toRGB."""
        return 2 * int(math.log2(self.resolution)) - 2

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator config fields: {sorted(unknown)}")
        return cls(**d)


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalized learning rate: weights stored at unit scale, scaled at run time."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0,
                 lr_multiplier: float = 1.0, activation: str = "linear"):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.linear(x, self.weight * self.weight_gain)
        return ops.bias_act(x, self.bias * self.bias_gain, act=self.activation)


class MappingNetwork(nn.Module):
    """z → w: normalize, then an MLP; tracks the mean w (``w_avg``) for truncation."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.z_dim, self.w_dim, self.num_layers = cfg.z_dim, cfg.w_dim, cfg.mapping_layers
        self.w_avg_beta = cfg.w_avg_beta
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            layer = FullyConnectedLayer(dims[i], dims[i + 1], activation="lrelu", lr_multiplier=cfg.mapping_lr_multiplier)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {tuple(z.shape)}"
        x = ops.normalize_2nd_moment(z.float())
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg:
            self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling) + fixed noise + bias + leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, up: bool = False,
                 use_noise: bool = True, conv_clamp: float | None = None, kernel_size: int = 3):
        super().__init__()
        self.up, self.resolution, self.use_noise, self.conv_clamp = up, resolution, use_noise, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("resample_filter", ops.setup_filter(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, mode: str) -> torch.Tensor:
        styles = self.affine(w)
        x = ops.modulated_conv2d(x, self.weight, styles, up=self.up, resample_filter=self.resample_filter, mode=mode)
        assert x.shape[2] == self.resolution, f"layer output {x.shape[2]}² != {self.resolution}²"
        if self.use_noise:
            x = x + self.noise_const * self.noise_strength
        return ops.bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, mode: str) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, mode=mode)
        return ops.bias_act(x, self.bias, act="linear", clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' architecture: (const | conv0↑) → conv1 → toRGB, image upsampled and summed."""

    def __init__(self, in_channels: int, out_channels: int, cfg: GeneratorConfig, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.is_first = in_channels == 0
        layer_kw = dict(w_dim=cfg.w_dim, resolution=resolution, use_noise=cfg.use_noise, conv_clamp=cfg.conv_clamp)
        if self.is_first:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=True, **layer_kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kw)
        self.torgb = ToRGBLayer(out_channels, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp)
        self.num_conv = 1 if self.is_first else 2
        self.register_buffer("resample_filter", ops.setup_filter(), persistent=False)

    def forward(self, x, img, ws: torch.Tensor, mode: str, features: list):
        assert ws.shape[1] == self.num_conv + 1, f"block {self.resolution} expects {self.num_conv + 1} ws"
        if self.is_first:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, 0], mode)
            features.append(x)
        x = self.conv1(x, ws[:, self.num_conv - 1], mode)
        features.append(x)
        y = self.torgb(x, ws[:, self.num_conv], mode)
        img = y if img is None else ops.upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ (``[N, num_ws, w_dim]``) → image ``[N, 3, R, R]`` in about [-1, 1] plus feature maps."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.num_ws = cfg.num_ws
        self.block_resolutions = cfg.block_resolutions
        for res in self.block_resolutions:
            in_ch = 0 if res == 4 else cfg.channels(res // 2)
            setattr(self, f"b{res}", SynthesisBlock(in_ch, cfg.channels(res), cfg, res))

    @property
    def feature_channels(self) -> list[int]:
        """Channels of each returned feature map, in order (one per conv layer)."""
        chans = []
        for res in self.block_resolutions:
            chans += [self.cfg.channels(res)] * (1 if res == 4 else 2)
        return chans

    @property
    def feature_resolutions(self) -> list[int]:
        res_list = []
        for res in self.block_resolutions:
            res_list += [res] * (1 if res == 4 else 2)
        return res_list

    def forward(self, ws: torch.Tensor, mode: str = "auto") -> tuple[torch.Tensor, list[torch.Tensor]]:
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.cfg.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.cfg.w_dim}], got {tuple(ws.shape)}"
        if mode == "auto":  # CPU: scaled is 13–22 % faster even at batch 1 (docs/benchmarks.md, generator)
            mode = "grouped" if ws.shape[0] == 1 and ws.is_cuda else "scaled"
        x = img = None
        features: list[torch.Tensor] = []
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, w_idx:w_idx + block.num_conv + 1], mode, features)
            w_idx += block.num_conv
        return img, features


class Generator(nn.Module):
    """Mapping + synthesis; ``forward(z)`` samples images, ``synthesis(ws)`` renders a W+ latent."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws, self.resolution = cfg.z_dim, cfg.w_dim, cfg.num_ws, cfg.resolution
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def mean_ws(self, batch: int = 1) -> torch.Tensor:
        """The mean latent broadcast to W+ (the usual starting point of an embedding)."""
        return self.w_avg.detach().reshape(1, 1, -1).repeat(batch, self.num_ws, 1)

    def map(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z → W+ (the same w repeated ``num_ws`` times)."""
        w = self.mapping(z, truncation_psi=truncation_psi)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, mode: str = "auto") -> torch.Tensor:
        img, _ = self.synthesis(self.map(z, truncation_psi), mode=mode)
        return img

    def z_from_seed(self, seed: int, batch: int = 1) -> torch.Tensor:
        gen = torch.Generator().manual_seed(int(seed))
        return torch.randn(batch, self.z_dim, generator=gen)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
