import json

import numpy as np
import pytest
import torch

from editgan.bundle import Bundle, BundleError, ClassInfo, sanitize_name
from editgan.generator import Generator
from tests.conftest import tiny_config

CLASSES = [ClassInfo("background", (0, 0, 0)), ClassInfo("skin", (255, 200, 160)), ClassInfo("eye", (0, 0, 255))]


@pytest.fixture
def saved(tmp_path, tiny_generator):
    b = Bundle(name="tiny", generator=tiny_generator, classes=CLASSES, domain="test", provenance={"seed": 0})
    return b.save(tmp_path / "bundle")


def _edit_manifest(path, **changes):
    m = json.loads((path / "model.json").read_text())
    m.update(changes)
    (path / "model.json").write_text(json.dumps(m))


def test_round_trip_renders_identically(saved, tiny_generator):
    b = Bundle.load(saved)
    assert b.name == "tiny" and b.resolution == 32 and b.classes == CLASSES and b.palette[2] == (0, 0, 255)
    ws = tiny_generator.mean_ws()
    assert torch.equal(b.generator.synthesis(ws)[0], tiny_generator.synthesis(ws)[0])
    m = json.loads((saved / "model.json").read_text())
    assert m["format_version"] == 1 and m["num_ws"] == tiny_generator.num_ws and m["w_dim"] == 32
    assert (saved / "presets").is_dir()
    assert b.edit_defaults == {} and "edit_defaults" not in m


def test_edit_defaults_round_trip(saved):
    b = Bundle.load(saved)
    b.edit_defaults = {"keep_q": 0.5, "lr": 0.01}
    b.save(saved)
    assert Bundle.load(saved).edit_defaults == {"keep_q": 0.5, "lr": 0.01}


def test_class_appearance_round_trip(saved):
    b = Bundle.load(saved)
    b.classes = [b.classes[0], ClassInfo("skin", (255, 200, 160), appearance=(180, 130, 100)), b.classes[2]]
    b.save(saved)
    m = json.loads((saved / "model.json").read_text())
    assert "appearance" not in m["classes"][0] and m["classes"][1]["appearance"] == [180, 130, 100]
    assert Bundle.load(saved).classes[1].appearance == (180, 130, 100)


def test_missing_generator_file(saved):
    (saved / "generator.pt").unlink()
    with pytest.raises(BundleError, match=r"generator\.pt: missing file"):
        Bundle.load(saved)


def test_missing_manifest_and_folder(tmp_path, saved):
    with pytest.raises(BundleError, match="bundle folder not found"):
        Bundle.load(tmp_path / "nope")
    (saved / "model.json").unlink()
    with pytest.raises(BundleError, match="missing manifest"):
        Bundle.load(saved)


@pytest.mark.parametrize("changes,message", [
    ({"format_version": 99}, r"unsupported format_version 99"),
    ({"classes": [{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [1, 2, 3]}]},
     r"classes 'a' and 'b' share the colour \[1, 2, 3\]"),
    ({"classes": [{"name": "a", "color": [1, 2, 300]}, {"name": "b", "color": [0, 0, 0]}]},
     r"classes\[0\] \(a\) 'color'"),
    ({"classes": [{"name": "a", "color": [1, 2, 3], "appearance": [1, 2]}, {"name": "b", "color": [0, 0, 0]}]},
     r"classes\[0\] \(a\) 'appearance' must be 3 integers"),
    ({"resolution": 64}, r"field 'resolution' is 64"),
    ({"edit_defaults": {"keep_q": -1}}, r"'edit_defaults': keep_q must be a finite number"),
    ({"edit_defaults": {"bogus": 1}}, r"'edit_defaults': unknown edit setting 'bogus'"),
    ({"edit_defaults": [1]}, r"'edit_defaults' must be a map"),
    ({"classes": [{"name": f"c{i}", "color": [i % 256, i // 256, 0]} for i in range(257)]},
     r"2 to 256 \{name, color\} entries"),  # labels are uint8: class 256 would wrap to 0
])
def test_bad_manifest_fields(saved, changes, message):
    _edit_manifest(saved, **changes)
    with pytest.raises(BundleError, match=message):
        Bundle.load(saved)


def test_wrong_shape_names_file_and_key(saved):
    state = torch.load(saved / "generator.pt", weights_only=True)
    state["synthesis.b4.const"] = torch.zeros(3, 4, 4)
    torch.save(state, saved / "generator.pt")
    with pytest.raises(BundleError, match=r"generator\.pt: 'synthesis\.b4\.const' has shape \(3, 4, 4\)"):
        Bundle.load(saved)


def test_nan_weights_rejected(saved):
    state = torch.load(saved / "generator.pt", weights_only=True)
    state["mapping.fc0.bias"][0] = float("nan")
    torch.save(state, saved / "generator.pt")
    with pytest.raises(BundleError, match="NaN"):
        Bundle.load(saved)


def test_pickled_object_in_checkpoint_refused(saved):
    torch.save({"x": np.arange(3)}, saved / "generator.pt")  # a numpy array needs the full unpickler
    with pytest.raises(BundleError, match="not a plain tensor checkpoint"):
        Bundle.load(saved)


def test_generator_from_different_config_rejected(saved):
    other = Generator(tiny_config(64))
    torch.save(other.state_dict(), saved / "generator.pt")
    with pytest.raises(BundleError, match=r"generator\.pt: unexpected tensor"):
        Bundle.load(saved)


@pytest.mark.parametrize("raw,expected", [("Big Smile!", "big_smile"), ("smile", "smile"), ("a-b_c", "a-b_c")])
def test_sanitize_name(raw, expected):
    assert sanitize_name(raw) == expected


@pytest.mark.parametrize("raw", ["../../etc/passwd", "..", "", "///", "\x00"])
def test_sanitize_name_never_escapes(raw):
    try:
        name = sanitize_name(raw)
    except BundleError:
        return
    assert "/" not in name and ".." not in name and name
