"""Low-level StyleGAN2 ops in plain PyTorch: FIR resampling, bias+activation, modulated conv.

Every op has a *reference* path written the obvious way (zero insertion, per-sample loops) and a
fast path (transposed/grouped convolutions). The tests check they agree; the networks use the fast
paths. The maths follows NVIDIA's stylegan2-ada-pytorch so imported checkpoints render the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
MODCONV_MODES = ("grouped", "scaled", "reference")


def gaussian_taps(size: int, sigma: float) -> torch.Tensor:
    """1-D Gaussian of ``size`` taps centred on the middle one, normalized to sum 1."""
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-t * t / (2 * sigma * sigma))
    return g / g.sum()


def separable_conv(x: torch.Tensor, taps: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """Depthwise filtering of ``[N, C, H, W]`` with 1-D ``taps`` along both axes (``padding`` zeros
    each side; 0 = valid convolution)."""
    c, k = x.shape[1], taps.numel()
    w = taps.to(x).view(1, 1, 1, k).expand(c, 1, 1, k)
    x = F.conv2d(x, w, padding=(0, padding), groups=c)
    return F.conv2d(x, w.transpose(2, 3), padding=(padding, 0), groups=c)


def setup_filter(taps=(1, 3, 3, 1)) -> torch.Tensor:
    """Separable FIR low-pass filter as a normalized 2-D kernel (sum 1)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, up: int = 1, pad=(0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Reference: zero-insertion upsampling, padding (left, right, top, bottom), FIR filtering."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, list(pad))
    kernel = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1).to(x.dtype)
    return F.conv2d(x, kernel, groups=c)


def filter2d(x: torch.Tensor, f: torch.Tensor, pad: int, gain: float = 1.0) -> torch.Tensor:
    """Depthwise FIR filter with symmetric padding (the blur after a transposed conv)."""
    c = x.shape[1]
    kernel = (f * gain).flip([0, 1])[None, None].expand(c, 1, *f.shape).to(x.dtype)
    return F.conv2d(F.pad(x, [pad] * 4), kernel, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR upsampling; equals ``upfirdn2d_ref(x, f, up=2, pad=(2, 1, 2, 1), gain=4)``."""
    c = x.shape[1]
    kernel = (f * 4).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv_transpose2d(x, kernel, stride=2, padding=1, groups=c)


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, act: str = "lrelu", gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """Add a per-channel bias, apply the activation and gain, clamp (NVIDIA's ``bias_act``)."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain)
    elif act == "linear":
        if gain != 1.0:
            x = x * gain
    else:
        raise ValueError(f"unknown activation {act!r}")
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _demod_coefs(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1/||w * s|| per (sample, output channel): weight [O,I,k,k], styles [N,I] -> [N,O]."""
    w = weight[None] * styles[:, None, :, None, None]
    return (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()


def _conv_up_ref(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Stride-2 transposed conv written as zero insertion + full correlation with the flipped kernel."""
    n, c, h, wd = x.shape
    k = w.shape[-1]
    z = x.new_zeros(n, c, 2 * h - 1, 2 * wd - 1)
    z[:, :, ::2, ::2] = x
    return F.conv2d(z, w.flip([2, 3]), padding=k - 1)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     up: bool = False, resample_filter: torch.Tensor | None = None,
                     mode: str = "grouped") -> torch.Tensor:
    """StyleGAN2 modulated convolution (noise and bias are added by the caller).

    Args:
        x: input activations [N, I, H, W].
        weight: shared kernel [O, I, k, k] (odd k; padding keeps the size, ``up`` doubles it).
        styles: per-sample input-channel scales [N, I].
        demodulate: normalize each output channel of the modulated kernel to unit norm.
        up: 2x upsampling via transposed conv followed by the FIR ``resample_filter``.
        mode: ``grouped`` (one grouped conv with per-sample kernels; the usual GPU choice at batch 1),
            ``scaled`` (scale activations instead of kernels; faster on CPU at every batch size measured),
            ``reference`` (a per-sample loop; the plain path the others are tested against).
    """
    n, i, h, w = x.shape
    o, wi, kh, kw = weight.shape
    assert wi == i and styles.shape == (n, i), f"modconv shapes: x {tuple(x.shape)} w {tuple(weight.shape)} s {tuple(styles.shape)}"
    assert mode in MODCONV_MODES, f"unknown modconv mode {mode!r}"
    if up:
        assert resample_filter is not None, "up=True needs resample_filter"
    pad = kh // 2
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)

    if mode == "reference":
        outs = []
        for b in range(n):
            wb = weight * styles[b][None, :, None, None]
            if demodulate:
                wb = wb * (wb.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
            xb = x[b:b + 1]
            if up:
                yb = upfirdn2d_ref(_conv_up_ref(xb, wb), resample_filter, pad=(1, 1, 1, 1), gain=4)
            else:
                yb = F.conv2d(xb, wb, padding=pad)
            outs.append(yb)
        return torch.cat(outs)

    if mode == "scaled":
        x = x * styles[:, :, None, None]
        if up:
            x = filter2d(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2), resample_filter, pad=1, gain=4)
        else:
            x = F.conv2d(x, weight, padding=pad)
        if demodulate:
            x = x * _demod_coefs(weight, styles)[:, :, None, None]
        return x

    # grouped: build one kernel per sample and run a single grouped convolution
    wb = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        wb = wb * (wb.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    x = x.reshape(1, n * i, h, w)
    if up:
        wt = wb.transpose(1, 2).reshape(n * i, o, kh, kw)
        x = F.conv_transpose2d(x, wt, stride=2, groups=n)
        x = filter2d(x, resample_filter, pad=1, gain=4)
    else:
        x = F.conv2d(x, wb.reshape(n * o, i, kh, kw), padding=pad, groups=n)
    return x.reshape(n, o, *x.shape[2:])


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit RMS (the mapping network's input normalization)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
