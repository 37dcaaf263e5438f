"""StyleGAN2 training on streamed toy-portrait renders, with a jointly trained encoder.

Pure adversarial training needs many CPU hours; these additions converge faster on purpose while
keeping a StyleGAN2 whose random samples come from the mapping network:

* **reconstruction through the encoder**: real renders → encoder → W+ → synthesis, L1 + MSE, plus
  L1 on the images' finite differences (``edge_weight``): small parts (pupils, brows, teeth) cover
  few pixels, so a plain pixel loss is content to blur them; their edges weigh far more. The
  synthesis network learns to draw every part early, long before the adversarial signal would
  teach it;
* **single-W reconstruction**: for a share of the batch the encoder's W+ is replaced by its mean
  over layers (one W, broadcast), so the synthesis network learns to draw faces from plain W codes,
  which is what the mapping network feeds it;
* **mapping matched to the encoder's codes**: the mapping network is trained on its own (with its
  own optimizer and learning rate) to minimise the sliced Wasserstein distance between its outputs
  and a bank of recent single-W encoder codes of renders. Random samples therefore land where the
  synthesis network draws faces. (With only the adversarial signal, scaled down by the mapping's
  0.01 learning-rate multiplier, its samples stayed off the faces for the whole first run);
* **latent regression**: the encoder inverts the generator's own samples (W known), which keeps
  its codes and the mapping's in one region;
* **class-balanced reconstruction** (``class_balance``): the renders' labels weight the pixel
  loss, rare small parts (pupils, teeth, mouth interiors, glasses) far above skin and background;
* a lighter discriminator with the usual non-saturating logistic loss, lazy R1 and an EMA generator
  with a short half-life (see ``GanTrainConfig.ema_half_life_images``).

Runs resume from ``<run_dir>/checkpoint.pt`` (plain tensors, loaded with ``weights_only=True``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..discriminator import Discriminator
from ..encoder import Encoder
from ..generator import Generator, GeneratorConfig
from ..imageio import grid, save_png, tensor_psnr, to_uint8
from .data import ToyFaceStream, class_pixel_weighting
from .losses import edge_loss, pixel_loss, sliced_wasserstein

log = logging.getLogger("editgan.train")

# ~1.5 M parameters: 128 channels up to 16², 64 at 32², 32 at 64². Noise inputs are off: on flat-colour
# data they only added speckle in the prototype.
DEMO_GENERATOR = GeneratorConfig(resolution=64, z_dim=256, w_dim=256, mapping_layers=4, channel_base=2048,
                                 channel_max=128, use_noise=False)


@dataclass
class GanTrainConfig:
    """Hyper-parameters of ``editgan train gan`` (saved in the checkpoint; a resumed run keeps them)."""

    generator: dict = field(default_factory=DEMO_GENERATOR.to_dict)
    encoder: dict = field(default_factory=lambda: {"base_channels": 16, "max_channels": 128, "head_channels": 32})
    d_channel_base: int = 2048
    d_channel_max: int = 128
    batch: int = 16
    lr_g: float = 0.002
    lr_d: float = 0.002
    lr_e: float = 0.001
    beta1_g: float = 0.0
    r1_gamma: float = 0.05
    r1_interval: int = 16
    adv_weight: float = 1.0
    rec_weight: float = 4.0
    edge_weight: float = 4.0
    # Exponent p of the reconstruction's per-class pixel weights, frequency^-p (0: every pixel alike).
    class_balance: float = 0.0
    latreg_weight: float = 1.0
    single_w_fraction: float = 0.5
    # Adversarial loss on the single-W reconstructions too (the discriminator scores them as fakes
    # beside the mapping's samples): the synthesis network is sharpened where the encoder's codes
    # are, not only where the mapping samples. 0 = reconstruction losses alone teach it there.
    rec_adv_weight: float = 0.0
    lr_mapping: float = 0.05
    # Weight of the adversarial loss on the mapping network (as in StyleGAN2, where it is all the
    # mapping learns from). 0 = the mapping learns only to match the encoder's codes.
    mapping_adv_weight: float = 0.0
    # After a warm start (a new discriminator), this many images train the discriminator alone,
    # so that the generator's first adversarial gradients come from one that has learned something.
    d_warmup_images: int = 0
    code_bank: int = 4096
    swd_batch: int = 512
    swd_projections: int = 256
    # Short on purpose: generator and encoder co-adapt, so the latent space drifts; a 10k-image EMA
    # averaged generators that disagree on it (its encoder reconstructions: 17.3 vs 21.6 dB for G).
    ema_half_life_images: float = 1_500.0
    ema_rampup: float = 0.05
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class GanTrainer:
    def __init__(self, run_dir: str | Path, cfg: GanTrainConfig | None = None, device: str = "cpu",
                 init_from: str | Path | None = None, overrides: dict[str, float] | None = None):
        """Resume ``run_dir`` if it has a checkpoint; else start fresh, or warm-start generator and
        encoder from the bundle ``init_from`` (the committed demo model: training can continue in a
        session whose run folder is gone; the discriminator restarts). A resumed or warm-started
        run keeps its recorded recipe over ``cfg``; ``overrides`` change numeric hyper-parameters,
        also of such a run (a staged recipe, e.g. the adversarial weight)."""
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        ckpt_path = self.run_dir / "checkpoint.pt"
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True) if ckpt_path.is_file() else None
        bundle = recorded = None
        if state is not None:
            recorded = GanTrainConfig(**json.loads(state["config_json"]))
            log.info("resuming %s at %d images", ckpt_path, int(state["images_seen"]))
        elif init_from is not None:
            from ..bundle import Bundle
            bundle = Bundle.load(init_from)
            recorded = _recorded_config(bundle)
        if recorded is not None:  # a run goes on with its own recipe; only ``overrides`` change it
            _warn_ignored(cfg, recorded)
            cfg = recorded
        self.cfg = _with_overrides(cfg or GanTrainConfig(), overrides or {})
        gcfg = GeneratorConfig.from_dict(self.cfg.generator)
        torch.manual_seed(self.cfg.seed)
        self.G = Generator(gcfg).to(self.device)
        self.G_ema = Generator(gcfg).to(self.device).eval()
        self.G_ema.load_state_dict(self.G.state_dict())
        self.D = Discriminator(gcfg.resolution, self.cfg.d_channel_base, self.cfg.d_channel_max).to(self.device)
        self.E = Encoder.from_config(self.cfg.encoder, gcfg).to(self.device)
        betas = (self.cfg.beta1_g, 0.99)
        r1_ratio = self.cfg.r1_interval / (self.cfg.r1_interval + 1)  # lazy regularization correction
        self.opt_g = torch.optim.Adam(self.G.synthesis.parameters(), lr=self.cfg.lr_g, betas=betas)
        self.opt_map = torch.optim.Adam(self.G.mapping.parameters(), lr=self.cfg.lr_mapping, betas=(0.9, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr_d * r1_ratio,
                                      betas=(0.0, 0.99 ** r1_ratio))
        self.opt_e = torch.optim.Adam(self.E.parameters(), lr=self.cfg.lr_e, betas=(0.9, 0.99))
        self.images_seen = 0
        self.iteration = 0
        self._last_fake = None
        self.d_only_until = 0  # images_seen below which only the discriminator learns
        self.code_bank = torch.zeros(0, gcfg.w_dim, device=self.device)
        if state is not None:
            for name in ("G", "G_ema", "D", "E"):
                getattr(self, name).load_state_dict(state[name])
            for name in self.OPTIMIZERS:
                opt = getattr(self, name)
                configured = [(g["lr"], g["betas"]) for g in opt.param_groups]
                opt.load_state_dict(state[name])
                for group, (lr, betas) in zip(opt.param_groups, configured):  # the config (maybe overridden) wins
                    group["lr"], group["betas"] = lr, betas
            self.images_seen, self.iteration = int(state["images_seen"]), int(state["iteration"])
        if bundle is not None:
            self._warm_start(bundle, init_from)
        self.data = ToyFaceStream(gcfg.resolution, self.cfg.batch, seed=self.cfg.seed * 1_000_003 + self.iteration)
        self.pixel_weighting = class_pixel_weighting(gcfg.resolution, self.cfg.class_balance)
        self.fixed_z = torch.randn(16, gcfg.z_dim, generator=torch.Generator().manual_seed(1234)).to(self.device)
        self.fixed_real = ToyFaceStream(gcfg.resolution, 8, seed=10 ** 9).next_batch().to(self.device)

    def _warm_start(self, bundle, bundle_path) -> None:
        if bundle.generator.cfg != self.G.cfg or bundle.encoder is None:
            raise ValueError(f"{bundle_path}: generator config differs from the training config, or no encoder")
        self.G.load_state_dict(bundle.generator.state_dict())
        self.G_ema.load_state_dict(bundle.generator.state_dict())
        self.E.load_state_dict(bundle.encoder.state_dict())
        self.images_seen = int(bundle.provenance.get("images_seen", 0))
        self.d_only_until = self.images_seen + self.cfg.d_warmup_images
        log.info("warm start from %s (%d images seen)", bundle_path, self.images_seen)

    OPTIMIZERS = ("opt_g", "opt_map", "opt_d", "opt_e")

    # --- one iteration -------------------------------------------------------------------------
    def step(self) -> dict:
        cfg, G, D, E = self.cfg, self.G, self.D, self.E
        real, labels = (t.to(self.device) for t in self.data.next_labelled_batch())
        n = real.shape[0]
        stats = {}

        # Discriminator: logistic loss on real vs mapping-network samples (+ lazy R1 on reals).
        # The D step scores the previous iteration's samples: one generator forward less per step.
        D.requires_grad_(True)
        d_only = self.images_seen < self.d_only_until
        fake = None if d_only else self._last_fake
        if fake is None:
            with torch.no_grad():
                fake = G(torch.randn(n, G.z_dim, device=self.device))
                if d_only and cfg.rec_adv_weight > 0:
                    single = E(real).mean(dim=1, keepdim=True).expand(-1, G.num_ws, -1)
                    fake = self._fakes_for_d(fake, G.synthesis(single)[0])
        do_r1 = self.iteration % cfg.r1_interval == 0
        real_in = real.detach().requires_grad_(do_r1)
        real_logits = D(real_in)
        d_loss = F.softplus(D(fake)).mean() + F.softplus(-real_logits).mean()
        if do_r1:
            (grad,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            d_loss = d_loss + r1 * (cfg.r1_gamma / 2) * cfg.r1_interval
            stats["r1"] = r1.item()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        stats["d_loss"] = d_loss.item()
        stats["d_real"] = real_logits.mean().item()
        if d_only:
            self.images_seen += n
            self.iteration += 1
            return stats

        # Synthesis + encoder: adversarial samples, reconstruction of reals (W+ or single W),
        # latent regression. The mapping network only learns in ``_match_mapping``.
        D.requires_grad_(False)
        self.opt_map.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(cfg.mapping_adv_weight > 0):
            w = G.mapping(torch.randn(n, G.z_dim, device=self.device), update_w_avg=True)
        if w.requires_grad:  # the mapping's share of the adversarial gradient, at its own weight
            w = _scale_gradient(w, cfg.mapping_adv_weight / max(cfg.adv_weight, 1e-8))
        ws = w.unsqueeze(1).repeat(1, G.num_ws, 1)
        fake, _ = G.synthesis(ws)
        g_adv = F.softplus(-D(fake)).mean()
        E.w_avg.copy_(G.w_avg)
        codes = E(real)
        single = codes.mean(dim=1, keepdim=True)
        use_single = torch.rand(n, 1, 1, device=self.device) < cfg.single_w_fraction
        rec, _ = G.synthesis(torch.where(use_single, single.expand_as(codes), codes))
        pixel_weight = None if self.pixel_weighting is None else self.pixel_weighting(labels)
        rec_loss, rec_edges = pixel_loss(rec, real, pixel_weight), edge_loss(rec, real)
        lat_loss = (E(fake.detach()) - ws.detach()).square().mean()
        loss = (cfg.adv_weight * g_adv + cfg.rec_weight * rec_loss + cfg.edge_weight * rec_edges
                + cfg.latreg_weight * lat_loss)
        single_rec = rec[use_single.flatten()]
        if cfg.rec_adv_weight > 0 and len(single_rec):
            rec_adv = F.softplus(-D(single_rec)).mean()
            loss = loss + cfg.rec_adv_weight * rec_adv
            stats["rec_adv"] = rec_adv.item()
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_e.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.opt_e.step()
        self._last_fake = self._fakes_for_d(fake.detach(), single_rec.detach())
        stats.update(g_adv=g_adv.item(), rec=rec_loss.item(), rec_edges=rec_edges.item(), latreg=lat_loss.item(),
                     rec_psnr=tensor_psnr(rec, real))
        self.code_bank = torch.cat([single.detach().squeeze(1), self.code_bank])[:cfg.code_bank]
        if len(self.code_bank) >= cfg.swd_batch:
            stats["swd"] = self._match_mapping()
        elif w.requires_grad:
            self.opt_map.step()
            self.opt_map.zero_grad(set_to_none=True)

        self.images_seen += n
        self.iteration += 1
        self._update_ema(n)
        return stats

    def _match_mapping(self) -> float:
        """One step of the mapping network towards the bank of encoder codes (sliced Wasserstein:
        sorted 1-D projections on random directions must agree; no critic to balance)."""
        cfg, mapping = self.cfg, self.G.mapping
        target = self.code_bank[torch.randperm(len(self.code_bank), device=self.device)[:cfg.swd_batch]]
        w = mapping(torch.randn(cfg.swd_batch, self.G.z_dim, device=self.device))
        loss = sliced_wasserstein(w, target, cfg.swd_projections)
        loss.backward()  # added to the adversarial gradient of this iteration, if any
        self.opt_map.step()
        self.opt_map.zero_grad(set_to_none=True)
        return loss.item()

    def _fakes_for_d(self, samples: torch.Tensor, single_rec: torch.Tensor) -> torch.Tensor:
        """What the next discriminator step scores as fake: the mapping's samples, and with
        ``rec_adv_weight`` the single-W reconstructions in place of as many of them (the same
        batch size, so the discriminator's cost does not grow)."""
        if self.cfg.rec_adv_weight <= 0 or not len(single_rec):
            return samples
        k = min(len(single_rec), len(samples) // 2)
        return torch.cat([samples[k:], single_rec[:k]])

    @torch.no_grad()
    def _update_ema(self, batch: int) -> None:
        half_life = min(self.cfg.ema_half_life_images, self.images_seen * self.cfg.ema_rampup) if self.cfg.ema_rampup else self.cfg.ema_half_life_images
        beta = 0.5 ** (batch / max(half_life, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # --- outputs ----------------------------------------------------------------------------------
    @torch.no_grad()
    def write_samples(self) -> Path:
        g = self.G_ema
        samples = to_uint8(g(self.fixed_z, truncation_psi=1.0))
        trunc = to_uint8(g(self.fixed_z[:8], truncation_psi=0.7))
        rec, _ = g.synthesis(self.E(self.fixed_real))
        pairs = np.concatenate([to_uint8(self.fixed_real), to_uint8(rec)])
        sheet = grid(np.concatenate([samples, trunc, pairs]), cols=8)
        return save_png(self.run_dir / "samples" / f"{self.images_seen // 1000:06d}k.png", sheet, scale=2)

    def save_checkpoint(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {name: getattr(self, name).state_dict() for name in ("G", "G_ema", "D", "E", *self.OPTIMIZERS)}
        state.update(images_seen=self.images_seen, iteration=self.iteration, config_json=json.dumps(self.cfg.to_dict()))
        tmp = self.run_dir / "checkpoint.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.run_dir / "checkpoint.pt")
        return self.run_dir / "checkpoint.pt"

    def train(self, total_images: int, sample_every: int = 20_000, checkpoint_every: int = 5_000,
              max_minutes: float | None = None) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        t_start = time.time()
        next_sample = (self.images_seen // sample_every + 1) * sample_every
        next_ckpt = self.images_seen + checkpoint_every
        running: dict[str, float] = {}
        log_file = bar = None
        try:  # from the first line: a SIGTERM that lands while the log opens still leaves a checkpoint
            log_file = open(self.run_dir / "log.jsonl", "a")
            bar = tqdm(total=total_images, initial=min(self.images_seen, total_images), unit="img", smoothing=0.05)
            while self.images_seen < total_images:
                stats = self.step()
                bar.update(self.cfg.batch)
                for k, v in stats.items():
                    running[k] = 0.9 * running.get(k, v) + 0.1 * v
                if self.iteration % 10 == 0:
                    bar.set_postfix({k: f"{running[k]:.3g}" for k in ("d_loss", "g_adv", "rec_psnr", "latreg", "swd")
                                     if k in running})
                    log_file.write(json.dumps({"images": self.images_seen, "time": round(time.time() - t_start, 1), **running}) + "\n")
                    log_file.flush()
                if self.images_seen >= next_sample:
                    self.write_samples()
                    next_sample += sample_every
                if self.images_seen >= next_ckpt:
                    self.save_checkpoint()
                    next_ckpt += checkpoint_every
                if max_minutes is not None and time.time() - t_start > max_minutes * 60:
                    log.info("time budget reached")
                    break
        finally:
            if bar is not None:
                bar.close()
            self.save_checkpoint()
            self.write_samples()
            if log_file is not None:
                log_file.close()


class _GradientScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def _scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back through it is multiplied by ``scale``."""
    return _GradientScale.apply(x, scale)


def _recorded_config(bundle) -> GanTrainConfig | None:
    """The recipe a bundle was trained with (``provenance.train_config``), if it names one."""
    recorded = bundle.provenance.get("train_config")
    if not isinstance(recorded, dict):
        return None
    known = {f.name for f in dataclasses.fields(GanTrainConfig)}
    return GanTrainConfig(**{k: v for k, v in recorded.items() if k in known})


def _warn_ignored(asked: GanTrainConfig | None, recorded: GanTrainConfig) -> None:
    """Say so when a setting the caller chose (not left at its default) loses to the run's own."""
    if asked is None:
        return
    default = GanTrainConfig()
    lost = [f.name for f in dataclasses.fields(asked)
            if getattr(asked, f.name) not in (getattr(default, f.name), getattr(recorded, f.name))]
    if lost:
        log.warning("keeping the run's own %s (use --set NAME=VALUE to change them)",
                    ", ".join(f"{n}={getattr(recorded, n)}" for n in lost))


# Sizes of the checkpoint's tensors: fixed when a run starts.
_ARCHITECTURE = ("d_channel_base", "d_channel_max")


def _with_overrides(cfg: GanTrainConfig, overrides: dict[str, float]) -> GanTrainConfig:
    """Apply numeric overrides; unknown or architecture names and out-of-range values raise ValueError."""
    numeric = {f.name: f.type in ("int", int) for f in dataclasses.fields(cfg)
               if f.type in ("int", "float", int, float) and f.name not in _ARCHITECTURE}
    unknown = set(overrides) - set(numeric)
    if unknown:
        raise ValueError(f"cannot set {sorted(unknown)}: the tunable hyper-parameters are {sorted(numeric)}")
    for name, value in overrides.items():
        is_int = numeric[name]
        positive = name.startswith("lr_") or (is_int and name not in ("seed", "d_warmup_images"))
        if (is_int and value != int(value)) or value < 0 or (positive and value == 0) \
                or (name.endswith("_fraction") and value > 1):
            kind = "a whole number" if is_int else "a number"
            bound = "> 0" if positive else "in [0, 1]" if name.endswith("_fraction") else "≥ 0"
            raise ValueError(f"{name} must be {kind} {bound}, got {value}")
        log.info("setting %s = %s (was %s)", name, value, getattr(cfg, name))
    return dataclasses.replace(cfg, **{k: int(v) if numeric[k] else float(v) for k, v in overrides.items()})
