"""Fast smoke checks of the shipped demo bundle (the quality bars live in `editgan bench`)."""

import numpy as np
import pytest
import torch

from editgan import toyfaces
from editgan.bench.model_quality import ClassIoU
from editgan.bundle import Bundle
from editgan.class_colours import mean_class_colours
from editgan.editor import Editor
from editgan.geometry import dilate
from editgan.models import DEMO_BUNDLE
from editgan.photo_labels import PhotoSnapSettings
from editgan.train.stages import HELD_OUT_SEED_BASE, PRESET_SEEDS, annotated_renders, user_edit_labels


@pytest.fixture(scope="module")
def editor():
    return Editor(Bundle.load(DEMO_BUNDLE))


def test_manifest_and_parts(editor):
    info = editor.info()
    assert info["resolution"] == 64 and [c["name"] for c in info["classes"]] == list(toyfaces.CLASSES)
    assert info["encoder"] and info["segmenter"]
    assert {p["name"] for p in info["presets"]} == set(PRESET_SEEDS)
    size = sum(f.stat().st_size for f in DEMO_BUNDLE.rglob("*") if f.is_file())
    assert size <= 30 * 2**20


def test_class_appearances_are_the_annotations_mean_colours(editor):
    """What ``train segmenter`` writes, recomputed from the bundle's recorded annotation seeds."""
    bundle = editor.bundle
    images, labels = annotated_renders(bundle.provenance["segmenter_training"]["annotation_seeds"], 64)
    assert [c.appearance for c in bundle.classes] == mean_class_colours(images, labels, len(bundle.classes))
    glasses = bundle.classes[list(toyfaces.CLASSES).index("glasses")]
    assert sorted(editor.usual_colours) == list(range(len(bundle.classes))) and glasses.appearance != glasses.color


def test_samples_are_varied_images(editor):
    g = editor.generator
    with torch.no_grad():
        imgs = g(torch.randn(8, g.z_dim, generator=torch.Generator().manual_seed(0)), truncation_psi=0.7)
    assert torch.isfinite(imgs).all() and imgs.abs().max() < 3
    assert imgs.std(dim=0).mean() > 0.05  # not one collapsed image


def test_embed_and_segment_a_held_out_render(editor):
    rgb, labels = toyfaces.render(toyfaces.params_for_seed(HELD_OUT_SEED_BASE + 777), size=64)
    session = editor.embed(rgb, steps=30)
    assert session.psnr > 20.0
    inter = [np.count_nonzero((session.source_labels == c) & (labels == c)) for c in range(3)]
    union = [np.count_nonzero((session.source_labels == c) | (labels == c)) for c in range(3)]
    assert np.mean(np.divide(inter, union)) > 0.5  # background, hair, skin


def test_labels_snapped_to_the_photo_beat_the_reconstructions_labels(editor):
    """The segmentation the user paints on follows the photo's edges (editgan.photo_labels): on
    held-out renders it matches their true labels better than the reading of the reconstruction."""
    raw, snapped = ClassIoU(13), ClassIoU(13)
    for i in range(4):
        rgb, labels = toyfaces.render(toyfaces.params_for_seed(HELD_OUT_SEED_BASE + 900 + i), size=64)
        session = editor.embed(rgb, steps=30)
        raw.add(session.labels, labels)
        snapped.add(session.source_labels, labels)
    names = list(toyfaces.CLASSES)
    assert snapped.result(names)["miou"] > raw.result(names)["miou"] + 0.01


def test_a_larger_photo_gets_labels_snapped_at_its_own_resolution(editor):
    """A 128² photo's labels snapped on its own grid match its true labels better than the 64²
    snap's 2×2 blocks (PhotoSnapSettings.max_side caps the grid; 64 = the model's)."""
    blocky = Editor(editor.bundle, perceptual="fallback", photo_snap=PhotoSnapSettings(max_side=64))
    coarse, fine = ClassIoU(13), ClassIoU(13)
    for i in range(3):
        rgb, labels = toyfaces.render(toyfaces.params_for_seed(HELD_OUT_SEED_BASE + 950 + i), size=128)
        coarse.add(blocky.embed(rgb, steps=30).source_labels, labels)
        session = editor.embed(rgb, steps=30)
        assert session.source_labels.shape == (128, 128)
        fine.add(session.source_labels, labels)
    names = list(toyfaces.CLASSES)
    assert fine.result(names)["miou"] > coarse.result(names)["miou"] + 0.03


def test_smile_edit_changes_only_its_region(editor):
    pair = toyfaces.sample_edit_pair("smile", HELD_OUT_SEED_BASE + 5, size=64)
    session = editor.embed(pair["source_rgb"], steps=30)
    user = user_edit_labels(session.source_labels, pair["source_labels"], pair["target_labels"])
    result = editor.edit(session, user)  # the default 30 steps
    x, y, w, h = result.box
    assert w > 0 and h > 0
    far = ~dilate(result.region, 2).numpy()  # the composite is feathered ~1 model pixel beyond Q
    assert np.array_equal(result.image[far], pair["source_rgb"][far])
    assert not np.array_equal(result.image, pair["source_rgb"])
