"""The demo bundle's training stages after the GAN: export, encoder, segmenter (16 shots), presets.

Seed ranges keep training and evaluation apart: the GAN streams faces from its own RNG; the 16
segmentation annotations are a stratified sample (``ANNOTATION_SEEDS``, every part at its
rate); each preset learns on the first usable faces from ``PRESET_SEEDS[name]`` on and picks its
default strength on others from ``STRENGTH_SEEDS[name]`` on; the benchmark uses seeds ≥
``HELD_OUT_SEED_BASE`` only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import toyfaces
from ..bundle import Bundle
from ..class_colours import mean_class_colours
from ..encoder import Encoder
from ..generator import Generator, GeneratorConfig
from ..imageio import tensor_psnr
from ..models import toy_classes
from .data import ToyFaceStream, class_pixel_weighting
from .losses import edge_loss, pixel_loss

log = logging.getLogger("editgan.train")

ANNOTATION_SEEDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 26, 36, 139, 641)  # toyfaces.stratified_seeds(16)
PRESET_SEEDS = {name: 10_000 + 1000 * i for i, name in enumerate(sorted(toyfaces.EDITS))}  # first seed of each
STRENGTH_SEEDS = {name: 500_000 + 1000 * i for i, name in enumerate(sorted(toyfaces.EDITS))}  # validation faces
# Default-strength candidates. Nothing below 0.5: on the demo model a weak preset scores best on
# PSNR exactly when its change is drawn badly (add_glasses, big_pupils), and a default that hides
# the change is no default; the user's slider still goes anywhere.
STRENGTH_CANDIDATES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
# Strengths whose mean gain is this close to the best are equally good on 8 faces; the weakest of
# them changes the least outside the edit (demo short_hair: 1.5 gains 3.79 dB, 2 gains 3.94, but
# the leak rises 0.58 -> 0.66 and the unchanged pixels' PSNR falls 30.1 -> 27.8 dB).
STRENGTH_TOLERANCE_DB = 0.2
HELD_OUT_SEED_BASE = 1_000_000
# The toy bundle's edit settings (model.json ``edit_defaults``), measured on the 219k demo model
# (docs/demo-model.md, "class colours", "the edit's step size"): the class-colour term at 3 raised
# the edit gain of 32 probe edits +2.66 -> +3.42 dB (target IoU 0.616 -> 0.650), and Adam's lr 0.06
# instead of the paper's 0.02 +3.73 -> +4.29 dB (0.646 -> 0.694); 30 % of the cross-entropy on the
# painted change with the MSE weight at 40 instead of 5 (session 21, "the cross-entropy's weight on
# the change") +5.07 -> +5.11 dB, target IoU 0.694 -> 0.757, pooled leak 1.21 -> 1.12 %; with the
# composite's feather at the painting (session 22), lr 0.09 instead of 0.06 +5.54 -> +5.76 and
# +4.53 -> +4.69 dB on two sets of 32 ("the edit's step size, again"). A fresh ``train all`` also
# learns the presets with them; the shipped ones were learned without.
TOY_EDIT_DEFAULTS = {"lambda_colour": 3.0, "lr": 0.09, "ce_change_share": 0.3, "lambda_mse": 40.0}


def export_bundle(run_dir: str | Path, out: str | Path, name: str = "toyfaces-64") -> Bundle:
    """GAN checkpoint → bundle with the EMA generator and the jointly trained encoder."""
    state = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = json.loads(state["config_json"])
    gcfg = GeneratorConfig.from_dict(cfg["generator"])
    g = Generator(gcfg)
    g.load_state_dict(state["G_ema"])
    enc = Encoder.from_config(cfg["encoder"], gcfg)
    enc.load_state_dict(state["E"])
    enc.w_avg.copy_(g.w_avg)
    bundle = Bundle(name=name, generator=g.eval(), classes=toy_classes(), domain="toy-portraits", licence="MIT",
                    provenance={"trained_by": "editgan train gan", "images_seen": int(state["images_seen"]),
                                "train_config": cfg}, components={"encoder": enc.eval()},
                    edit_defaults=dict(TOY_EDIT_DEFAULTS))
    bundle.save(out)
    log.info("exported %s (%d training images) -> %s", name, int(state["images_seen"]), out)
    return bundle


def finetune_encoder(bundle: Bundle, steps: int = 2000, batch: int = 16, lr: float = 3e-4, seed: int = 7,
                     rec_weight: float = 1.0, latreg_weight: float = 1.0, edge_weight: float = 1.0,
                     class_balance: float | None = None) -> list[float]:
    """Fit the encoder to the *final* (EMA) generator, which stays frozen.

    Renders: reconstruction (L1 + MSE + ``edge_weight`` × L1 of finite differences, as in GAN
    training; pixels weighted per class with ``class_balance``, by default the GAN recipe's)
    through the generator. Samples: latent regression (the W that made them is known) +
    reconstruction. Returns the reconstruction PSNR per step.
    """
    g, enc = bundle.generator.requires_grad_(False), bundle.encoder
    assert enc is not None, "bundle has no encoder"
    enc.train().requires_grad_(True)
    enc.w_avg.copy_(g.w_avg)
    opt = torch.optim.Adam(enc.parameters(), lr=lr, betas=(0.9, 0.99))
    stream = ToyFaceStream(g.resolution, batch, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    if class_balance is None:
        class_balance = float(bundle.provenance.get("train_config", {}).get("class_balance", 0.0))
    pixel_weighting = class_pixel_weighting(g.resolution, class_balance)
    history = []
    for _ in tqdm(range(steps), desc="encoder", unit="step"):
        real, labels = stream.next_labelled_batch()
        pixel_weight = None if pixel_weighting is None else pixel_weighting(labels)
        with torch.no_grad():
            ws_fake = g.map(torch.randn(batch // 2, g.z_dim, generator=gen), truncation_psi=0.8)
            fake, _ = g.synthesis(ws_fake)
        ws_real = enc(real)
        rec, _ = g.synthesis(ws_real)
        rec_loss = pixel_loss(rec, real, pixel_weight) + edge_weight * edge_loss(rec, real)
        ws_pred = enc(fake)
        rec_fake, _ = g.synthesis(ws_pred)
        lat_loss = (ws_pred - ws_fake).square().mean() + (rec_fake - fake).abs().mean()
        loss = rec_weight * rec_loss + latreg_weight * lat_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(tensor_psnr(rec, real))
    enc.eval().requires_grad_(False)
    return history


def annotated_renders(seeds, resolution: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images, labels = [], []
    for s in seeds:
        rgb, lab = toyfaces.render(toyfaces.params_for_seed(s), size=resolution)
        images.append(rgb)
        labels.append(lab)
    return images, labels


def train_segmenter_stage(bundle: Bundle, embed_steps: int = 100, seg_steps: int = 1500, members: int = 3,
                          seeds=ANNOTATION_SEEDS, lr: float = 3e-3, class_weight_power: float = 0.5,
                          mirror: bool = True, context: int = 5, read_image: bool = True,
                          standardize: bool = True) -> dict:
    """DatasetGAN few-shot: embed 16 annotated renders, train the ensemble on their generator features.

    ``context``, ``read_image``: the segmenter reads the full-resolution maps over k×k
    neighbourhoods, and the RGB output as one more map (``Segmenter``). On 80 held-out renders with
    the 219k model: per pixel 0.646 mIoU; 3×3 0.679; 3×3 + RGB 0.696; 5×5 + RGB 0.703; the same
    trained on standardized maps (``standardize``, see ``train_segmenter``) 0.714.

    Each class's ``appearance`` (its mean colour in the annotated renders) is set too.

    ``mirror``: also embed each annotated render mirrored left-right, with its labels mirrored (no
    toy-portrait class has a side, so these are the same 16 annotations, seen twice). On 80 held-out
    renders with the 160k model: mIoU 0.471 → 0.493; extra embeddings of the same render (encoder
    only, 40 steps) instead lowered it to 0.454.
    """
    from ..embedding import default_embed_settings, embed
    from ..perceptual import make_perceptual_loss
    from ..segmenter import train_segmenter
    g = bundle.generator
    perceptual, status = make_perceptual_loss(prefer="auto")
    images, labels = annotated_renders(seeds, g.resolution)
    # the annotations also tell what each class looks like: the colour of a part painted where the
    # face shows none of it yet (class_colours)
    bundle.classes = [dataclasses.replace(c, appearance=a)
                      for c, a in zip(bundle.classes, mean_class_colours(images, labels, len(bundle.classes)))]
    if mirror:
        images += [np.ascontiguousarray(img[:, ::-1]) for img in images]
        labels += [np.ascontiguousarray(lab[:, ::-1]) for lab in labels]
    settings = default_embed_settings(status["kind"])
    ws_list, psnrs = [], []
    t0 = time.perf_counter()
    for img in tqdm(images, desc="embed annotations", unit="img"):
        e = embed(g, img, perceptual=perceptual, encoder=bundle.encoder, steps=embed_steps, settings=settings)
        ws_list.append(e.ws.detach())
        psnrs.append(e.psnr)
    t_embed = time.perf_counter() - t0
    bar = tqdm(total=1, desc="segmenter", unit="step")

    def progress(step, total):
        bar.total = total
        bar.n = step
        bar.refresh()

    seg, history = train_segmenter(g, ws_list, [torch.as_tensor(l.astype(np.int64)) for l in labels],
                                   num_classes=len(bundle.classes), steps=seg_steps, members=members, lr=lr,
                                   class_weight_power=class_weight_power, standardize=standardize, progress=progress,
                                   context=context, read_image=read_image)
    bar.close()
    bundle.components["segmenter"] = seg
    recipe = {"annotation_seeds": [int(s) for s in seeds], "embed_steps": embed_steps, "steps": seg_steps,
              "members": members, "lr": lr, "class_weight_power": class_weight_power, "mirror": mirror,
              "context": context, "read_image": read_image, "standardize": standardize}
    bundle.provenance["segmenter_training"] = recipe
    return {**recipe, "embedded": len(images), "embed_psnr_mean": float(np.mean(psnrs)), "embed_seconds": t_embed,
            "final_loss": history[-1], "perceptual": status["kind"]}


def _check_edit_names(edits) -> list[str]:
    names = sorted(PRESET_SEEDS if edits is None else edits)
    unknown = set(names) - set(PRESET_SEEDS)
    if unknown:
        raise ValueError(f"unknown edits {sorted(unknown)}; known: {sorted(PRESET_SEEDS)}")
    return names


def _usable_faces(editor, name: str, first_seed: int, count: int, embed_steps: int) -> list[tuple]:
    """The first ``count`` renders from ``first_seed`` on whose edit ``name`` shows at the model resolution.

    Each is ``(seed, session, painted labels, pair)``: the "user" paints the face's true change.
    """
    from ..editor import EditorError
    faces = []
    for seed in range(first_seed, first_seed + 1000):
        pair = toyfaces.sample_edit_pair(name, seed, size=editor.generator.resolution)
        session = editor.embed(pair["source_rgb"], steps=embed_steps)
        painted = user_edit_labels(session.source_labels, pair["source_labels"], pair["target_labels"])
        try:
            editor.model_target(session, painted)
        except EditorError as e:
            if e.code != "no_change":
                raise
            log.info("%s: seed %d shows no change at %d², next face", name, seed, editor.generator.resolution)
            continue
        faces.append((seed, session, painted, pair))
        if len(faces) == count:
            return faces
    raise RuntimeError(f"{name}: only {len(faces)} of 1000 faces show the change")


def train_presets_stage(bundle: Bundle, steps: int = 100, faces: int = 8, embed_steps: int = 100, edits=None,
                        strength_faces: int = 8) -> dict:
    """One editing vector per counterfactual edit, shared by ``faces`` renders (``Editor.learn_preset``).

    ``edits``: the names to (re)learn, default every ``toyfaces.EDITS``; other presets are kept.
    A face whose change the model's segmentation cannot show at its resolution teaches nothing and
    is skipped for the next seed. Then each default strength is chosen on ``strength_faces`` other
    renders (:func:`choose_strengths_stage`; 0 leaves every default at 1).
    """
    from ..editor import Editor
    names = _check_edit_names(edits)
    editor = Editor(bundle)
    report = {}
    for name in tqdm(names, desc="presets", unit="preset"):
        examples = _usable_faces(editor, name, PRESET_SEEDS[name], faces, embed_steps)
        info = editor.learn_preset(name, [(session, painted) for _, session, painted, _ in examples], steps=steps)
        report[name] = {"seeds": [seed for seed, *_ in examples], "classes": list(info.classes), "fit": info.source}
    recipe = bundle.provenance.setdefault("preset_training", {})
    recipe.update({"steps": steps, "faces": faces, "embed_steps": embed_steps})
    recipe.pop("default_strength", None)  # chosen per preset now (``strength`` below)
    recipe.setdefault("seeds", {}).update({name: r["seeds"] for name, r in report.items()})
    if strength_faces > 0:
        chosen = choose_strengths_stage(bundle, faces=strength_faces, embed_steps=embed_steps, edits=names,
                                        editor=editor)
        for name, r in report.items():
            r["default_strength"] = chosen[name]["default_strength"]
    return report


def choose_strengths_stage(bundle: Bundle, faces: int = 8, embed_steps: int = 100, edits=None,
                           candidates=STRENGTH_CANDIDATES, editor=None) -> dict:
    """Set each preset's default strength to the weakest candidate whose mean edit gain on held-apart
    faces is within ``STRENGTH_TOLERANCE_DB`` of the best.

    Edit gain = PSNR(preset result, true edited render) − PSNR(source, true edited render), on the
    first ``faces`` renders from ``STRENGTH_SEEDS[name]`` whose change shows (neither the faces the
    vector was fitted to nor benchmark seeds). On the demo model the best strength ranges from 0.5 to
    3 (in a first sweep short_hair gained +2.29 dB at 1, +3.89 at 2; close_eyes' target IoU went
    from 0.36 at 1 to 0.83 at 2). ``editor``: an ``Editor`` on ``bundle`` to reuse (one is made if None).
    """
    from .. import presets as presets_lib
    from ..regions import psnr
    from ..editor import Editor
    names = _check_edit_names(edits)
    editor = editor or Editor(bundle)
    directory = bundle.presets_dir
    report = {}
    for name in tqdm(names, desc="strengths", unit="preset"):
        presets_lib.read_metadata(directory, name)  # a clear error for a missing preset, before any work
        examples = _usable_faces(editor, name, STRENGTH_SEEDS[name], faces, embed_steps)
        baselines = [psnr(pair["source_rgb"], pair["target_rgb"]) for *_, pair in examples]
        gains = []
        for strength in candidates:
            results = [editor.apply_presets(session, [(name, strength)]).image for _, session, _, _ in examples]
            gains.append(float(np.mean([psnr(image, pair["target_rgb"]) - base
                                        for image, (*_, pair), base in zip(results, examples, baselines)])))
        best = min(c for c, g in zip(candidates, gains) if g >= max(gains) - STRENGTH_TOLERANCE_DB)
        presets_lib.set_default_strength(directory, name, best)
        report[name] = {"default_strength": float(best), "seeds": [seed for seed, *_ in examples],
                        "mean_gain_db": dict(zip(map(str, candidates), gains))}
        log.info("preset %s: default strength %.2f (mean gain %+.2f dB on %d faces, best %+.2f)", name, best,
                 gains[candidates.index(best)], faces, max(gains))
    recipe = bundle.provenance.setdefault("preset_training", {})
    strength = recipe.setdefault("strength", {})
    strength.update({"faces": faces, "candidates": list(candidates), "tolerance_db": STRENGTH_TOLERANCE_DB,
                     "embed_steps": embed_steps})
    strength.setdefault("chosen", {}).update({name: r["default_strength"] for name, r in report.items()})
    strength.setdefault("seeds", {}).update({name: r["seeds"] for name, r in report.items()})
    return report


def user_edit_labels(current: np.ndarray, source_gt: np.ndarray, target_gt: np.ndarray) -> np.ndarray:
    """What a user would paint: the current segmentation with the target's true labels pasted where they change."""
    changed = source_gt != target_gt
    out = current.copy()
    out[changed] = target_gt[changed]
    return out
