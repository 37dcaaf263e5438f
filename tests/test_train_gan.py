import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from editgan.bundle import Bundle
from editgan.train.gan import GanTrainConfig, GanTrainer
from editgan.train.data import ToyFaceStream, class_frequencies
from editgan.train.losses import class_balanced_weights, edge_loss, pixel_loss, sliced_wasserstein
from editgan.train.stages import (STRENGTH_CANDIDATES, STRENGTH_TOLERANCE_DB, TOY_EDIT_DEFAULTS, export_bundle,
                                  finetune_encoder)
from tests.conftest import tiny_config

TINY_ENCODER = {"base_channels": 8, "max_channels": 16, "head_channels": 8}


def _cfg():
    return GanTrainConfig(generator=tiny_config(32, use_noise=False).to_dict(), encoder=TINY_ENCODER,
                          d_channel_base=256, d_channel_max=16, batch=4, r1_interval=2)


def test_steps_checkpoint_and_resume(tmp_path):
    trainer = GanTrainer(tmp_path / "run", _cfg())
    before = trainer.G.synthesis.b32.conv1.weight.detach().clone()
    stats = [trainer.step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(list(s.values()))).all() for s in stats)
    assert "r1" in stats[0] and "rec_psnr" in stats[-1]
    assert not torch.equal(before, trainer.G.synthesis.b32.conv1.weight)  # the generator learns
    assert torch.count_nonzero(trainer.G.w_avg) > 0  # the mean latent is tracked
    trainer.save_checkpoint()
    grid = trainer.write_samples()
    assert grid.is_file()

    resumed = GanTrainer(tmp_path / "run")  # config comes from the checkpoint
    assert resumed.iteration == 3 and resumed.images_seen == 12 and resumed.cfg.batch == 4
    for a, b in zip(resumed.G_ema.state_dict().values(), trainer.G_ema.state_dict().values()):
        assert torch.equal(a, b)
    resumed.train(total_images=20, sample_every=8, checkpoint_every=8)
    assert resumed.images_seen >= 20
    assert (tmp_path / "run" / "log.jsonl").is_file()


def test_reconstruction_improves_on_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    trainer = GanTrainer(tmp_path / "r", _cfg())
    batch = trainer.data.next_labelled_batch()
    trainer.data.next_labelled_batch = lambda: batch  # overfit one batch: the recon path must learn it
    first = trainer.step()["rec"]
    for _ in range(15):
        last = trainer.step()["rec"]
    assert last < 0.7 * first


def test_edge_loss_charges_blur_of_small_parts_more_than_the_pixel_loss():
    """A one-pixel dot blurred away costs little in L1 + MSE but all of its edges in the edge loss."""
    sharp = torch.zeros(1, 3, 16, 16)
    sharp[..., 7, 7] = 1.0
    blurred = F.avg_pool2d(sharp, 3, stride=1, padding=1)
    flat_shift = sharp + 0.1  # same image, brighter: no edge changes
    assert edge_loss(sharp, sharp).item() == 0 and pixel_loss(sharp, sharp).item() == 0
    assert edge_loss(flat_shift, sharp).item() < 1e-7 < pixel_loss(flat_shift, sharp).item()
    assert edge_loss(blurred, sharp).item() > 2 * pixel_loss(blurred, sharp).item()
    rec = blurred.clone().requires_grad_(True)
    edge_loss(rec, sharp).backward()
    assert rec.grad[0, 0, 7, 7] < 0  # pushes the dot's centre back up
    with pytest.raises(AssertionError):
        edge_loss(sharp, sharp[..., :8])


def test_class_balanced_weights_average_one_per_pixel_and_favour_rare_classes():
    frequencies = torch.tensor([0.6, 0.3, 0.09, 0.01])
    weights = class_balanced_weights(frequencies, 0.5)
    assert torch.isclose((frequencies * weights).sum(), torch.tensor(1.0))  # the average pixel weighs 1
    assert torch.all(weights[1:] > weights[:-1])  # the rarer, the heavier
    assert torch.isclose(weights[3] / weights[0], torch.tensor(60.0 ** 0.5))
    assert torch.allclose(class_balanced_weights(frequencies, 0.0), torch.ones(4))
    assert torch.isclose((frequencies * class_balanced_weights(frequencies * 7, 0.5)).sum(), torch.tensor(1.0))


def test_weighted_pixel_loss_counts_each_pixel_by_its_weight():
    real = torch.zeros(2, 3, 8, 8)
    rec = real.clone()
    rec[:, :, :4] = 0.5  # error in the top half only
    ones = torch.ones(2, 1, 8, 8)
    assert torch.isclose(pixel_loss(rec, real, ones), pixel_loss(rec, real))
    top_ignored = ones.clone()
    top_ignored[:, :, :4] = 0
    assert pixel_loss(rec, real, top_ignored).item() == 0
    assert torch.isclose(pixel_loss(rec, real, 3 * ones), 3 * pixel_loss(rec, real))
    with pytest.raises(AssertionError):
        pixel_loss(rec, real, ones[:, :, :4])


def test_stream_labels_match_its_images_and_frequencies_cover_every_class():
    images, labels = ToyFaceStream(32, 3, seed=5).next_labelled_batch()
    assert images.shape == (3, 3, 32, 32) and labels.shape == (3, 32, 32) and labels.dtype == torch.int64
    assert torch.equal(images, ToyFaceStream(32, 3, seed=5).next_batch())  # same faces, same order
    frequencies = class_frequencies(32, count=64)
    assert torch.isclose(frequencies.sum(), torch.tensor(1.0)) and torch.all(frequencies > 0)
    assert frequencies[0] > 0.3 and frequencies.argmin() != 0  # background is common, parts are rare


def test_class_balance_weights_the_reconstruction_of_rare_parts(tmp_path):
    plain, twin = GanTrainer(tmp_path / "plain", _cfg()), GanTrainer(tmp_path / "twin", _cfg())
    balanced = GanTrainer(tmp_path / "balanced", _cfg(), overrides={"class_balance": 0.5})
    assert plain.pixel_weighting is None
    weights = balanced.pixel_weighting(torch.arange(13).view(1, 1, 13))  # one pixel of each class
    assert weights.shape == (1, 1, 1, 13) and weights.max() > 5 * weights.min()
    batch = plain.data.next_labelled_batch()
    recs = []
    for trainer in (plain, twin, balanced):  # same start, batch and random draws: only the weights differ
        trainer.data.next_labelled_batch = lambda: batch
        torch.manual_seed(1)
        recs.append(trainer.step()["rec"])
    assert recs[0] == pytest.approx(recs[1], rel=1e-6)
    assert recs[2] != pytest.approx(recs[0], rel=1e-3) and torch.isfinite(torch.tensor(recs[2]))
    balanced.save_checkpoint()
    assert GanTrainer(tmp_path / "balanced").pixel_weighting is not None  # the resumed run keeps the recipe


def test_sliced_wasserstein_is_zero_for_permutations_and_grows_with_shift():
    torch.manual_seed(0)
    a = torch.randn(256, 8)
    assert sliced_wasserstein(a, a[torch.randperm(256)], 64).item() < 1e-10
    near = sliced_wasserstein(a, a + 0.1, 64).item()
    far = sliced_wasserstein(a, a + 1.0, 64).item()
    assert 0 < near < far


def test_mapping_moves_towards_the_encoder_code_bank(tmp_path):
    """The mapping step alone must pull random samples onto the bank's distribution."""
    torch.manual_seed(0)
    cfg = _cfg()
    cfg.swd_batch, cfg.lr_mapping = 128, 3.0
    trainer = GanTrainer(tmp_path / "m", cfg)
    trainer.code_bank = torch.randn(512, trainer.G.w_dim) * 0.3 + 2.0  # a far-away target cloud
    synthesis_before = [p.detach().clone() for p in trainer.G.synthesis.parameters()]
    first = trainer._match_mapping()
    for _ in range(100):
        last = trainer._match_mapping()
    assert last < 0.2 * first
    mean_w = trainer.G.mapping(torch.randn(512, trainer.G.z_dim)).mean().item()
    assert abs(mean_w - 2.0) < 0.5
    assert all(torch.equal(a, b) for a, b in zip(synthesis_before, trainer.G.synthesis.parameters()))


def test_step_fills_the_code_bank_and_reports_the_mapping_loss(tmp_path):
    cfg = _cfg()
    cfg.swd_batch, cfg.code_bank = 8, 10
    trainer = GanTrainer(tmp_path / "b", cfg)
    first, second, third = (trainer.step() for _ in range(3))
    assert "swd" not in first and "swd" in third  # 4, then 8 codes banked: matching starts
    assert len(trainer.code_bank) == 10  # a ring of the newest codes, capped


def test_overrides_apply_to_a_resumed_run_and_unknown_names_are_refused(tmp_path):
    GanTrainer(tmp_path / "o", _cfg()).save_checkpoint()
    resumed = GanTrainer(tmp_path / "o", overrides={"adv_weight": 0.25, "lr_e": 0.004, "batch": 2.0})
    assert resumed.cfg.adv_weight == 0.25 and resumed.cfg.batch == 2 and isinstance(resumed.cfg.batch, int)
    assert resumed.opt_e.param_groups[0]["lr"] == 0.004  # not the checkpoint's optimizer lr
    resumed.save_checkpoint()
    assert GanTrainer(tmp_path / "o").cfg.adv_weight == 0.25  # kept in the checkpoint
    with pytest.raises(ValueError, match="cannot set"):
        GanTrainer(tmp_path / "o", overrides={"generator": 1.0})


@pytest.mark.parametrize("name, value", [("d_channel_base", 1024.0), ("adv_weight", -1.0), ("lr_g", 0.0),
                                         ("single_w_fraction", 2.0), ("batch", 8.5), ("batch", 0.0)])
def test_overrides_refuse_architecture_and_out_of_range_values(tmp_path, name, value):
    GanTrainer(tmp_path / "o", _cfg()).save_checkpoint()
    with pytest.raises(ValueError, match=name):
        GanTrainer(tmp_path / "o", overrides={name: value})


def test_warm_start_from_a_bundle_keeps_its_recipe(tmp_path, caplog):
    """Continuing from an exported bundle must not fall back to the default recipe."""
    trainer = GanTrainer(tmp_path / "run", _cfg(), overrides={"adv_weight": 0.1, "single_w_fraction": 0.35})
    trainer.step()
    trainer.save_checkpoint()
    assert export_bundle(tmp_path / "run", tmp_path / "bundle").edit_defaults == TOY_EDIT_DEFAULTS
    assert Bundle.load(tmp_path / "bundle").edit_defaults == TOY_EDIT_DEFAULTS
    asked = GanTrainConfig(batch=8)  # the CLI's --batch: loses to the bundle's recipe, with a warning
    with caplog.at_level("WARNING", logger="editgan.train"):
        warm = GanTrainer(tmp_path / "next", asked, init_from=tmp_path / "bundle", overrides={"lr_e": 0.003})
    assert (warm.cfg.adv_weight, warm.cfg.single_w_fraction, warm.cfg.batch) == (0.1, 0.35, 4)
    assert warm.cfg.lr_e == 0.003 and warm.images_seen == trainer.images_seen
    assert "batch=4" in caplog.text
    for a, b in zip(warm.G.state_dict().values(), trainer.G_ema.state_dict().values()):
        assert torch.equal(a, b)


def test_encoder_finetune_follows_the_bundles_class_balance(tmp_path):
    """The encoder stage weighs pixels as the GAN recipe recorded in the bundle did, unless told."""
    trainer = GanTrainer(tmp_path / "run", _cfg(), overrides={"class_balance": 0.5})
    trainer.save_checkpoint()
    runs = {}
    for name, balance in (("recorded", None), ("explicit", 0.5), ("plain", 0.0)):
        bundle = export_bundle(tmp_path / "run", tmp_path / name)
        first = [p.detach().clone() for p in bundle.encoder.parameters()]
        runs[name] = finetune_encoder(bundle, steps=2, batch=4, class_balance=balance)
        assert any(not torch.equal(a, b) for a, b in zip(first, bundle.encoder.parameters()))
        assert not any(p.requires_grad for p in bundle.generator.parameters())  # the generator stays frozen
    assert runs["recorded"] == runs["explicit"] != runs["plain"]


@pytest.mark.parametrize("bad", [["--set", "adv_weight"], ["--set", "adv_weight=lots"], ["--set", "lr_g=nan"],
                                 ["--set", "lr_g=inf"]])
def test_train_gan_cli_rejects_malformed_settings_as_usage_errors(tmp_path, bad, capsys):
    from editgan.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["train", "gan", "--run-dir", str(tmp_path / "r"), *bad])
    assert exc.value.code == 2 and "NAME=NUMBER" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing started


def test_train_gan_cli_names_an_unknown_setting(tmp_path):
    from editgan.cli import main
    with pytest.raises(SystemExit, match="cannot set"):
        main(["train", "gan", "--run-dir", str(tmp_path / "r"), "--set", "no_such=1"])


def test_train_gan_cli_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
    """Real process, real signal: the run stops, keeps its progress, and says how to resume."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "editgan.cli", "train", "gan", "--run-dir", str(run),
                             "--kimg", "100", "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "log.jsonl").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the log file opens when the first training step starts
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted at" in err and "to resume" in err
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert "G_ema" in state and state["images_seen"] >= 0


def test_segmenter_and_presets_stage_clis_record_their_recipes(tmp_path, capsys):
    """`editgan train segmenter`, then `train presets`, on an exported bundle; each records its recipe."""
    from editgan import toyfaces
    from editgan.bundle import Bundle
    from editgan.cli import main
    trainer = GanTrainer(tmp_path / "run", _cfg())
    trainer.step()
    trainer.save_checkpoint()
    export_bundle(tmp_path / "run", tmp_path / "bundle")
    rc = main(["train", "segmenter", "--model", str(tmp_path / "bundle"), "--annotations", "4", "--steps", "3",
               "--embed-steps", "1", "--members", "2", "--class-weight-power", "0.25", "--context", "3",
               "--no-image", "--no-standardize", "--threads", "1"])
    assert rc == 0
    bundle = Bundle.load(tmp_path / "bundle")
    recipe = bundle.provenance["segmenter_training"]
    assert recipe["annotation_seeds"] == toyfaces.stratified_seeds(4)
    assert (recipe["members"], recipe["steps"], recipe["class_weight_power"], recipe["mirror"]) == (2, 3, 0.25, True)
    assert (recipe["context"], recipe["read_image"], recipe["standardize"]) == (3, False, False)
    seg = bundle.segmenter
    assert seg is not None and (seg.members, seg.context, seg.image_channels) == (2, 3, 0)
    out = capsys.readouterr().out
    assert '"annotation_seeds"' in out and '"embedded": 8' in out  # 4 annotations and their mirror images

    with pytest.raises(SystemExit, match="unknown edits"):
        main(["train", "presets", "--model", str(tmp_path / "bundle"), "--edits", "add_glasses,nope"])
    rc = main(["train", "presets", "--model", str(tmp_path / "bundle"), "--edits", "add_glasses", "--faces", "2",
               "--steps", "2", "--embed-steps", "1", "--strength-faces", "2", "--threads", "1"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["add_glasses"]["default_strength"] in STRENGTH_CANDIDATES
    bundle = Bundle.load(tmp_path / "bundle")
    recipe = bundle.provenance["preset_training"]
    assert (recipe["faces"], recipe["steps"], recipe["embed_steps"]) == (2, 2, 1)
    seeds = recipe["seeds"]["add_glasses"]
    assert list(recipe["seeds"]) == ["add_glasses"] and len(seeds) == 2 and min(seeds) >= 10_000
    meta = json.loads((tmp_path / "bundle" / "presets" / "add_glasses.json").read_text())
    assert "glasses" in meta["classes"] and "shared by 2 faces" in meta["source"]
    chosen = recipe["strength"]
    assert meta["default_strength"] == chosen["chosen"]["add_glasses"] == report["add_glasses"]["default_strength"]
    assert chosen["faces"] == 2 and all(s >= 500_000 for s in chosen["seeds"]["add_glasses"])

    with pytest.raises(SystemExit, match="unknown edits"):
        main(["train", "strengths", "--model", str(tmp_path / "bundle"), "--edits", "nope"])
    rc = main(["train", "strengths", "--model", str(tmp_path / "bundle"), "--edits", "add_glasses", "--faces", "2",
               "--embed-steps", "1", "--threads", "1"])
    assert rc == 0
    gains = json.loads(capsys.readouterr().out)["add_glasses"]["mean_gain_db"]
    assert list(gains) == [str(c) for c in STRENGTH_CANDIDATES]
    top = max(gains.values())  # the weakest strength within the tolerance of the best gain
    best = min(c for c in STRENGTH_CANDIDATES if gains[str(c)] >= top - STRENGTH_TOLERANCE_DB)
    assert all(gains[str(c)] < top - STRENGTH_TOLERANCE_DB for c in STRENGTH_CANDIDATES if c < best)
    meta = json.loads((tmp_path / "bundle" / "presets" / "add_glasses.json").read_text())
    assert meta["default_strength"] == best and "shared by 2 faces" in meta["source"]  # the vector itself stays


def test_scale_gradient_keeps_values_and_scales_the_gradient():
    from editgan.train.gan import _scale_gradient
    x = torch.randn(5, requires_grad=True)
    y = _scale_gradient(x, 0.25)
    assert torch.equal(y, x)
    (3 * y).sum().backward()
    assert torch.allclose(x.grad, torch.full((5,), 0.75))


def _mapping_snapshot(trainer):
    return [p.detach().clone() for p in trainer.G.mapping.parameters()]


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_mapping_learns_from_the_adversarial_loss_only_when_asked(tmp_path, weight):
    cfg = _cfg()
    cfg.swd_batch = 10 ** 6  # the code bank never fills: sliced Wasserstein matching never runs
    trainer = GanTrainer(tmp_path / "a", cfg, overrides={"mapping_adv_weight": weight})
    before = _mapping_snapshot(trainer)
    stats = [trainer.step() for _ in range(2)]
    assert all("swd" not in s for s in stats)
    moved = any(not torch.equal(a, b) for a, b in zip(before, trainer.G.mapping.parameters()))
    assert moved == (weight > 0)
    assert all(p.grad is None for p in trainer.G.mapping.parameters())  # nothing left over for the next step


def test_mapping_adversarial_gradient_adds_to_the_code_matching(tmp_path):
    """Same start and random draws: with the adversarial share the mapping ends elsewhere than with
    the code matching alone, and both runs report the matching loss."""
    ends = []
    for weight in (0.0, 0.5):
        cfg = _cfg()
        cfg.swd_batch, cfg.code_bank = 4, 8
        trainer = GanTrainer(tmp_path / f"b{weight}", cfg, overrides={"mapping_adv_weight": weight})
        torch.manual_seed(3)
        stats = trainer.step()
        assert "swd" in stats
        ends.append(_mapping_snapshot(trainer))
    assert any(not torch.equal(a, b) for a, b in zip(*ends))


def test_single_w_reconstructions_meet_the_discriminator_when_asked(tmp_path):
    plain = GanTrainer(tmp_path / "p", _cfg())
    assert "rec_adv" not in plain.step()
    cfg = _cfg()
    trainer = GanTrainer(tmp_path / "r", cfg, overrides={"rec_adv_weight": 0.5, "single_w_fraction": 1.0})
    stats = trainer.step()
    assert "rec_adv" in stats and stats["rec_adv"] > 0
    fakes = trainer._last_fake
    assert fakes.shape == (cfg.batch, 3, 32, 32)  # the discriminator's batch does not grow
    samples, recs = torch.zeros(4, 3, 8, 8), torch.ones(3, 3, 8, 8)
    mixed = trainer._fakes_for_d(samples, recs)
    assert mixed.shape == samples.shape and mixed[:2].sum() == 0 and torch.equal(mixed[2:], recs[:2])
    assert torch.equal(trainer._fakes_for_d(samples, recs[:0]), samples)  # no single-W codes this batch


def test_after_a_warm_start_the_discriminator_learns_alone_first(tmp_path):
    trainer = GanTrainer(tmp_path / "run", _cfg())
    trainer.step()
    trainer.save_checkpoint()
    export_bundle(tmp_path / "run", tmp_path / "bundle")
    warm = GanTrainer(tmp_path / "next", init_from=tmp_path / "bundle",
                      overrides={"d_warmup_images": 8, "rec_adv_weight": 0.5})
    start = warm.images_seen
    g0, e0, d0 = (_params(m) for m in (warm.G, warm.E, warm.D))
    for _ in range(2):  # batch 4: two discriminator-only steps
        stats = warm.step()
        assert "g_adv" not in stats and "d_loss" in stats
    assert warm.images_seen == start + 8
    assert _same(g0, warm.G) and _same(e0, warm.E) and not _same(d0, warm.D)
    assert "g_adv" in warm.step() and not _same(g0, warm.G)  # then the generator trains as usual
    warm.save_checkpoint()
    assert GanTrainer(tmp_path / "next").d_only_until == 0  # a resumed run has its discriminator


def test_without_warm_up_a_warm_start_trains_the_generator_at_once(tmp_path):
    trainer = GanTrainer(tmp_path / "run", _cfg())
    trainer.save_checkpoint()
    export_bundle(tmp_path / "run", tmp_path / "bundle")
    warm = GanTrainer(tmp_path / "next", init_from=tmp_path / "bundle")
    assert "g_adv" in warm.step()


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(before, module):
    return all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
