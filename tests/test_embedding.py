import numpy as np
import pytest
import torch

from editgan.editing import Cancelled

from editgan.regions import psnr
from editgan.embedding import EmbedSettings, default_embed_settings, embed, initial_latent
from editgan.imageio import from_uint8, to_uint8
from tests.test_editing import tiny_models


@pytest.fixture(scope="module")
def setup():
    g, seg, perceptual = tiny_models()
    ws_true = g.mean_ws() + 0.4 * torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        target = to_uint8(g.synthesis(ws_true)[0][0])
    return g, seg, perceptual, target


def test_embed_improves_reconstruction(setup):
    g, seg, perceptual, target = setup
    calls = []
    e = embed(g, target, perceptual=perceptual, segmenter=seg, steps=25,
              progress=lambda s, t, p=None: calls.append((s, t, p is not None)))
    start = psnr(to_uint8(g.synthesis(g.mean_ws())[0][0]), target)
    assert e.psnr > start + 3, (start, e.psnr)
    assert [c[0] for c in calls] == list(range(1, 26)) and calls[4][2] and not calls[0][2]
    assert e.ws.shape == (1, g.num_ws, g.w_dim) and e.image.shape == (32, 32, 3)
    assert e.labels.shape == (32, 32) and e.labels.dtype == np.uint8 and e.best_step > 0
    # the returned reconstruction is exactly G(ws)
    assert np.array_equal(e.image, to_uint8(g.synthesis(e.ws)[0][0]))
    assert e.psnr == pytest.approx(psnr(e.image, target))


def test_embed_without_segmenter(setup):
    g, _, perceptual, target = setup
    e = embed(g, target, perceptual=perceptual, steps=1)
    assert e.labels is None


def test_encoder_initializes(setup):
    g, _, perceptual, target = setup
    start = g.mean_ws() + 0.7

    def encoder(img):
        assert img.shape == (1, 3, 32, 32)
        return start.clone()

    assert torch.equal(initial_latent(g, encoder, from_uint8(target)), start)
    e = embed(g, target, perceptual=perceptual, encoder=encoder, steps=1, settings=EmbedSettings(lr=1e-9))
    assert torch.allclose(e.ws, start, atol=1e-6)
    assert torch.equal(initial_latent(g, None, from_uint8(target)), g.mean_ws())


def test_embed_cancel(setup):
    g, _, perceptual, target = setup
    with pytest.raises(Cancelled):
        embed(g, target, perceptual=perceptual, steps=10, should_cancel=lambda: True)


def test_embed_rejects_wrong_size(setup):
    g, _, perceptual, _ = setup
    with pytest.raises(AssertionError):
        embed(g, np.zeros((16, 16, 3), np.uint8), perceptual=perceptual, steps=1)


def test_settings_validation():
    with pytest.raises(ValueError):
        EmbedSettings(lr=0)
    with pytest.raises(ValueError):
        EmbedSettings(lambda_reg=float("inf"))


def test_default_settings_follow_the_perceptual_loss():
    assert default_embed_settings("lpips-vgg16") == EmbedSettings()  # the paper's weights with real LPIPS
    fallback = default_embed_settings("ms-ssim-fallback")
    assert fallback.lambda_mse > EmbedSettings().lambda_mse and fallback.lr > EmbedSettings().lr


def test_editor_embeds_with_the_settings_of_its_perceptual_loss(tmp_path):
    from editgan.bundle import Bundle
    from editgan.editor import Editor
    from tests.server_fixtures import make_tiny_bundle
    editor = Editor(Bundle.load(make_tiny_bundle(tmp_path / "b")))
    assert editor.embed_settings == default_embed_settings(editor.perceptual_status["kind"])
