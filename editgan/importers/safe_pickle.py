"""A restricted unpickler for NVIDIA network pickles that never runs code from the file.

NVIDIA's ``.pkl`` files hold ``torch_utils.persistence`` objects: each carries the *source code*
of its class, which the official loader executes. We refuse that. The unpickler resolves only an
allow-list of globals (tensor/storage rebuilds, ``OrderedDict``, NVIDIA's ``EasyDict`` as a dict,
numpy scalars) and turns every persistent object into an inert :class:`PersistentObject` that keeps
its state (parameters, buffers, attributes) without importing or executing its source. Any other
global — ``os.system``, ``builtins.eval``, … — raises :class:`UnsafePickleError` before anything
can be called.
"""

from __future__ import annotations

import collections
import io
import pickle

import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list (it would run code)."""


class PersistentObject:
    """Inert stand-in for an NVIDIA persistent class instance: its class name and its ``__dict__``."""

    def __init__(self, class_name: str, state: dict):
        self.class_name = class_name
        self.state = state

    def __repr__(self):
        return f"PersistentObject({self.class_name})"


class ModuleStub:
    """Inert stand-in for a plain ``torch.nn`` container (e.g. ModuleList) inside a pickle."""

    class_name = "Module"

    def __setstate__(self, state):
        self.state = state


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise UnsafePickleError("malformed persistent object record")
    return PersistentObject(str(meta.get("class_name")), meta["state"])


def _load_storage_from_bytes(data: bytes):
    # torch's own helper runs a full (unrestricted) torch.load here; this one reads tensors only.
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    return data.detach()


class _EasyDict(dict):
    """NVIDIA's ``dnnlib.EasyDict`` read as a plain dict (no attribute magic needed)."""


def _codecs_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("unexpected _codecs.encode call")
    return text.encode("latin1")


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("_codecs", "encode"): _codecs_encode,
    ("torch", "Size"): torch.Size,
}
for _dt in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
    _ALLOWED[("torch", _dt)] = getattr(torch, _dt)


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module.startswith("torch.nn.modules."):
            return type(name, (ModuleStub,), {"class_name": name})
        raise UnsafePickleError(f"refused to load global {module}.{name}: this file would run code, "
                                f"which EditGAN never allows (only tensors and NVIDIA's network state are read)")

    def persistent_load(self, pid):
        raise UnsafePickleError("persistent ids are not supported in network pickles")


def restricted_load(file) -> object:
    """Unpickle ``file`` (path or binary file object) with the allow-list above."""
    if hasattr(file, "read"):
        return RestrictedUnpickler(file).load()
    with open(file, "rb") as f:
        return RestrictedUnpickler(f).load()


def flatten_module_state(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """``state_dict()``-style flattening of a PersistentObject/ModuleStub tree."""
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        return {}
    out = {}
    for group in ("_parameters", "_buffers"):
        for key, value in (state.get(group) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + key] = value
    for key, child in (state.get("_modules") or {}).items():
        out.update(flatten_module_state(child, prefix + key + "."))
    return out
