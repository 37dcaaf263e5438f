"""Model bundles: a folder with ``model.json``, ``generator.pt`` and optional components.

Layout::

    model.json          manifest (format version, name, domain, resolution, classes, configs, provenance)
    generator.pt        generator state_dict
    segmenter.pt        optional: segmentation branch state_dict (config in model.json)
    encoder.pt          optional: image → W+ encoder state_dict (config in model.json)
    presets/<name>.json + <name>.npy   editing vectors

Nothing here unpickles: tensors are read with ``torch.load(weights_only=True)`` and arrays with
``np.load(allow_pickle=False)``. Every problem is a :class:`BundleError` naming file and field.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .generator import Generator, GeneratorConfig

FORMAT = "editgan-bundle"
FORMAT_VERSION = 1
MANIFEST = "model.json"
PRESETS_DIR = "presets"

# Optional components: manifest key -> (module, class). Each class has ``from_config(dict, GeneratorConfig)``
# and ``config_dict()``; imported lazily so the bundle format does not depend on every model module.
COMPONENTS = {
    "segmenter": ("editgan.segmenter", "Segmenter"),
    "encoder": ("editgan.encoder", "Encoder"),
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class BundleError(ValueError):
    """A bundle is missing a file, has a malformed field or a mismatched tensor."""


def sanitize_name(name: str) -> str:
    """Turn a user-given name into a safe file stem (``"Big Smile!"`` → ``"big_smile"``).

    Refuses names that end up empty, so nothing can address a path outside its folder.
    """
    if not isinstance(name, str):
        raise BundleError(f"name must be a string, got {type(name).__name__}")
    stem = re.sub(r"[^a-z0-9_-]+", "_", name.strip().lower()).strip("_-")[:64]
    if not _NAME_RE.match(stem):
        raise BundleError(f"invalid name {name!r}: use letters, digits, '_' or '-'")
    return stem


@dataclass(frozen=True)
class ClassInfo:
    """A segmentation class: its palette ``color`` (what the user paints with) and, when known, its
    ``appearance``: the mean colour of its pixels in the annotated images, what a painted part of
    a class the face does not show yet should look like (:mod:`editgan.class_colours`)."""

    name: str
    color: tuple[int, int, int]
    appearance: tuple[int, int, int] | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "color": list(self.color),
                **({} if self.appearance is None else {"appearance": list(self.appearance)})}


@dataclass
class Bundle:
    """A loaded model: generator, classes/palette, optional segmenter and encoder, presets folder."""

    name: str
    generator: Generator
    classes: list[ClassInfo]
    domain: str = "unknown"
    licence: str = "unspecified"
    provenance: dict = field(default_factory=dict)
    components: dict[str, nn.Module] = field(default_factory=dict)
    path: Path | None = None
    edit_defaults: dict = field(default_factory=dict)  # EditSettings overrides measured best for this model

    @property
    def resolution(self) -> int:
        return self.generator.resolution

    @property
    def segmenter(self):
        return self.components.get("segmenter")

    @property
    def encoder(self):
        return self.components.get("encoder")

    @property
    def presets_dir(self) -> Path | None:
        return None if self.path is None else self.path / PRESETS_DIR

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return [c.color for c in self.classes]

    def manifest(self) -> dict:
        cfg = self.generator.cfg
        m = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "domain": self.domain,
            "resolution": cfg.resolution,
            "num_ws": cfg.num_ws,
            "w_dim": cfg.w_dim,
            "generator": cfg.to_dict(),
            "classes": [c.to_dict() for c in self.classes],
            "licence": self.licence,
            "provenance": self.provenance,
        }
        if self.edit_defaults:
            m["edit_defaults"] = dict(self.edit_defaults)
        for key, module in self.components.items():
            m[key] = module.config_dict()
        return m

    def save(self, path: str | Path) -> Path:
        """Write the bundle folder (presets already in ``path/presets`` are kept)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        validate_classes(self.manifest()["classes"], path / MANIFEST)
        torch.save(_cpu_state(self.generator), path / "generator.pt")
        for key, module in self.components.items():
            torch.save(_cpu_state(module), path / f"{key}.pt")
        (path / MANIFEST).write_text(json.dumps(self.manifest(), indent=2) + "\n")
        (path / PRESETS_DIR).mkdir(exist_ok=True)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "Bundle":
        path = Path(path)
        manifest_path = path / MANIFEST
        if not path.is_dir():
            raise BundleError(f"bundle folder not found: {path}")
        if not manifest_path.is_file():
            raise BundleError(f"{manifest_path}: missing manifest")
        try:
            m = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{manifest_path}: not valid JSON ({e})") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise BundleError(f"{manifest_path}: field 'format' must be {FORMAT!r}")
        if m.get("format_version") != FORMAT_VERSION:
            raise BundleError(f"{manifest_path}: unsupported format_version {m.get('format_version')!r} "
                              f"(this version reads {FORMAT_VERSION})")
        for key in ("name", "generator", "classes"):
            if key not in m:
                raise BundleError(f"{manifest_path}: missing field {key!r}")
        try:
            gcfg = GeneratorConfig.from_dict(m["generator"])
        except (TypeError, ValueError) as e:
            raise BundleError(f"{manifest_path}: field 'generator': {e}") from None
        for key, expected in (("resolution", gcfg.resolution), ("num_ws", gcfg.num_ws), ("w_dim", gcfg.w_dim)):
            if key in m and m[key] != expected:
                raise BundleError(f"{manifest_path}: field {key!r} is {m[key]} but the generator config implies {expected}")
        classes = validate_classes(m["classes"], manifest_path)
        edit_defaults = validate_edit_defaults(m.get("edit_defaults") or {}, manifest_path)

        generator = Generator(gcfg)
        _load_state(generator, path / "generator.pt")
        components = {}
        for key, (module_name, class_name) in COMPONENTS.items():
            if m.get(key) is None:
                continue
            component_cls = getattr(importlib.import_module(module_name), class_name)
            try:
                module = component_cls.from_config(m[key], gcfg)
            except (TypeError, ValueError, KeyError) as e:
                raise BundleError(f"{manifest_path}: field {key!r}: {e}") from None
            _load_state(module, path / f"{key}.pt")
            components[key] = module.to(device).eval()
        return cls(name=str(m["name"]), generator=generator.to(device).eval(), classes=classes,
                   domain=str(m.get("domain", "unknown")), licence=str(m.get("licence", "unspecified")),
                   provenance=m.get("provenance") or {}, components=components, path=path,
                   edit_defaults=edit_defaults)


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _load_state(module: nn.Module, file: Path) -> None:
    """Strict, shape-checked, pickle-free state_dict load with errors that name file and key."""
    if not file.is_file():
        raise BundleError(f"{file}: missing file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        raise BundleError(f"{file}: not a plain tensor checkpoint ({e.__class__.__name__}: {e})") from None
    if not isinstance(state, dict):
        raise BundleError(f"{file}: expected a state_dict, got {type(state).__name__}")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise BundleError(f"{file}: missing tensor {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        raise BundleError(f"{file}: unexpected tensor {unexpected[0]!r}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    for key, tensor in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise BundleError(f"{file}: {key!r} is not a tensor")
        if value.shape != tensor.shape:
            raise BundleError(f"{file}: {key!r} has shape {tuple(value.shape)}, expected {tuple(tensor.shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise BundleError(f"{file}: {key!r} contains NaN or infinite values")
    module.load_state_dict(state)


def validate_classes(classes, where: Path) -> list[ClassInfo]:
    if not isinstance(classes, list) or not 2 <= len(classes) <= 256:  # labels travel as uint8
        raise BundleError(f"{where}: field 'classes' must be a list of 2 to 256 {{name, color}} entries")
    out, seen_names, seen_colors = [], set(), {}
    for i, c in enumerate(classes):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
            raise BundleError(f"{where}: classes[{i}] needs a non-empty 'name'")
        color = _rgb8(c.get("color"), f"{where}: classes[{i}] ({c['name']}) 'color'")
        appearance = c.get("appearance")
        if appearance is not None:
            appearance = _rgb8(appearance, f"{where}: classes[{i}] ({c['name']}) 'appearance'")
        if c["name"] in seen_names:
            raise BundleError(f"{where}: duplicate class name {c['name']!r}")
        if color in seen_colors:
            raise BundleError(f"{where}: classes {seen_colors[color]!r} and {c['name']!r} share the colour {list(color)}")
        seen_names.add(c["name"])
        seen_colors[color] = c["name"]
        out.append(ClassInfo(c["name"], color, appearance))
    return out


def is_rgb8(value) -> bool:
    """Whether ``value`` is a colour as the project's files and messages carry it: 3 integers 0..255."""
    return (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in value))


def _rgb8(value, what: str) -> tuple[int, int, int]:
    if not is_rgb8(value):
        raise BundleError(f"{what} must be 3 integers in 0..255")
    return tuple(int(v) for v in value)


def validate_edit_defaults(value, where: Path) -> dict:
    """``edit_defaults``: a map of :class:`EditSettings` names to finite numbers ≥ 0."""
    from .editing import EditSettings
    if not isinstance(value, dict):
        raise BundleError(f"{where}: field 'edit_defaults' must be a map of edit settings")
    try:
        EditSettings().replace(**value)
    except (ValueError, TypeError) as e:
        raise BundleError(f"{where}: field 'edit_defaults': {e}") from None
    return dict(value)
