"""Perceptual distance for the embedding / editing optimizers.

EditGAN weighs an LPIPS-VGG term by 10 against pixel MSE. LPIPS needs two files:

* the five linear heads, shipped inside the ``lpips`` package (``weights/v0.1/vgg.pth``); the
  package is located with :func:`importlib.util.find_spec` and never imported, because importing
  it imports torchvision, which does not load against our torch;
* the ImageNet VGG16 backbone (torchvision-format state dict, ~530 MB), which is *not* shipped
  and cannot be downloaded here. It is taken from ``$EDITGAN_VGG16_WEIGHTS`` or the torch hub
  cache (``<torch.hub.get_dir()>/checkpoints/vgg16-*.pth``).

Without the backbone, :func:`make_perceptual_loss` falls back to a non-learned multi-scale
structural dissimilarity (:class:`MSSSIMDistance`) with the same call signature, and logs a
warning once. :func:`perceptual_status` is the single place that says which path is active.

Contract for both paths: ``loss(x, y) -> (N,)`` per-pair distances, ``x`` and ``y`` float
``(N, 3, H, W)`` in [-1, 1] of identical shape, ``H, W >= 16`` (VGG pools four times before
relu5_3). Parameters are frozen; gradients flow to the inputs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .ops import gaussian_taps, separable_conv

__all__ = ["VGG16Trunk", "LPIPS", "MSSSIMDistance", "perceptual_status", "make_perceptual_loss"]

log = logging.getLogger("editgan.perceptual")

WEIGHTS_ENV = "EDITGAN_VGG16_WEIGHTS"
MIN_SIZE = 16
LPIPS_HINT = "pip install --no-deps lpips"

# torchvision vgg16 "D" config; "M" is a max-pool. Layer indices follow from this list.
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_TAP_CHANNELS = (64, 128, 256, 512, 512)
_warned: set[str] = set()


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    assert x.ndim == 4 and x.shape[1] == 3, f"expected (N,3,H,W) images, got {tuple(x.shape)}"
    assert x.shape == y.shape, f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}"
    assert min(x.shape[2:]) >= MIN_SIZE, f"images must be at least {MIN_SIZE}x{MIN_SIZE}, got {tuple(x.shape[2:])}"


def _load_state_dict(path: Path) -> dict:
    sd = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state_dict (dict of tensors), got {type(sd).__name__}")
    return sd


def _frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


class VGG16Trunk(nn.Module):
    """torchvision ``vgg16().features[:30]`` rebuilt in plain torch, returning the 5 LPIPS taps.

    Same indices as torchvision, so ``features.<i>.weight/bias`` keys load unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
                c_in = v
        self.features = nn.Sequential(*layers)

    def load_torchvision(self, path: str | os.PathLike) -> "VGG16Trunk":
        """Load ``features.*`` from a torchvision vgg16 state dict (``classifier.*`` ignored)."""
        path = Path(path)
        sd = _load_state_dict(path)
        ours = self.features.state_dict()
        for key, ref in ours.items():
            full = f"features.{key}"
            if full not in sd:
                raise ValueError(f"{path}: missing key {full!r}; not a torchvision-format vgg16 state_dict")
            if tuple(sd[full].shape) != tuple(ref.shape):
                raise ValueError(f"{path}: key {full!r} has shape {tuple(sd[full].shape)}, expected {tuple(ref.shape)}")
        extra = sorted(k for k in sd if k.startswith("features.") and k[len("features."):] not in ours)
        if extra:
            raise ValueError(f"{path}: unexpected key {extra[0]!r}; not a plain vgg16 (vgg16_bn?)")
        self.features.load_state_dict({k: sd[f"features.{k}"] for k in ours})
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                taps.append(x)
        return taps


def _lpips_package_dir() -> Path | None:
    """Directory of the installed ``lpips`` package, found without importing it."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _heads_path() -> Path:
    pkg = _lpips_package_dir()
    if pkg is None:
        raise FileNotFoundError(f"LPIPS heads: the 'lpips' package was not found on sys.path; {LPIPS_HINT}")
    path = pkg / "weights" / "v0.1" / "vgg.pth"
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS heads file not found: searched {path}; {LPIPS_HINT}")
    return path


def _vgg_weights_path() -> Path | None:
    """``$EDITGAN_VGG16_WEIGHTS`` if set (must exist), else the first hub-cache vgg16-*.pth."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{WEIGHTS_ENV}={env} does not point to a file")
        return path
    found = sorted((Path(torch.hub.get_dir()) / "checkpoints").glob("vgg16-*.pth"))
    return found[0] if found else None


class LPIPS(nn.Module):
    """LPIPS v0.1 'vgg' (Zhang et al. 2018), numerically the ``lpips`` package's metric.

    scale inputs -> VGG16 taps -> unit-normalize channels -> squared difference ->
    1x1 linear head per tap -> spatial mean -> sum over taps.
    """

    def __init__(self, vgg_weights: str | os.PathLike | None = None, heads: str | os.PathLike | None = None):
        super().__init__()
        vgg_weights = vgg_weights or _vgg_weights_path()
        if vgg_weights is None:
            hub = Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-*.pth"
            raise FileNotFoundError(f"no VGG16 backbone weights: set {WEIGHTS_ENV} or place {hub}")
        self.weights_path = Path(vgg_weights)
        self.heads_path = Path(heads) if heads else _heads_path()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.trunk = VGG16Trunk().load_torchvision(self.weights_path)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _TAP_CHANNELS)
        sd = _load_state_dict(self.heads_path)
        for k, head in enumerate(self.heads):
            key = f"lin{k}.model.1.weight"
            if key not in sd or tuple(sd[key].shape) != tuple(head.weight.shape):
                got = tuple(sd[key].shape) if key in sd else "missing"
                raise ValueError(f"{self.heads_path}: key {key!r} is {got}, expected {tuple(head.weight.shape)}")
            head.weight.data.copy_(sd[key].float())
        _frozen(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair(x, y)
        n = x.shape[0]
        taps = self.trunk((torch.cat([x, y]) - self.shift) / self.scale)
        total = x.new_zeros(n)
        for feat, head in zip(taps, self.heads):
            feat = feat / (feat.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((feat[:n] - feat[n:]).pow(2)).mean((1, 2, 3))
        return total


class MSSSIMDistance(nn.Module):
    """Non-learned stand-in for LPIPS: mean over a Gaussian pyramid of (1 - SSIM).

    Why SSIM rather than pixel error: our images are largely flat colour regions whose
    perceptual identity is carried by structure and edges; SSIM compares local means, contrast
    and correlation (11x11 Gaussian window, sigma 1.5, per RGB channel on [0, 1]), so it rewards
    keeping edges in place and is insensitive to small uniform shifts. The pyramid (up to 4
    levels, stopping before a level gets smaller than the window) adds coarse-layout sensitivity
    the way LPIPS' deep taps do. Range: 0 for identical images, about 1 for unrelated ones.
    """

    def __init__(self, levels: int = 4, window: int = 11, sigma: float = 1.5):
        super().__init__()
        self.levels, self.window = levels, window
        self.register_buffer("gauss", gaussian_taps(window, sigma))
        self.register_buffer("binomial", torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16)
        self.c1, self.c2 = 0.01**2, 0.03**2  # data range 1

    def _ssim(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        mx, my, xx, yy, xy = separable_conv(torch.cat([x, y, x * x, y * y, x * y], 1), self.gauss).split(c, 1)
        vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
        ssim = ((2 * mx * my + self.c1) * (2 * cov + self.c2)) / ((mx * mx + my * my + self.c1) * (vx + vy + self.c2))
        return ssim.mean((1, 2, 3))

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        return separable_conv(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.binomial)[:, :, ::2, ::2]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _check_pair(x, y)
        x, y = (x + 1) / 2, (y + 1) / 2
        dists = []
        for level in range(self.levels):
            if level and min(x.shape[2:]) < self.window:
                break
            dists.append(1 - self._ssim(x, y))
            x, y = self._down(x), self._down(y)
        return torch.stack(dists).mean(0)


def _lpips_status(weights: Path, heads: Path) -> dict:
    return dict(kind="lpips-vgg16", detail=f"LPIPS v0.1 vgg, heads {heads}", weights=str(weights))


def _fallback_status(reason: str) -> dict:
    return dict(kind="ms-ssim-fallback", detail=f"multi-scale 1-SSIM (no learned weights): {reason}", weights=None)


def perceptual_status() -> dict:
    """What ``make_perceptual_loss(prefer="auto")`` will use; cheap, never raises, loads nothing."""
    try:
        weights = _vgg_weights_path()
        if weights is None:
            hub = Path(torch.hub.get_dir()) / "checkpoints"
            return _fallback_status(f"no VGG16 backbone weights ({WEIGHTS_ENV} unset, none in {hub})")
        heads = _heads_path()
    except FileNotFoundError as e:
        return _fallback_status(str(e))
    return _lpips_status(weights, heads)


def make_perceptual_loss(device: str | torch.device = "cpu", prefer: str = "auto") -> tuple[nn.Module, dict]:
    """Build the perceptual distance and report which one it is.

    ``prefer="lpips"`` raises if LPIPS cannot be built; ``"fallback"`` always uses
    :class:`MSSSIMDistance`; ``"auto"`` uses LPIPS when its files exist and otherwise falls back,
    logging a warning once per reason. A backbone file that exists but is malformed raises in
    every mode: someone pointed us at it on purpose.
    """
    if prefer not in ("auto", "lpips", "fallback"):
        raise ValueError(f"prefer must be 'auto', 'lpips' or 'fallback', got {prefer!r}")
    if prefer == "fallback":
        status = _fallback_status("forced by prefer='fallback'")
    elif prefer == "lpips":
        module = LPIPS()
        return module.to(device), _lpips_status(module.weights_path, module.heads_path)
    else:
        status = perceptual_status()
        if status["kind"] == "lpips-vgg16":
            return LPIPS(status["weights"]).to(device), status
        if status["detail"] not in _warned:
            _warned.add(status["detail"])
            log.warning(
                "LPIPS WEIGHTS MISSING - perceptual loss is NOT LPIPS. Using %s instead. "
                "To get real LPIPS, set %s to a torchvision vgg16 state_dict (e.g. vgg16-397923af.pth) "
                "or put it in %s.", status["detail"], WEIGHTS_ENV, Path(torch.hub.get_dir()) / "checkpoints")
    return MSSSIMDistance().to(device), status
