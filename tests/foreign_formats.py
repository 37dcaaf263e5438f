"""Builders of small checkpoints in *foreign* layouts (NVIDIA pickle, rosinality .pt) from our models.

They are written from those projects' layouts, independently of the importers' key maps, so a
wrong map fails the round-trip tests.
"""

from __future__ import annotations

import argparse
import collections
import math
import pickle
import sys
import types

import torch

from editgan import ops

# --- a fake `torch_utils.persistence` so pickle writes the same GLOBAL NVIDIA's files contain ---
_persistence = types.ModuleType("torch_utils.persistence")
_dnnlib_util = types.ModuleType("dnnlib.util")


def _reconstruct_persistent_obj(meta):  # only used when *writing*; the importer never calls it
    raise AssertionError("the importer must not call NVIDIA's reconstruct hook")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
_persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj


class EasyDict(dict):
    pass


EasyDict.__module__ = "dnnlib.util"
_dnnlib_util.EasyDict = EasyDict
sys.modules.setdefault("torch_utils", types.ModuleType("torch_utils"))
sys.modules["torch_utils.persistence"] = _persistence
sys.modules.setdefault("dnnlib", types.ModuleType("dnnlib"))
sys.modules["dnnlib.util"] = _dnnlib_util

# Source code travels inside NVIDIA pickles; running it would create this marker file.
EVIL_SOURCE = "open({marker!r}, 'w').write('ran')\nclass Generator: pass\n"


class Persistent:
    def __init__(self, class_name, state, module_src="class X: pass\n"):
        self.meta = dict(type="class", version=4, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


def _nvidia_module(module: torch.nn.Module, class_name: str, extra: dict, module_src: str) -> Persistent:
    params = collections.OrderedDict((k, torch.nn.Parameter(v.detach().clone())) for k, v in module._parameters.items())
    buffers = collections.OrderedDict((k, v.clone()) for k, v in module._buffers.items()
                                      if k not in module._non_persistent_buffers_set)
    children = collections.OrderedDict()
    for name, child in module._modules.items():
        children[name] = _nvidia_module(child, type(child).__name__, {}, module_src)
    if hasattr(module, "up") or class_name == "SynthesisBlock":
        buffers["resample_filter"] = ops.setup_filter()  # NVIDIA stores this constant in every block and up-layer
    for attr in ("weight_gain", "bias_gain", "conv_clamp", "activation", "resolution", "up"):
        if hasattr(module, attr):
            extra = {attr: getattr(module, attr), **extra}
    state = {"training": False, "_parameters": params, "_buffers": buffers, "_modules": children,
             "_init_kwargs": EasyDict(), "_init_args": (), **extra}
    return Persistent(class_name, state, module_src)


def write_nvidia_pickle(generator, path, module_src: str = "class X: pass\n", extra_objects: dict | None = None):
    cfg = generator.cfg
    g_ema = _nvidia_module(generator, "Generator",
                           {"z_dim": cfg.z_dim, "c_dim": 0, "w_dim": cfg.w_dim, "img_resolution": cfg.resolution,
                            "img_channels": cfg.img_channels}, module_src)
    data = {"G": g_ema, "D": None, "G_ema": g_ema, "augment_pipe": None,
            "training_set_kwargs": EasyDict(path="faces.zip", resolution=cfg.resolution), **(extra_objects or {})}
    with open(path, "wb") as f:
        pickle.dump(data, f)


def rosinality_state(generator) -> dict[str, torch.Tensor]:
    """Our generator's weights in rosinality/stylegan2-pytorch's `g_ema` layout."""
    sd = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    blur = ops.setup_filter() * 4
    out = {}
    for i in range(generator.cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    noise_idx = 0

    def styled(theirs, ours, upsample):
        nonlocal noise_idx
        w = sd[f"{ours}.weight"]
        out[f"{theirs}.conv.weight"] = (w * math.sqrt(w[0].numel()))[None]  # rosinality scales at run time
        out[f"{theirs}.conv.modulation.weight"] = sd[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"{ours}.affine.bias"]
        out[f"{theirs}.noise.weight"] = sd[f"{ours}.noise_strength"].reshape(1)
        out[f"{theirs}.activate.bias"] = sd[f"{ours}.bias"]
        if upsample:
            out[f"{theirs}.conv.blur.kernel"] = blur
        out[f"noises.noise_{noise_idx}"] = sd[f"{ours}.noise_const"][None, None]
        noise_idx += 1

    def to_rgb(theirs, ours, upsample):
        out[f"{theirs}.conv.weight"] = sd[f"{ours}.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"{ours}.affine.bias"]
        out[f"{theirs}.bias"] = sd[f"{ours}.bias"].reshape(1, -1, 1, 1)
        if upsample:
            out[f"{theirs}.upsample.kernel"] = blur

    styled("conv1", "synthesis.b4.conv1", False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", False)
    for j, res in enumerate(generator.cfg.block_resolutions[1:]):
        styled(f"convs.{2 * j}", f"synthesis.b{res}.conv0", True)
        styled(f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1", False)
        to_rgb(f"to_rgbs.{j}", f"synthesis.b{res}.torgb", True)
    return out


def write_rosinality(generator, path, with_latent_avg=True):
    ckpt = {"g_ema": rosinality_state(generator), "args": argparse.Namespace(size=generator.resolution, lr_mlp=0.01)}
    if with_latent_avg:
        ckpt["latent_avg"] = generator.w_avg.detach().clone()
    torch.save(ckpt, path)
