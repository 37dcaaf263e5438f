"""Tests for editgan.perceptual: both paths, weight discovery, errors and status reporting."""

import logging
import sys

import pytest
import torch

from editgan import perceptual as P


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No real weights leak in: empty hub cache, no env var, fresh warn-once memory."""
    monkeypatch.delenv(P.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(P, "_warned", set())


@pytest.fixture(scope="module")
def random_vgg(tmp_path_factory):
    """A torchvision-format vgg16 state_dict with random weights (plus an ignored classifier key)."""
    torch.manual_seed(0)
    sd = {f"features.{k}": v for k, v in P.VGG16Trunk().features.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(sd, path)
    return path


def blocks(n=2, size=32, seed=0):
    """Flat-colour block images in [-1, 1], like our demo data."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(colours, size=(size, size), mode="nearest")


def noisy(x, sigma, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def check_metric(loss, size):
    a = blocks(size=size)
    b = blocks(size=size, seed=5)
    d_same = loss(a, a)
    assert d_same.shape == (2,)
    assert torch.allclose(d_same, torch.zeros(2), atol=1e-6)
    d_ab, d_ba = loss(a, b), loss(b, a)
    assert torch.allclose(d_ab, d_ba, atol=1e-6)
    assert (d_ab > d_same + 1e-3).all()
    d_noise = torch.stack([loss(a, noisy(a, s)) for s in (0.05, 0.2, 0.5)])
    assert (d_noise[1:] > d_noise[:-1]).all(), d_noise
    x = noisy(a, 0.3).requires_grad_(True)
    loss(x, a).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert not any(p.requires_grad for p in loss.parameters())
    return d_ab


def test_fallback_metric_properties():
    d_ab = check_metric(P.MSSSIMDistance(), size=64)
    unrelated = P.MSSSIMDistance()(blocks(size=64), torch.rand(2, 3, 64, 64) * 2 - 1)
    assert (unrelated > 0.2).all() and (unrelated < 1.5).all() and (d_ab < 1.5).all()


def test_fallback_status_and_warning_once(caplog):
    assert P.perceptual_status()["kind"] == "ms-ssim-fallback"
    with caplog.at_level(logging.WARNING, logger="editgan.perceptual"):
        loss, status = P.make_perceptual_loss()
        P.make_perceptual_loss()
    assert isinstance(loss, P.MSSSIMDistance)
    assert status["kind"] == "ms-ssim-fallback" and status["weights"] is None
    warnings = [r for r in caplog.records if r.name == "editgan.perceptual" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "MISSING" in warnings[0].getMessage() and P.WEIGHTS_ENV in warnings[0].getMessage()


def test_prefer_fallback_is_silent(caplog, random_vgg, monkeypatch):
    monkeypatch.setenv(P.WEIGHTS_ENV, str(random_vgg))
    with caplog.at_level(logging.WARNING, logger="editgan.perceptual"):
        loss, status = P.make_perceptual_loss(prefer="fallback")
    assert isinstance(loss, P.MSSSIMDistance) and status["kind"] == "ms-ssim-fallback"
    assert not caplog.records


def test_lpips_path_via_env(random_vgg, monkeypatch):
    monkeypatch.setenv(P.WEIGHTS_ENV, str(random_vgg))
    status = P.perceptual_status()
    assert status == dict(kind="lpips-vgg16", detail=status["detail"], weights=str(random_vgg))
    loss, status2 = P.make_perceptual_loss()
    assert isinstance(loss, P.LPIPS) and status2 == status
    heads = torch.load(P._heads_path(), weights_only=True, map_location="cpu")
    assert torch.equal(loss.heads[3].weight, heads["lin3.model.1.weight"])
    taps = loss.trunk(torch.zeros(1, 3, 32, 32))
    assert [tuple(t.shape[1:]) for t in taps] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    check_metric(loss, size=32)
    assert "lpips" not in sys.modules and "torchvision" not in sys.modules


def test_lpips_weights_from_hub_cache(random_vgg, tmp_path):
    ckpt = tmp_path / "torch_home" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "vgg16-397923af.pth").symlink_to(random_vgg)
    (ckpt / "vgg16_bn-6c64b313.pth").write_bytes(b"not me")
    status = P.perceptual_status()
    assert status["kind"] == "lpips-vgg16" and status["weights"] == str(ckpt / "vgg16-397923af.pth")


def test_missing_heads_names_searched_path(random_vgg, monkeypatch, tmp_path):
    monkeypatch.setenv(P.WEIGHTS_ENV, str(random_vgg))
    monkeypatch.setattr(P, "_lpips_package_dir", lambda: tmp_path / "fake_lpips")
    searched = str(tmp_path / "fake_lpips" / "weights" / "v0.1" / "vgg.pth")
    with pytest.raises(FileNotFoundError) as err:
        P.make_perceptual_loss(prefer="lpips")
    assert searched in str(err.value) and "pip install --no-deps lpips" in str(err.value)
    status = P.perceptual_status()
    assert status["kind"] == "ms-ssim-fallback" and searched in status["detail"]
    monkeypatch.setattr(P, "_lpips_package_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="not found on sys.path"):
        P.LPIPS()


@pytest.mark.parametrize("bad, key", [
    ({"features.0.weight": torch.zeros(64, 3, 5, 5)}, "features.0.weight"),
    ({"conv1.weight": torch.zeros(1)}, "features.0.weight"),
])
def test_bad_backbone_file_names_file_and_key(bad, key, tmp_path, monkeypatch):
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    monkeypatch.setenv(P.WEIGHTS_ENV, str(path))
    assert P.perceptual_status()["kind"] == "lpips-vgg16"  # status only checks existence
    with pytest.raises(ValueError) as err:
        P.make_perceptual_loss()
    assert str(path) in str(err.value) and key in str(err.value)


def test_env_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv(P.WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    status = P.perceptual_status()
    assert status["kind"] == "ms-ssim-fallback" and "nope.pth" in status["detail"]
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        P.make_perceptual_loss(prefer="lpips")


def test_no_weights_prefer_lpips_raises():
    with pytest.raises(FileNotFoundError, match=P.WEIGHTS_ENV):
        P.make_perceptual_loss(prefer="lpips")
    with pytest.raises(ValueError, match="prefer"):
        P.make_perceptual_loss(prefer="vgg")


def test_input_contract():
    loss = P.MSSSIMDistance()
    with pytest.raises(AssertionError, match="differ"):
        loss(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 16))
    with pytest.raises(AssertionError, match="N,3,H,W"):
        loss(torch.zeros(3, 32, 32), torch.zeros(3, 32, 32))
    with pytest.raises(AssertionError, match="at least 16"):
        loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
