"""The segmentation-ceiling diagnostic (`python -m editgan.bench.ceiling`), on the demo bundle at a token size."""

import numpy as np
import pytest
import torch

from editgan.bench import ceiling
from editgan.bench.model_quality import ClassIoU, run_model_quality
from editgan.bundle import Bundle
from editgan.editor import Editor
from editgan.models import default_bundle_path


def test_iou_accumulates_over_images_and_skips_absent_classes():
    acc = ClassIoU(3)
    acc.add(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]))
    acc.add(np.array([[0, 0], [0, 0]]), np.array([[0, 0], [0, 1]]))
    out = acc.result(["a", "b", "c"])
    # class a: intersection 1 + 3, union 2 + 4; class b: 2 / (3 + 1); class c never appears
    assert out["per_class_iou"] == {"a": pytest.approx(4 / 6), "b": pytest.approx(2 / 4), "c": None}
    assert out["miou"] == pytest.approx((4 / 6 + 2 / 4) / 2)


def test_unet_keeps_the_image_size_and_gives_one_logit_per_class():
    net = ceiling.SegmentationUNet(num_classes=5, width=8)
    assert net(torch.zeros(2, 3, 16, 24)).shape == (2, 5, 16, 24)
    with pytest.raises(AssertionError):
        net(torch.zeros(1, 3, 18, 16))


def test_run_ceiling_scores_the_bundle_segmenter_like_the_benchmark():
    bundle = Bundle.load(default_bundle_path())
    out = ceiling.run_ceiling(bundle, steps=2, faces=2, embed_steps=(0, 3), show_progress=False)
    names = [c.name for c in bundle.classes]
    assert [e["embed_steps"] for e in out["embeddings"]] == [0, 3]
    for scores in (out["unet_on_renders"], *[e[k] for e in out["embeddings"]
                                              for k in ("unet_on_reconstructions", "bundle_segmenter")]):
        assert list(scores["per_class_iou"]) == names
        assert 0.0 <= scores["miou"] <= 1.0
    # the same faces and embeddings as `editgan bench`'s model part: the same scores of the reconstruction's reading
    for entry in out["embeddings"]:
        reference = run_model_quality(Editor(bundle), n=2, embed_steps=entry["embed_steps"])
        assert entry["bundle_segmenter"]["per_class_iou"] == pytest.approx(reference["reconstruction"]["per_class_iou"])


def test_cli_refuses_empty_runs(capsys):
    with pytest.raises(SystemExit):
        ceiling.main(["--steps", "0"])
    assert "--steps and --faces must be ≥ 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ceiling.main(["--embed-steps", "-1"])
