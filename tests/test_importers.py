import os
import pickle

import pytest
import torch

from editgan.generator import Generator
from editgan.importers import ImportErrorBadCheckpoint, UnsafePickleError, load_checkpoint
from editgan.importers.nvidia import infer_channels
from tests.conftest import tiny_config
from tests.foreign_formats import EVIL_SOURCE, write_nvidia_pickle, write_rosinality


@pytest.fixture
def source_generator():
    torch.manual_seed(1)
    g = Generator(tiny_config(32, conv_clamp=256.0)).eval()
    with torch.no_grad():  # non-trivial noise strengths and mean latent so every tensor matters
        for m in g.modules():
            if hasattr(m, "noise_strength"):
                m.noise_strength.fill_(0.3)
        g.mapping.w_avg.normal_()
    return g


def _same_images(a: Generator, b: Generator):
    z = torch.randn(3, a.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ia, ib = a(z, truncation_psi=0.7), b(z, truncation_psi=0.7)
    return (ia - ib).abs().max().item()


def test_nvidia_pickle_round_trip(tmp_path, source_generator):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "network-snapshot.pkl"
    write_nvidia_pickle(source_generator, path, module_src=EVIL_SOURCE.format(marker=str(marker)))
    g, info = load_checkpoint(path)
    assert info["source_format"] == "nvidia-pkl"
    assert g.cfg.resolution == 32 and g.cfg.conv_clamp == 256.0 and g.cfg.use_noise
    assert g.cfg.channel_base == source_generator.cfg.channel_base or \
        [g.cfg.channels(r) for r in g.cfg.block_resolutions] == [source_generator.cfg.channels(r) for r in g.cfg.block_resolutions]
    assert _same_images(source_generator, g) < 1e-5
    assert not marker.exists(), "the source code embedded in the pickle was executed"


def test_rosinality_round_trip(tmp_path, source_generator):
    path = tmp_path / "550000.pt"
    write_rosinality(source_generator, path)
    g, info = load_checkpoint(path)
    assert info["source_format"] == "rosinality-pt"
    assert torch.equal(g.w_avg, source_generator.w_avg)
    # rosinality has no conv clamp; compare against the same generator without it
    unclamped = Generator(tiny_config(32))
    unclamped.load_state_dict(source_generator.state_dict())
    assert _same_images(unclamped, g) < 1e-5


def test_rosinality_without_latent_avg_estimates_it(tmp_path, source_generator):
    path = tmp_path / "g.pt"
    write_rosinality(source_generator, path, with_latent_avg=False)
    g, _ = load_checkpoint(path)
    with torch.no_grad():
        expected = source_generator.mapping(torch.randn(4000, g.z_dim)).mean(0)
    assert (g.w_avg - expected).norm() < 0.2 * expected.norm() + 0.05


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": _Evil(marker)}, f)
    with pytest.raises(UnsafePickleError, match=r"refused to load global (posix|os)\.system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_code_hidden_inside_network_state_is_refused(tmp_path, source_generator):
    marker = tmp_path / "pwned2"
    path = tmp_path / "evil2.pkl"
    write_nvidia_pickle(source_generator, path, extra_objects={"payload": _Evil(marker)})
    with pytest.raises(UnsafePickleError):
        load_checkpoint(path)
    assert not marker.exists()


def test_builtins_eval_refused(tmp_path):
    path = tmp_path / "eval.pkl"
    path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_checkpoint(path)


def test_wrong_content_gives_clear_errors(tmp_path):
    p = tmp_path / "x.pkl"
    with open(p, "wb") as f:
        pickle.dump({"weights": [1, 2]}, f)
    with pytest.raises(ImportErrorBadCheckpoint, match="no 'G_ema'"):
        load_checkpoint(p)
    q = tmp_path / "x.pt"
    torch.save({"state": torch.zeros(2)}, q)
    with pytest.raises(ImportErrorBadCheckpoint, match="no 'g_ema'"):
        load_checkpoint(q)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pkl")


def test_stylegan3_layout_rejected(tmp_path, source_generator):
    from editgan.importers.nvidia import generator_from_state
    state = dict(source_generator.state_dict())
    state["synthesis.input.affine.weight"] = torch.zeros(4, 32)
    with pytest.raises(ImportErrorBadCheckpoint, match="StyleGAN3"):
        generator_from_state(state, lr_multiplier=0.01, conv_clamp=None, source="x")


def test_infer_channels():
    assert infer_channels({4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}) == (32768, 512)
    with pytest.raises(ImportErrorBadCheckpoint):
        infer_channels({4: 64, 8: 100, 16: 64})
