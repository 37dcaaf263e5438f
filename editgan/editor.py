"""The engine's door (docs/engine-api.md): embed an image, edit it by segmentation, apply presets.

Everything here speaks numpy uint8 at the *source* size; the model resolution, geometry and
tensors stay inside. Long calls take ``progress(step, total, preview=None)`` and
``should_cancel()``; a cancelled call raises :class:`Cancelled` and changes nothing.
Without a segmenter in the bundle, :meth:`Editor.embed` still works (labels are None) and
:meth:`Editor.edit` / :meth:`Editor.apply_presets` raise ``EditorError("no_segmenter")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import presets as presets_lib
from .bundle import Bundle, BundleError, is_rgb8, sanitize_name
from .class_colours import PartColours
from .editing import Cancelled, EditOutcome, EditSettings, Progress, ShouldCancel, segmentation_edit
from .regions import rim_distances, touched_classes
from .embedding import default_embed_settings, embed as embed_image
from .geometry import Geometry, blend_back, edit_to_model, fit, painted_rim, to_source
from .cpu import flush_subnormals, retain_freed_memory
from .perceptual import make_perceptual_loss
from .photo_labels import PhotoSnapSettings, snap_to_source

__all__ = ["Editor", "Session", "EditResult", "PresetInfo", "Cancelled", "EditorError"]

MIN_SIDE = 8
# Multiples of a preset's default strength tried as starting points of a segmentation edit.
START_STRENGTHS = (0.5, 1.0, 1.5)


class EditorError(Exception):
    """A request the engine refuses; ``code`` is stable (see docs/engine-api.md), ``message`` is for humans."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass
class PresetInfo:
    name: str
    classes: list[str]
    default_strength: float
    created: str
    source: str

    def to_dict(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "default_strength": self.default_strength,
                "created": self.created, "source": self.source}


@dataclass
class EditResult:
    """An edit (or preset application) blended into the source; see docs/engine-api.md."""

    image: np.ndarray           # uint8 (H, W, 3): source + edit inside the feathered region, identical elsewhere
    box: tuple[int, int, int, int]  # (x, y, w, h) of pixels differing from the source; w = h = 0 if none
    model_image: np.ndarray     # uint8 (R, R, 3)
    labels: np.ndarray          # uint8 (R, R), segmentation of the result
    region: np.ndarray          # bool (H, W), where the edit is blended in (⊆ Q), at source size
    delta: np.ndarray           # float32 (num_ws, w_dim), offset from the session latent
    classes: list[int]          # sorted class ids the edit targets
    metrics: dict               # iou, leak, steps, best_step, seconds


@dataclass
class Session:
    """An embedded image. ``labels`` / ``source_labels`` are None when the bundle has no segmenter."""

    source: np.ndarray          # uint8 (H, W, 3)
    ws: torch.Tensor            # (1, num_ws, w_dim)
    reconstruction: np.ndarray  # uint8 (R, R, 3)
    labels: np.ndarray | None   # uint8 (R, R), the segmenter's reading of the reconstruction (what edits use)
    source_labels: np.ndarray | None  # uint8 (H, W), the same snapped to the source's edges (what the user paints on)
    geometry: Geometry
    psnr: float
    last_result: EditResult | None = None
    last_painted: np.ndarray | None = None  # labels of the last segmentation edit (None after presets)
    last_part_colours: dict | None = None   # the part colours that edit was asked for


def _check_steps(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise EditorError("invalid_argument", f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _model_colour(rgb) -> torch.Tensor:
    """uint8 (r, g, b) → ``[3]`` in the generator's [-1, 1]."""
    return torch.tensor([v / 127.5 - 1 for v in rgb], dtype=torch.float32)


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise EditorError("invalid_image", f"expected a uint8 (H, W, 3) array, got {desc}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise EditorError("invalid_image", f"image sides must be ≥ {MIN_SIDE}, got {image.shape[1]}×{image.shape[0]}")


class Editor:
    """EditGAN on one bundle.

    Args:
        bundle: the model; its networks are moved to ``device`` and frozen (no parameter gradients).
        device: torch device for all computation.
        perceptual: ``"auto"`` (LPIPS when its weights exist, else the documented fallback),
            ``"lpips"`` or ``"fallback"`` (see :func:`editgan.perceptual.make_perceptual_loss`).
        photo_snap: how a session's ``source_labels`` (the segmentation the user paints on) are
            moved onto the photo's edges, on the photo's own grid up to ``max_side``
            (:mod:`editgan.photo_labels`); None keeps the segmenter's reading of the reconstruction,
            nearest-upsampled. Edits always use that reading (``Session.labels``).
    """

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu", perceptual: str = "auto",
                 photo_snap: PhotoSnapSettings | None = PhotoSnapSettings()):
        flush_subnormals()  # edits on CPU would otherwise slow down up to 10× (see the function)
        retain_freed_memory()  # a large edit step would map and fault in its activations anew (2-2.5× slower)
        self.bundle, self.device = bundle, torch.device(device)
        self.generator = bundle.generator.to(self.device).eval().requires_grad_(False)
        self.segmenter = bundle.segmenter
        self.encoder = bundle.encoder
        for module in (self.segmenter, self.encoder):
            if module is not None:
                module.to(self.device).eval().requires_grad_(False)
        self.perceptual, self.perceptual_status = make_perceptual_loss(self.device, perceptual)
        self.embed_settings = default_embed_settings(self.perceptual_status["kind"])
        self.photo_snap = photo_snap
        self.edit_settings = EditSettings().replace(**bundle.edit_defaults)  # checked when the bundle loaded
        self.class_names = [c.name for c in bundle.classes]
        # what a painted part of a class the face does not show yet should look like (the bundle's)
        self.usual_colours = {i: _model_colour(c.appearance) for i, c in enumerate(bundle.classes)
                              if c.appearance is not None}
        if self.segmenter is not None and self.segmenter.num_classes != len(self.class_names):
            raise EditorError("invalid_argument", f"segmenter predicts {self.segmenter.num_classes} classes, "
                                                  f"the bundle lists {len(self.class_names)}")

    # ---- metadata -----------------------------------------------------------------------------
    def info(self) -> dict:
        g = self.generator
        return {"name": self.bundle.name, "domain": self.bundle.domain, "resolution": g.resolution,
                "num_ws": g.num_ws, "w_dim": g.w_dim,
                "classes": [c.to_dict() for c in self.bundle.classes],
                "presets": [p.to_dict() for p in self.list_presets()], "device": str(self.device),
                "perceptual": {"kind": self.perceptual_status["kind"], "detail": self.perceptual_status["detail"]},
                "segmenter": self.segmenter is not None, "encoder": self.encoder is not None}

    # ---- embedding ----------------------------------------------------------------------------
    def embed(self, image: np.ndarray, *, steps: int = 100, progress: Progress | None = None,
              should_cancel: ShouldCancel | None = None) -> Session:
        _check_image(image)
        steps = _check_steps(steps, "steps", minimum=0)  # 0: the encoder's guess alone
        model_image, geo = fit(image, self.generator.resolution)
        e = embed_image(self.generator, model_image, perceptual=self.perceptual, encoder=self.encoder,
                        segmenter=self.segmenter, steps=steps, settings=self.embed_settings,
                        progress=progress, should_cancel=should_cancel)
        if e.labels is None:
            source_labels = None
        elif self.photo_snap is None:
            source_labels = to_source(e.labels, geo)
        else:
            source_labels = snap_to_source(e.probabilities, image, self.photo_snap)
        return Session(image.copy(), e.ws.detach(), e.image, e.labels, source_labels, geo, e.psnr)

    # ---- editing ------------------------------------------------------------------------------
    def _require_segmenter(self) -> None:
        if self.segmenter is None:
            raise EditorError("no_segmenter", f"bundle {self.bundle.name!r} has no segmenter; train one first")

    def model_target(self, session: Session, labels: np.ndarray) -> np.ndarray:
        """Painted ``labels`` (source size) → the edited labels at model resolution, validated.

        Raises ``EditorError``: ``invalid_argument`` (wrong type or size), ``unknown_class``, and
        ``no_change`` when nothing was painted or the change vanishes at the model resolution.
        """
        self._require_segmenter()
        h, w = session.source.shape[:2]
        if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.shape != (h, w):
            desc = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
            raise EditorError("invalid_argument", f"labels must be uint8 ({h}, {w}) like the source, got {desc}")
        if labels.size and int(labels.max()) >= len(self.class_names):
            raise EditorError("unknown_class", f"class id {int(labels.max())} ≥ {len(self.class_names)} classes")
        if np.array_equal(labels, session.source_labels):
            raise EditorError("no_change", "nothing to edit: every painted pixel already has that class in the "
                                           "segmentation; paint with another class's colour (a part the "
                                           "segmentation does not show was not reconstructed, so no edit can "
                                           "remove it)")
        target = edit_to_model(labels, session.source_labels, session.labels, session.geometry)
        if np.array_equal(target, session.labels):
            raise EditorError("no_change", "the painted change is too small to show at the model resolution "
                                           f"({self.generator.resolution}²)")
        return target

    def edit(self, session: Session, labels: np.ndarray, *, steps: int = 30, from_presets: bool = True,
             part_colours: dict | None = None, progress: Progress | None = None,
             should_cancel: ShouldCancel | None = None, **loss_overrides) -> EditResult:
        """Segmentation edit; ``loss_overrides``: any :class:`EditSettings` field (lambda_rgb, lambda_colour, lr, …).

        With ``from_presets`` the optimization starts from the stored preset (at 0.5, 1 or 1.5 × its
        default strength) sharing a class with the edit whose result the edit's own loss likes
        best, or from the session's latent when none beats it; ``metrics["start"]`` names it.
        ``part_colours`` {class name: (r, g, b) uint8} is how the user wants the pixels painted with
        those classes to look (frames of added glasses, a new iris): they follow that colour
        instead of the class's colour in the face (weighed by ``lambda_colour``, which must be > 0).
        """
        self._require_segmenter()
        steps = _check_steps(steps, "steps")
        if not isinstance(from_presets, bool):
            raise EditorError("invalid_argument", f"from_presets must be true or false, got {from_presets!r}")
        target = self.model_target(session, labels)
        try:
            settings = self.edit_settings.replace(**loss_overrides)
        except ValueError as e:
            raise EditorError("invalid_argument", str(e)) from None
        colours = self._part_colours(part_colours, settings)
        classes = touched_classes(session.labels, target)
        candidates = self._preset_starts(classes) if from_presets else []
        outcome = segmentation_edit(self.generator, self.segmenter, self.perceptual, session.ws,
                                    session.reconstruction, session.labels, target, classes=classes,
                                    starts=[s * torch.from_numpy(p.delta)[None] for p, s in candidates],
                                    steps=steps, settings=settings, progress=progress, should_cancel=should_cancel,
                                    part_colours=colours)
        start = outcome.metrics["start"]
        outcome.metrics["start"] = None if start is None else \
            {"preset": candidates[start][0].name, "strength": candidates[start][1]}
        # where the user repainted a class, the generator's drawing replaces the old part, and around a
        # part painted away, its rim too (blend_back)
        rim = painted_rim(session.source_labels, labels, session.geometry, **rim_distances(self.generator.resolution))
        result = self._finish(session, outcome, drawn=labels != session.source_labels,
                              rim=rim & to_source(outcome.region, session.geometry))
        session.last_painted, session.last_part_colours = labels.copy(), dict(part_colours or {})
        return result

    def _part_colours(self, part_colours, settings: EditSettings) -> PartColours:
        """The user's {class name: (r, g, b) uint8}, checked and in the generator's [-1, 1], with
        the bundle's usual class colours."""
        part_colours = part_colours or {}
        if not isinstance(part_colours, dict):
            raise EditorError("invalid_argument", f"part_colours must map class names to (r, g, b), got {part_colours!r}")
        chosen = {}
        for name, rgb in part_colours.items():
            if name not in self.class_names:
                raise EditorError("unknown_class", f"no class named {name!r} in this model")
            if not is_rgb8(rgb):
                raise EditorError("invalid_argument", f"colour of {name!r} must be 3 integers 0..255, got {rgb!r}")
            chosen[self.class_names.index(name)] = _model_colour(rgb)
        if chosen and settings.lambda_colour <= 0:
            raise EditorError("invalid_argument", "part_colours need lambda_colour > 0 (the colour term is off)")
        return PartColours(chosen=chosen, usual=self.usual_colours)

    def apply_presets(self, session: Session, items, *, refine_steps: int = 0, progress: Progress | None = None,
                      should_cancel: ShouldCancel | None = None) -> EditResult:
        """Apply Σ strength·δ of ``items`` = [(name, strength), …], then optionally refine (10/30 steps)."""
        self._require_segmenter()
        refine_steps = _check_steps(refine_steps, "refine_steps", minimum=0)
        if not isinstance(items, (list, tuple)) or not items:
            raise EditorError("invalid_argument", "give at least one (name, strength) pair")
        deltas, class_ids = [], set()
        for item in items:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise EditorError("invalid_argument", f"expected (name, strength), got {item!r}")
            name, strength = item
            if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
                raise EditorError("invalid_argument", f"strength of {name!r} must be a finite number, got {strength!r}")
            preset = self._load(name)
            unknown = [c for c in preset.classes if c not in self.class_names]
            if unknown:
                raise EditorError("unknown_class", f"preset {name!r} edits classes this model lacks: {unknown}")
            class_ids |= {self.class_names.index(c) for c in preset.classes}
            deltas.append((preset.delta, float(strength)))
        outcome = presets_lib.apply_vector(self.generator, self.segmenter, self.perceptual, session.ws,
                                           session.reconstruction, session.labels, presets_lib.compose(deltas),
                                           sorted(class_ids), refine_steps=refine_steps, settings=self.edit_settings,
                                           progress=progress, should_cancel=should_cancel)
        result = self._finish(session, outcome)
        session.last_painted = session.last_part_colours = None
        return result

    def _finish(self, session: Session, outcome: EditOutcome, drawn: np.ndarray | None = None,
                rim: np.ndarray | None = None) -> EditResult:
        """Blend the outcome into the source; ``drawn``: the source pixels the user repainted, ``rim``:
        those around the parts they painted away (see ``blend_back``)."""
        image, region, box = blend_back(session.source, session.geometry, outcome.image, session.reconstruction,
                                        outcome.composite, drawn=drawn, rim=rim)
        result = EditResult(image, box, outcome.image, outcome.labels, region,
                            outcome.delta[0].detach().cpu().numpy().astype(np.float32), outcome.classes,
                            outcome.metrics)
        session.last_result = result
        return result

    # ---- presets ------------------------------------------------------------------------------
    def _preset_starts(self, classes: list[int]) -> list[tuple[presets_lib.Preset, float]]:
        """(preset, strength) starting points for an edit touching ``classes``: every readable preset
        that shares one of them, at each of :data:`START_STRENGTHS` × its default strength."""
        touched = {self.class_names[c] for c in classes}
        out = []
        for info in self.list_presets():
            if touched.isdisjoint(info.classes) or not set(info.classes) <= set(self.class_names):
                continue
            try:
                preset = self._load(info.name)
            except EditorError:
                continue
            out += [(preset, k * preset.default_strength) for k in START_STRENGTHS]
        return out

    def _presets_dir(self):
        if self.bundle.presets_dir is None:
            raise EditorError("invalid_argument", "this bundle was not loaded from a folder; it cannot store presets")
        return self.bundle.presets_dir

    def _load(self, name) -> presets_lib.Preset:
        try:
            return presets_lib.load_preset(self._presets_dir(), name, (self.generator.num_ws, self.generator.w_dim))
        except presets_lib.PresetError as e:
            raise EditorError("unknown_preset", str(e)) from None

    def save_preset(self, name: str, result: EditResult, *, default_strength: float = 1.0) -> PresetInfo:
        """Store ``result.delta`` as preset ``sanitize_name(name)`` (overwrites one of the same name)."""
        stem = self._preset_args(name, default_strength)
        if not isinstance(result, EditResult):
            raise EditorError("invalid_argument", "result must be an EditResult (e.g. session.last_result)")
        if result.delta.shape != (self.generator.num_ws, self.generator.w_dim):
            raise EditorError("invalid_argument", f"delta shape {result.delta.shape} does not fit this model")
        m = result.metrics
        return self._store(stem, result.delta, result.classes, default_strength,
                           f"{m.get('steps')}-step edit (best step {m.get('best_step')})")

    def learn_preset(self, name: str, edits, *, steps: int = 100, default_strength: float = 1.0,
                     progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> PresetInfo:
        """Learn and store one vector that makes the same edit on several faces (see :func:`presets.learn_vector`).

        Args:
            edits: [(session, painted labels at source size[, part colours as in :meth:`edit`]), …],
                one per face; each must change something.
        Returns the stored preset's info; ``metrics`` of the fit are in its ``source`` text.
        """
        self._require_segmenter()
        steps = _check_steps(steps, "steps")
        stem = self._preset_args(name, default_strength)  # before the optimization, not after
        if not isinstance(edits, (list, tuple)) or not edits:
            raise EditorError("invalid_argument", "give at least one (session, labels) pair")
        for item in edits:
            if not isinstance(item, (list, tuple)) or len(item) not in (2, 3) or not isinstance(item[0], Session):
                raise EditorError("invalid_argument", f"expected (session, labels[, part_colours]), got {item!r:.80}")
        targets = np.stack([self.model_target(item[0], item[1]) for item in edits])
        before = np.stack([item[0].labels for item in edits])
        ws = torch.cat([item[0].ws for item in edits]).to(self.device)
        colours = [self._part_colours(item[2] if len(item) == 3 else None, self.edit_settings) for item in edits]
        learned = presets_lib.learn_vector(self.generator, self.segmenter, self.perceptual, ws, before, targets,
                                           steps=steps, settings=self.edit_settings, progress=progress,
                                           should_cancel=should_cancel, part_colours=colours)
        m = learned.metrics
        return self._store(stem, learned.delta[0].cpu().numpy(), learned.classes, default_strength,
                           f"{steps}-step edit shared by {m['faces']} faces (best step {m['best_step']}, "
                           f"target IoU {m['iou']:.2f}, leak {m['leak']:.3f})")

    def _preset_args(self, name, default_strength) -> str:
        """The sanitized stem; refuses a bad name or strength, or a bundle that cannot store presets."""
        try:
            stem = sanitize_name(name)
        except BundleError as e:
            raise EditorError("invalid_argument", str(e)) from None
        if isinstance(default_strength, bool) or not isinstance(default_strength, (int, float)) \
                or not math.isfinite(default_strength):
            raise EditorError("invalid_argument", f"default_strength must be finite, got {default_strength!r}")
        self._presets_dir()
        return stem

    def _store(self, stem: str, delta: np.ndarray, classes: list[int], default_strength: float, source: str) -> PresetInfo:
        preset = presets_lib.Preset(stem, np.asarray(delta, np.float32), [self.class_names[c] for c in classes],
                                    float(default_strength), source=source)
        presets_lib.save_preset(self._presets_dir(), preset)
        return PresetInfo(**preset.metadata())

    def delete_preset(self, name: str) -> None:
        try:
            presets_lib.delete_preset(self._presets_dir(), name)
        except presets_lib.PresetError as e:
            raise EditorError("unknown_preset", str(e)) from None

    def list_presets(self) -> list[PresetInfo]:
        return [PresetInfo(**m) for m in presets_lib.list_presets(self.bundle.presets_dir)]
