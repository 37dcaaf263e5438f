import numpy as np
import pytest

from editgan import toyfaces
from editgan.bench.samples import ATTRIBUTES, part_attributes, render_rates, run_sample_diversity
from editgan.bundle import Bundle
from editgan.editor import Editor
from tests.server_fixtures import make_tiny_bundle


def _truth(params) -> dict[str, np.ndarray]:
    return {"glasses": np.array([p.glasses for p in params]),
            "open_mouth": np.array([p.mouth_open > 0 for p in params]),
            "closed_eyes": np.array([p.eye_open == 0 for p in params]),
            "bald": np.array([p.hair_style == "bald" for p in params]),
            "long_hair": np.array([p.hair_style == "long" for p in params])}


@pytest.mark.parametrize("size", [64, 128])
def test_attributes_read_from_true_labels_agree_with_the_render_parameters(size):
    params = [toyfaces.params_for_seed(5_000_000 + i) for i in range(96)]
    _, labels = toyfaces.render_batch(params, size=size)
    read, truth = part_attributes(labels), _truth(params)
    assert set(read) == set(ATTRIBUTES)
    for name in ATTRIBUTES:
        assert truth[name].any() and not truth[name].all()  # both kinds of face are in the sample
        agree = (read[name] == truth[name]).mean()
        assert agree >= (0.97 if name == "long_hair" else 1.0), f"{name}: {agree:.2f} at {size}²"


def test_attributes_of_hand_made_label_maps():
    c = toyfaces.CLASSES.index
    faces = np.full((2, 64, 64), c("skin"), np.uint8)
    faces[0, :20] = c("hair")                 # short hair on top: not bald, not long
    faces[0, 30:34, 10:30] = c("glasses")     # 80 px of frame
    faces[0, 24:28, 14:20] = c("iris")        # 24 px of eye: open
    faces[1, 50:53, 28:33] = c("teeth")       # 15 px of teeth, no hair, no eyes
    read = part_attributes(faces)
    assert read["glasses"].tolist() == [True, False] and read["open_mouth"].tolist() == [False, True]
    assert read["closed_eyes"].tolist() == [False, True] and read["bald"].tolist() == [False, True]
    assert not read["long_hair"].any()
    with pytest.raises(AssertionError):
        part_attributes(faces[0])


def test_render_rates_are_near_the_sampling_rates():
    rates = render_rates(200, 64)
    assert abs(rates["glasses"] - 0.3) < 0.1 and abs(rates["open_mouth"] - 0.3) < 0.1
    assert 0 < rates["closed_eyes"] < 0.25 and 0 < rates["bald"] < 0.35


def test_sample_diversity_of_a_tiny_model(tmp_path):
    editor = Editor(Bundle.load(make_tiny_bundle(tmp_path / "tiny")))
    result = run_sample_diversity(editor, n=8, truncations=(1.0, 0.5))
    assert result["n"] == 8 and set(result["samples"]) == {"1", "0.5"}
    for shares in [result["renders"], *result["samples"].values()]:
        assert set(shares) == set(ATTRIBUTES) and all(0 <= v <= 1 for v in shares.values())
    # the same z: a second run reads the same faces
    assert run_sample_diversity(editor, n=8, truncations=(1.0,))["samples"]["1"] == result["samples"]["1"]
