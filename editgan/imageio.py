"""Conversions between generator tensors ([-1, 1], NCHW) and uint8 images, plus PNG grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N,3,H,W] or [3,H,W] in [-1, 1] → uint8 [N,H,W,3] or [H,W,3]."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.movedim(-3, -1)
    return x.cpu().numpy()


def from_uint8(arr: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 [H,W,3] or [N,H,W,3] → float [N,3,H,W] in [-1, 1]."""
    assert arr.dtype == np.uint8 and arr.shape[-1] == 3, f"expected uint8 RGB, got {arr.dtype} {arr.shape}"
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device)
    if t.ndim == 3:
        t = t[None]
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1


def tensor_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of generator-range images ([-1, 1], so the peak-to-peak range is 2)."""
    mse = ((a.detach() - b.detach()) / 2).square().mean().item()
    return 10 * math.log10(1 / max(mse, 1e-10))


def colorize(labels: np.ndarray, palette) -> np.ndarray:
    """Label map [..., H, W] → RGB uint8 with the class palette."""
    return np.asarray(palette, dtype=np.uint8)[labels]


def grid(images: np.ndarray, cols: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile uint8 [N,H,W,3] images into one picture."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = im
    return out


def save_png(path: str | Path, image: np.ndarray, scale: int = 1) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(image)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)
    return path
