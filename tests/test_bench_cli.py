import json

from editgan.bundle import Bundle
from editgan.cli import main
from editgan.editor import Editor
from editgan.train.stages import PRESET_SEEDS
from tests.server_fixtures import make_tiny_bundle


def test_bench_cli_writes_json_markdown_and_pictures(tmp_path):
    bundle_dir = make_tiny_bundle(tmp_path / "tiny")
    # one preset so the preset modes run too
    editor = Editor(Bundle.load(bundle_dir))
    session = editor.embed(__import__("numpy").full((32, 32, 3), 128, "uint8"), steps=1)
    labels = session.source_labels.copy()
    labels[10:20, 10:20] = 9  # paint lips
    editor.save_preset("smile", editor.edit(session, labels, steps=2))
    out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["bench", "--model", str(bundle_dir), "--parts", "model,samples,tasks,timings,pictures", "--seeds", "1", "--samples", "4",
                 "--quality-images", "2", "--repeats", "1", "--embed-steps", "2", "--threads", "1",
                 "--out-json", str(out_json), "--out-md", str(out_md), "--images-dir", str(tmp_path / "img")]) == 0
    results = json.loads(out_json.read_text())
    assert set(results) >= {"header", "model_quality", "samples", "tasks", "timings"}
    assert results["samples"]["n"] == 4 and "## Demo model: random samples" in out_md.read_text()
    quality = results["model_quality"]
    assert quality["n"] == 2 and len(quality["per_class_iou"]) == len(quality["reconstruction"]["per_class_iou"]) == 13
    assert "reconstruction's reading" in out_md.read_text()
    assert set(results["tasks"]["summary"]) == set(PRESET_SEEDS)  # every edit task ran
    assert "preset+10" in results["tasks"]["summary"]["smile"]
    md = out_md.read_text()
    assert "FALLBACK, NOT LPIPS" in md and "## Edit quality" in md and "## Timings" in md
    assert (tmp_path / "img" / "bench-edits.png").is_file() and (tmp_path / "img" / "demo-inversion.png").is_file()


def test_bench_update_merges_parts_from_separate_runs(tmp_path):
    bundle_dir = make_tiny_bundle(tmp_path / "tiny")
    out_json, out_md = tmp_path / "b.json", tmp_path / "b.md"
    common = ["bench", "--model", str(bundle_dir), "--repeats", "1", "--embed-steps", "1", "--threads", "1",
              "--quality-images", "1", "--out-json", str(out_json), "--out-md", str(out_md)]
    assert main(common + ["--parts", "model"]) == 0
    assert main(common + ["--parts", "timings", "--update"]) == 0
    results = json.loads(out_json.read_text())
    assert {"model_quality", "timings"} <= set(results)  # the first run's part survived
    assert set(results["header"]["parts"]) == {"model", "timings"}
    assert "## Timings" in out_md.read_text() and "## Demo model" in out_md.read_text()
    assert main(common + ["--parts", "timings"]) == 0  # without --update: a fresh report
    assert "model_quality" not in json.loads(out_json.read_text())
