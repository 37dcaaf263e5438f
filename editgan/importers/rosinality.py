"""Import rosinality/stylegan2-pytorch checkpoints (``g_ema`` + ``latent_avg``) by key map.

Loaded with ``torch.load(weights_only=True)``; the training checkpoints' ``args`` (an
``argparse.Namespace`` of plain values) is the only non-tensor object allowed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ..generator import Generator
from .nvidia import ImportErrorBadCheckpoint, generator_from_state


def _conv_layer(src: dict, ours: str, theirs: str, noise: str | None, out: dict) -> None:
    """One StyledConv: demodulated, so folding rosinality's 1/sqrt(fan_in) into the weight is exact."""
    w = src[f"{theirs}.conv.weight"][0]
    out[f"{ours}.weight"] = w / math.sqrt(w[0].numel())
    out[f"{ours}.affine.weight"] = src[f"{theirs}.conv.modulation.weight"]
    out[f"{ours}.affine.bias"] = src[f"{theirs}.conv.modulation.bias"]
    out[f"{ours}.bias"] = src[f"{theirs}.activate.bias"]
    if noise is not None and f"{theirs}.noise.weight" in src:
        out[f"{ours}.noise_strength"] = src[f"{theirs}.noise.weight"].reshape([])
        out[f"{ours}.noise_const"] = src[noise][0, 0]


def _torgb_layer(src: dict, ours: str, theirs: str, out: dict) -> None:
    out[f"{ours}.weight"] = src[f"{theirs}.conv.weight"][0]
    out[f"{ours}.affine.weight"] = src[f"{theirs}.conv.modulation.weight"]
    out[f"{ours}.affine.bias"] = src[f"{theirs}.conv.modulation.bias"]
    out[f"{ours}.bias"] = src[f"{theirs}.bias"].reshape(-1)


def convert_state(src: dict[str, torch.Tensor], latent_avg: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rosinality ``g_ema`` state dict → NVIDIA-layout state dict."""
    out: dict[str, torch.Tensor] = {}
    n_mlp = len({k.split(".")[1] for k in src if k.startswith("style.") and k.endswith(".weight")})
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = src[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = src[f"style.{i + 1}.bias"]
    out["mapping.w_avg"] = latent_avg.reshape(-1)
    out["synthesis.b4.const"] = src["input.input"][0]
    _conv_layer(src, "synthesis.b4.conv1", "conv1", "noises.noise_0", out)
    _torgb_layer(src, "synthesis.b4.torgb", "to_rgb1", out)
    num_up = len({k.split(".")[1] for k in src if k.startswith("to_rgbs.")})
    for j in range(num_up):
        res = 2 ** (j + 3)
        _conv_layer(src, f"synthesis.b{res}.conv0", f"convs.{2 * j}", f"noises.noise_{2 * j + 1}", out)
        _conv_layer(src, f"synthesis.b{res}.conv1", f"convs.{2 * j + 1}", f"noises.noise_{2 * j + 2}", out)
        _torgb_layer(src, f"synthesis.b{res}.torgb", f"to_rgbs.{j}", out)
    return out


def load_rosinality(path: str | Path) -> tuple[Generator, dict]:
    path = Path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ImportErrorBadCheckpoint(f"{path}: not a plain tensor checkpoint ({e.__class__.__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
        raise ImportErrorBadCheckpoint(f"{path}: no 'g_ema' entry (is this a rosinality stylegan2-pytorch checkpoint?)")
    src = ckpt["g_ema"]
    lr_mul = 0.01
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace):
        lr_mul = float(getattr(args, "lr_mlp", lr_mul))
    try:
        latent_avg = ckpt.get("latent_avg")
        if latent_avg is None:
            latent_avg = _estimate_latent_avg(src, lr_mul, path)
        state = convert_state(src, latent_avg)
    except KeyError as e:
        raise ImportErrorBadCheckpoint(f"{path}: missing tensor {e.args[0]!r} in g_ema") from None
    g = generator_from_state(state, lr_multiplier=lr_mul, conv_clamp=None, source=str(path))
    return g, {"source_format": "rosinality-pt", "source_file": path.name}


def _estimate_latent_avg(src: dict, lr_mul: float, path: Path) -> torch.Tensor:
    """Checkpoints without ``latent_avg``: average the mapping of 10k random z (as rosinality's tools do)."""
    state = convert_state(src, torch.zeros(src["style.1.weight"].shape[0]))
    g = generator_from_state(state, lr_multiplier=lr_mul, conv_clamp=None, source=str(path))
    with torch.no_grad():
        return g.mapping(torch.randn(10000, g.z_dim, generator=torch.Generator().manual_seed(0))).mean(0)
