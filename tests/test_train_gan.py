import torch

from editgan.train.gan import GanTrainConfig, GanTrainer
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
    real = trainer.data.next_batch()
    trainer.data.next_batch = lambda: real  # overfit one batch: the recon path must learn it
    first = trainer.step()["rec"]
    for _ in range(15):
        last = trainer.step()["rec"]
    assert last < 0.7 * first
