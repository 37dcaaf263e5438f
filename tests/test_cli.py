import json

import numpy as np
import pytest
from PIL import Image

from editgan.bundle import Bundle
from editgan.cli import main
from editgan.models import random_bundle
from tests.foreign_formats import write_rosinality


@pytest.fixture
def bundle_dir(tmp_path):
    return random_bundle().save(tmp_path / "b")


def test_info(bundle_dir, capsys):
    assert main(["info", str(bundle_dir)]) == 0
    out = capsys.readouterr().out
    assert '"name": "tiny-random"' in out and "classes: background[0, 0, 0]" in out and "presets: (none)" in out


def test_info_bad_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="bundle folder not found"):
        main(["info", str(tmp_path / "missing")])


def test_sample_single_and_grid(bundle_dir, tmp_path):
    one, many = tmp_path / "one.png", tmp_path / "grid.png"
    assert main(["sample", str(bundle_dir), "--seed", "3", "--out", str(one)]) == 0
    assert main(["sample", str(bundle_dir), "--seed", "3", "--count", "4", "--out", str(many)]) == 0
    a = np.asarray(Image.open(one))
    g = np.asarray(Image.open(many))
    assert a.shape == (32, 32, 3) and g.shape[1] > 4 * 32
    assert np.array_equal(g[2:34, 2:34], a)  # the grid's first tile is the same seed
    again = tmp_path / "again.png"
    main(["sample", str(bundle_dir), "--seed", "3", "--out", str(again)])
    assert np.array_equal(np.asarray(Image.open(again)), a)


def test_demo_random(tmp_path, capsys):
    assert main(["demo", "--random", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "demo-samples.png").is_file()
    assert "tiny random bundle" in capsys.readouterr().out


def test_import_stylegan_writes_loadable_bundle(tmp_path, tiny_generator, capsys):
    src = tmp_path / "g.pt"
    write_rosinality(tiny_generator, src)
    out = tmp_path / "imported"
    assert main(["import-stylegan", str(src), "--out", str(out), "--name", "imp"]) == 0
    b = Bundle.load(out)
    assert b.name == "imp" and json.loads((out / "model.json").read_text())["provenance"]["source_format"] == "rosinality-pt"


def test_import_refuses_bad_file(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(SystemExit, match="refused to load global"):
        main(["import-stylegan", str(bad), "--out", str(tmp_path / "o")])
