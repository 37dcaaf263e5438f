"""Checkpoint importers: foreign StyleGAN2 checkpoints → an EditGAN bundle (never unpickling code)."""

from __future__ import annotations

from pathlib import Path

from ..generator import Generator
from .nvidia import ImportErrorBadCheckpoint, load_nvidia_pickle
from .rosinality import load_rosinality
from .safe_pickle import UnsafePickleError

__all__ = ["FORMATS", "ImportErrorBadCheckpoint", "UnsafePickleError", "load_checkpoint"]


FORMATS = ("auto", "nvidia", "rosinality")


def load_checkpoint(path: str | Path, fmt: str = "auto") -> tuple[Generator, dict]:
    """Load a foreign generator: ``nvidia`` (``.pkl``) or ``rosinality`` (``.pt``); ``auto`` goes by suffix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; choose from {FORMATS}")
    if fmt == "nvidia" or (fmt == "auto" and path.suffix == ".pkl"):
        return load_nvidia_pickle(path)
    return load_rosinality(path)
