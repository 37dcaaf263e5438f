import pytest
import torch

from editgan import ops
from editgan.generator import Generator, GeneratorConfig
from tests.conftest import tiny_config


@pytest.mark.parametrize("resolution", [32, 64, 256])
def test_shapes_and_feature_maps(resolution):
    torch.manual_seed(0)
    g = Generator(tiny_config(resolution, channel_max=16))
    assert g.num_ws == 2 * resolution.bit_length() - 4  # 2*log2(R) - 2
    img, feats = g.synthesis(g.mean_ws(2))
    assert img.shape == (2, 3, resolution, resolution)
    # one map per conv layer: 1 at 4², 2 at every other resolution, at native size
    assert len(feats) == g.num_ws - 1 == len(g.synthesis.feature_channels)
    assert [f.shape[-1] for f in feats] == g.synthesis.feature_resolutions
    assert [f.shape[1] for f in feats] == g.synthesis.feature_channels
    assert g.synthesis.feature_resolutions[0] == 4 and g.synthesis.feature_resolutions[-1] == resolution


def test_num_ws_matches_nvidia_layout():
    assert GeneratorConfig(resolution=1024).num_ws == 18
    assert GeneratorConfig(resolution=256).num_ws == 14
    assert GeneratorConfig(resolution=64).num_ws == 10


def test_parameter_names_follow_nvidia_layout(tiny_generator):
    keys = set(tiny_generator.state_dict())
    for k in ["mapping.fc0.weight", "mapping.fc1.bias", "mapping.w_avg", "synthesis.b4.const",
              "synthesis.b4.conv1.affine.weight", "synthesis.b4.conv1.noise_const", "synthesis.b8.conv0.weight",
              "synthesis.b8.conv0.noise_strength", "synthesis.b32.torgb.affine.bias", "synthesis.b32.torgb.weight"]:
        assert k in keys, k
    assert not any("resample_filter" in k for k in keys)  # constant, not part of checkpoints


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(resolution=48)
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(resolution=2048)
    with pytest.raises(ValueError, match="unknown generator config"):
        GeneratorConfig.from_dict({"resolution": 64, "bogus": 1})


def test_deterministic_given_ws(tiny_generator):
    ws = tiny_generator.map(tiny_generator.z_from_seed(3))
    a, _ = tiny_generator.synthesis(ws)
    b, _ = tiny_generator.synthesis(ws.clone())
    assert torch.equal(a, b)
    # and a fresh generator from the same state dict (noise buffers included) renders the same
    g2 = Generator(tiny_generator.cfg)
    g2.load_state_dict(tiny_generator.state_dict())
    c, _ = g2.synthesis(ws)
    assert torch.equal(a, c)


def test_w_and_w_plus_equivalence(tiny_generator):
    z = tiny_generator.z_from_seed(1, batch=2)
    img_w = tiny_generator(z)
    w = tiny_generator.mapping(z)
    ws = w[:, None].expand(-1, tiny_generator.num_ws, -1)
    img_wplus, _ = tiny_generator.synthesis(ws)
    assert torch.allclose(img_w, img_wplus, atol=1e-6)
    # changing one W+ entry changes the image (each entry is really used)
    ws2 = ws.clone()
    ws2[:, -1] += 1.0
    assert (tiny_generator.synthesis(ws2)[0] - img_wplus).abs().max() > 1e-4


def test_truncation(tiny_generator):
    z = tiny_generator.z_from_seed(7)
    w_avg = tiny_generator.w_avg
    assert torch.allclose(tiny_generator.mapping(z, truncation_psi=0.0), w_avg[None], atol=1e-6)
    w1 = tiny_generator.mapping(z)
    w_half = tiny_generator.mapping(z, truncation_psi=0.5)
    assert torch.allclose(w_half, w_avg + 0.5 * (w1 - w_avg), atol=1e-5)


def test_w_avg_tracking():
    g = Generator(tiny_config())
    assert torch.count_nonzero(g.w_avg) == 0
    g.mapping(torch.randn(8, g.z_dim), update_w_avg=True)
    assert torch.count_nonzero(g.w_avg) > 0


@pytest.mark.parametrize("mode", ["grouped", "scaled"])
def test_fast_paths_match_reference(tiny_generator, mode):
    ws = tiny_generator.map(tiny_generator.z_from_seed(5, batch=3))
    ref, ref_feats = tiny_generator.synthesis(ws, mode="reference")
    fast, fast_feats = tiny_generator.synthesis(ws, mode=mode)
    assert (ref - fast).abs().max() < 1e-4
    for a, b in zip(ref_feats, fast_feats):
        assert (a - b).abs().max() < 1e-4


def test_auto_mode_takes_the_scaled_path_on_cpu_at_batch_one(tiny_generator):
    ws = tiny_generator.map(tiny_generator.z_from_seed(5))
    auto, _ = tiny_generator.synthesis(ws)
    assert torch.equal(auto, tiny_generator.synthesis(ws, mode="scaled")[0])
    assert not torch.equal(auto, tiny_generator.synthesis(ws, mode="grouped")[0])  # the paths differ in rounding


def test_modulated_conv_modes_agree_with_noise_and_upsampling():
    torch.manual_seed(0)
    x, w, s = torch.randn(2, 5, 8, 8), torch.randn(7, 5, 3, 3), torch.randn(2, 5)
    f = ops.setup_filter()
    for up in (False, True):
        for demod in (False, True):
            ref = ops.modulated_conv2d(x, w, s, up=up, demodulate=demod, resample_filter=f, mode="reference")
            assert ref.shape == (2, 7, 16 if up else 8, 16 if up else 8)
            for mode in ("grouped", "scaled"):
                out = ops.modulated_conv2d(x, w, s, up=up, demodulate=demod, resample_filter=f, mode=mode)
                assert (out - ref).abs().max() < 1e-4, (up, demod, mode)


def test_upsample2d_matches_reference_upfirdn():
    x = torch.randn(2, 3, 5, 6)
    f = ops.setup_filter()
    ref = ops.upfirdn2d_ref(x, f, up=2, pad=(2, 1, 2, 1), gain=4)
    assert ref.shape == (2, 3, 10, 12)
    assert (ops.upsample2d(x, f) - ref).abs().max() < 1e-5
    # a constant image stays constant away from the borders (the filter is normalized)
    const = ops.upsample2d(torch.ones(1, 1, 6, 6), f)
    assert torch.allclose(const[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8), atol=1e-6)


def test_gradient_reaches_w_plus(tiny_generator):
    ws = tiny_generator.mean_ws().requires_grad_(True)
    img, feats = tiny_generator.synthesis(ws)
    (img.square().mean() + feats[-1].mean()).backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all()
    assert (ws.grad.abs().sum(dim=2) > 0).all()  # every W+ entry receives gradient


def test_noise_can_be_disabled():
    g = Generator(tiny_config(use_noise=False))
    assert not any("noise" in k for k in g.state_dict())
    img, _ = g.synthesis(g.mean_ws())
    assert torch.isfinite(img).all()


@pytest.mark.parametrize("padding", [0, 3])
def test_separable_gaussian_matches_the_full_2d_kernel(padding):
    taps = ops.gaussian_taps(7, 1.5)
    assert torch.isclose(taps.sum(), torch.tensor(1.0)) and torch.equal(taps, taps.flip(0)) and taps.argmax() == 3
    x = torch.randn(2, 3, 12, 10)
    kernel = torch.outer(taps, taps).expand(3, 1, 7, 7)
    full = torch.nn.functional.conv2d(x, kernel, padding=padding, groups=3)
    assert torch.allclose(ops.separable_conv(x, taps, padding), full, atol=1e-5)
