"""Import NVIDIA stylegan2-ada-pytorch (and stylegan3-repo StyleGAN2) network pickles.

Reads ``G_ema`` through :mod:`.safe_pickle` (no code from the file runs); the parameter layout is
already ours, so the import is a check of names and shapes plus the architecture read off the
tensors and the stored attributes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .. import ops
from ..generator import Generator, GeneratorConfig
from .safe_pickle import PersistentObject, flatten_module_state, restricted_load


class ImportErrorBadCheckpoint(ValueError):
    """The checkpoint is readable but not a supported StyleGAN2 generator."""


def _attr(obj: PersistentObject, name: str, default=None):
    return obj.state.get(name, default) if isinstance(obj, PersistentObject) else default


def _child(obj, name):
    return ((getattr(obj, "state", None) or {}).get("_modules") or {}).get(name)


def infer_channels(channels_by_res: dict[int, int]) -> tuple[int, int]:
    """Find (channel_base, channel_max) reproducing ``min(base // res, max)`` for every resolution."""
    channel_max = max(channels_by_res.values())
    top = max(channels_by_res)
    candidates = [channels_by_res[top] * top] + [c * r for r, c in channels_by_res.items()]
    for base in candidates:
        if all(min(base // r, channel_max) == c for r, c in channels_by_res.items()):
            return base, channel_max
    raise ImportErrorBadCheckpoint(f"channel widths {channels_by_res} do not follow min(base // res, max)")


def generator_from_state(state: dict[str, torch.Tensor], *, lr_multiplier: float, conv_clamp, source: str) -> Generator:
    """Build a Generator from an NVIDIA-layout flat state dict (extra constant filters are checked and dropped)."""
    if any(k.startswith("synthesis.input.") for k in state):
        raise ImportErrorBadCheckpoint(f"{source}: StyleGAN3 (alias-free) generators are not supported, only StyleGAN2")
    if "mapping.embed.weight" in state:
        raise ImportErrorBadCheckpoint(f"{source}: class-conditional generators are not supported")
    if any(k.endswith(".skip.weight") for k in state):
        raise ImportErrorBadCheckpoint(f"{source}: only the 'skip' generator architecture is supported")
    blocks = sorted({int(k.split(".")[1][1:]) for k in state if k.startswith("synthesis.b")})
    if not blocks or blocks[0] != 4:
        raise ImportErrorBadCheckpoint(f"{source}: no synthesis.b4 block found")
    resolution = blocks[-1]
    if blocks != [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]:
        raise ImportErrorBadCheckpoint(f"{source}: synthesis blocks {blocks} are not a power-of-two ladder")
    num_mapping = len({k.split(".")[1] for k in state if k.startswith("mapping.fc")})
    w_dim, z_dim = state["mapping.fc0.weight"].shape[0], state["mapping.fc0.weight"].shape[1]
    channels = {r: state[f"synthesis.b{r}.conv1.weight"].shape[0] for r in blocks}
    channel_base, channel_max = infer_channels(channels)
    cfg = GeneratorConfig(resolution=resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=num_mapping,
                          mapping_lr_multiplier=float(lr_multiplier), channel_base=channel_base, channel_max=channel_max,
                          img_channels=state[f"synthesis.b{resolution}.torgb.weight"].shape[0],
                          conv_clamp=None if conv_clamp is None else float(conv_clamp),
                          use_noise="synthesis.b4.conv1.noise_const" in state)
    reference_filter = ops.setup_filter()
    clean = {}
    for key, value in state.items():
        if key.endswith("resample_filter"):
            if value.shape != reference_filter.shape or (value.float() - reference_filter).abs().max() > 1e-6:
                raise ImportErrorBadCheckpoint(f"{source}: {key} is not the standard [1,3,3,1] filter")
            continue
        clean[key] = value.float()
    if "mapping.w_avg" not in clean:
        raise ImportErrorBadCheckpoint(f"{source}: missing mapping.w_avg (the mean latent)")
    g = Generator(cfg)
    expected = g.state_dict()
    missing, unexpected = sorted(set(expected) - set(clean)), sorted(set(clean) - set(expected))
    if missing or unexpected:
        raise ImportErrorBadCheckpoint(f"{source}: layout mismatch; missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, value in clean.items():
        if value.shape != expected[key].shape:
            raise ImportErrorBadCheckpoint(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
    g.load_state_dict(clean)
    return g.eval()


def load_nvidia_pickle(path: str | Path) -> tuple[Generator, dict]:
    """Read ``G_ema`` from an NVIDIA network pickle; returns the generator and provenance facts."""
    path = Path(path)
    data = restricted_load(path)
    if not isinstance(data, dict) or "G_ema" not in data:
        raise ImportErrorBadCheckpoint(f"{path}: no 'G_ema' entry (is this a stylegan2-ada-pytorch network pickle?)")
    g_ema = data["G_ema"]
    if not isinstance(g_ema, PersistentObject):
        raise ImportErrorBadCheckpoint(f"{path}: 'G_ema' is not a network object")
    if int(_attr(g_ema, "c_dim", 0) or 0) != 0:
        raise ImportErrorBadCheckpoint(f"{path}: class-conditional generators are not supported")
    state = flatten_module_state(g_ema)
    fc0 = _child(_child(g_ema, "mapping"), "fc0")
    lr_multiplier = _attr(fc0, "bias_gain", 0.01)
    b4_conv1 = _child(_child(_child(g_ema, "synthesis"), "b4"), "conv1")
    conv_clamp = _attr(b4_conv1, "conv_clamp", None)
    g = generator_from_state(state, lr_multiplier=lr_multiplier, conv_clamp=conv_clamp, source=str(path))
    return g, {"source_format": "nvidia-pkl", "source_file": path.name, "source_class": g_ema.class_name}
