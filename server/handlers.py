"""Op handlers: validate a request's fields (cheap, in the socket loop), then either answer at once
(``hello``, ``ping``, ``echo``, ``list_presets``, ``close_session``) or return a job function that
the worker runs (``embed``, ``edit``, ``apply_preset``, ``save_preset``, ``delete_preset``).

Heavy per-pixel work (palette snapping, copies, colourizing) happens inside job functions, never in
the socket loop. Engine exceptions are translated to protocol error codes here.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import numpy as np

from editgan.bundle import BundleError, is_rgb8, sanitize_name

from .jobs import JobContext, JobFn
from .protocol import (MAX_ID_CHARS, MAX_NAME_CHARS, MAX_PAYLOAD_BYTES, MAX_TEXT_CHARS, PROTOCOL_VERSION, Limits,
                       ProtocolError, Request, check_number, colorize, plain, segmentation_to_labels, to_rgb,
                       to_rgba)
from .sessions import SessionStore

log = logging.getLogger("editgan.server")

IMMEDIATE_OPS = ("hello", "ping", "echo", "list_presets", "close_session")  # + "cancel" (app.py)
JOB_OPS = ("embed", "edit", "apply_preset", "save_preset", "delete_preset")

# engine EditorError code -> protocol error code
_ENGINE_CODES = {"no_change": "no_change", "unknown_class": "unknown_class", "unknown_preset": "unknown_preset",
                 "invalid_image": "invalid_image", "invalid_argument": "bad_request",
                 "no_segmenter": "no_segmenter"}


@contextmanager
def engine_errors(rid: str):
    """Engine exceptions → ProtocolError (anything else propagates and becomes ``internal``)."""
    from editgan.editor import Cancelled, EditorError
    try:
        yield
    except Cancelled:
        raise ProtocolError("cancelled", "cancelled", rid) from None
    except EditorError as e:
        code = _ENGINE_CODES.get(getattr(e, "code", None), "internal")
        raise ProtocolError(code, getattr(e, "message", None) or str(e), rid) from None


def preset_name(req: Request, value, field: str = "name") -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS:
        raise req.error("bad_request", f"'{field}' must be a string of 1..{MAX_NAME_CHARS} characters")
    try:
        return sanitize_name(value)
    except BundleError as e:
        raise req.error("bad_request", f"'{field}': {e}") from None


class Handlers:
    def __init__(self, editor, sessions: SessionStore, limits: Limits, server_name: str = "editgan-server"):
        self.editor, self.sessions, self.limits = editor, sessions, limits
        info = plain(editor.info())
        self.info, self.server_name = info, server_name
        self.palette = np.array([c["color"] for c in info["classes"]], np.uint8)
        self.class_names = [c["name"] for c in info["classes"]]
        self.presets: list[dict] = list(info.get("presets") or [])  # replaced (never mutated) by the worker

    # -- immediate ops (socket loop) ------------------------------------------------------------
    def hello(self, req: Request):
        req.string("client", required=False, max_len=MAX_TEXT_CHARS)
        req.check_all_frames_used()
        model = {k: self.info.get(k) for k in ("name", "domain", "resolution", "num_ws", "w_dim", "segmenter",
                                                "encoder")}
        return {"protocol": PROTOCOL_VERSION, "server": self.server_name, "model": model,
                "classes": self.info["classes"], "presets": self.presets, "device": self.info.get("device"),
                "perceptual": self.info.get("perceptual"),
                "limits": {**self.limits.to_dict(), "max_sessions": self.sessions.max_sessions}}, {}

    def ping(self, req: Request):
        payload = req.header.get("payload")
        if payload is not None and (not isinstance(payload, (str, bytes)) or len(payload) > MAX_PAYLOAD_BYTES):
            raise req.error("bad_request", f"'payload' must be a string or bytes of at most {MAX_PAYLOAD_BYTES}")
        req.check_all_frames_used()
        return {"time": time.time(), "payload": payload}, {}

    def echo(self, req: Request):
        buf = req.buffer("image", ("rgba8", "rgb8", "label8"), required=False)
        req.check_all_frames_used()
        return {"bytes": 0 if buf is None else buf.data.nbytes}, ({} if buf is None else {"image": buf})

    def list_presets(self, req: Request):
        req.check_all_frames_used()
        self._refresh_presets()  # cheap (small JSON files, written atomically): sees presets added on disk
        return {"presets": self.presets}, {}

    def close_session(self, req: Request):
        sid = req.string("session", max_len=MAX_ID_CHARS)
        req.check_all_frames_used()
        return {"closed": self.sessions.close(sid)}, {}

    # -- job ops (validated here, run by the worker) --------------------------------------------
    def _session(self, req: Request, sid: str):
        session = self.sessions.get(sid)
        if session is None:
            raise req.error("unknown_session", f"unknown or expired session {sid!r}: embed the image again")
        return session

    def embed(self, req: Request) -> JobFn:
        buf = req.buffer("image", ("rgba8", "rgb8"))
        if min(buf.width, buf.height) < self.limits.min_side:
            raise req.error("invalid_image", f"image is {buf.width}x{buf.height}; both sides must be at least "
                            f"{self.limits.min_side}")
        steps = req.integer("steps", 1, self.limits.max_steps, default=100)
        req.check_all_frames_used()

        def run(ctx: JobContext):
            rgb = to_rgb(buf)
            with engine_errors(req.id):
                session = self.editor.embed(rgb, steps=steps, progress=ctx.progress, should_cancel=ctx.should_cancel)
            sid = self.sessions.add(session)
            fields = {"session": sid, "width": buf.width, "height": buf.height, "psnr": session.psnr}
            if session.source_labels is None:  # a bundle without a segmenter: no segmentation to paint on
                return {**fields, "segmentation": None, "labels": None}, {}
            labels = np.ascontiguousarray(session.source_labels, np.uint8)
            return fields, {"segmentation": colorize(labels, self.palette), "labels": labels}
        return run

    def edit(self, req: Request) -> JobFn:
        sid = req.string("session", max_len=MAX_ID_CHARS)
        seg = req.buffer("segmentation", ("rgba8", "rgb8", "label8"))
        steps = req.integer("steps", 1, self.limits.max_steps, default=30)
        from_presets = req.boolean("from_presets", default=True)
        colours = self._part_colours(req)
        req.check_all_frames_used()
        self._session(req, sid)  # fail fast; checked again when the job starts

        def run(ctx: JobContext):
            session = self._session(req, sid)
            if session.source_labels is None:
                raise req.error("no_segmenter", "this model has no segmentation branch: edits are not possible")
            labels = segmentation_to_labels(seg, np.asarray(session.source_labels), self.palette)
            with engine_errors(req.id):
                result = self.editor.edit(session, labels, steps=steps, from_presets=from_presets,
                                          part_colours=colours, progress=ctx.progress,
                                          should_cancel=ctx.should_cancel)
            return self._edit_result(sid, session, result)
        return run

    def _part_colours(self, req: Request) -> dict[str, tuple[int, int, int]]:
        """The optional ``part_colours`` map {class name: [r, g, b]} of an ``edit``, checked."""
        value = req.header.get("part_colours")
        if value is None:
            return {}
        names = self.class_names
        if not isinstance(value, dict) or len(value) > len(names):
            raise req.error("bad_request", f"'part_colours' must map at most {len(names)} class names to [r, g, b]")
        colours = {}
        for name, rgb in value.items():
            if not isinstance(name, str) or name not in names:
                raise req.error("unknown_class", f"'part_colours': no class named {str(name)[:MAX_NAME_CHARS]!r}")
            if not is_rgb8(rgb):
                raise req.error("bad_request", f"'part_colours.{name}' must be [r, g, b], integers 0..255")
            colours[name] = tuple(rgb)
        return colours

    def apply_preset(self, req: Request) -> JobFn:
        sid = req.string("session", max_len=MAX_ID_CHARS)
        self._session(req, sid)  # fail fast; checked again when the job starts
        items = req.header.get("presets")
        if not isinstance(items, list) or not 1 <= len(items) <= self.limits.max_presets:
            raise req.error("bad_request", f"'presets' must be a list of 1..{self.limits.max_presets} "
                            "{name, strength} maps")
        known = {p.get("name"): p for p in self.presets}
        chosen = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise req.error("bad_request", f"'presets[{i}]' must be a map {{name, strength}}")
            name = preset_name(req, item.get("name"), f"presets[{i}].name")
            if name not in known:
                raise req.error("unknown_preset", f"no preset named {name!r}")
            default = known[name].get("default_strength", 1.0)
            strength = item.get("strength")
            s = check_number(default if strength is None else strength, f"presets[{i}].strength",
                             -self.limits.max_strength, self.limits.max_strength, req.id)
            chosen.append((name, s))
        refine = req.integer("refine_steps", 0, self.limits.max_refine_steps, default=0)
        req.check_all_frames_used()

        def run(ctx: JobContext):
            session = self._session(req, sid)
            with engine_errors(req.id):
                # only the refinement steps report progress: name that stage
                result = self.editor.apply_presets(
                    session, chosen, refine_steps=refine, should_cancel=ctx.should_cancel,
                    progress=lambda step, total, preview=None: ctx.progress(step, total, preview, stage="refine"))
            return self._edit_result(sid, session, result)
        return run

    def save_preset(self, req: Request) -> JobFn:
        sid = req.string("session", max_len=MAX_ID_CHARS)
        name = preset_name(req, req.header.get("name"))
        strength = req.number("default_strength", -self.limits.max_strength, self.limits.max_strength, default=1.0)
        more = req.header.get("more_sessions") or []
        most = self.limits.max_preset_faces - 1
        if not isinstance(more, list) or len(more) > most \
                or not all(isinstance(s, str) and 0 < len(s) <= MAX_ID_CHARS for s in more):
            raise req.error("bad_request", f"'more_sessions' must be a list of at most {most} session ids")
        steps = req.integer("steps", 1, self.limits.max_steps, default=100)
        req.check_all_frames_used()
        ids = list(dict.fromkeys([sid, *more]))
        for i in ids:
            self._session(req, i)

        def run(ctx: JobContext):
            session = self._session(req, sid)
            if len(ids) == 1:
                result = getattr(session, "last_result", None)
                if result is None:
                    raise req.error("no_edit", "this session has no edit to save: run edit or apply_preset first")
                with engine_errors(req.id):
                    info = self.editor.save_preset(name, result, default_strength=strength)
            else:
                info = self._learn_preset(req, ctx, name, ids, steps, strength)
            self._refresh_presets()
            return {"preset": info, "faces": len(ids)}, {}
        return run

    def _learn_preset(self, req: Request, ctx: JobContext, name: str, ids: list, steps: int, strength: float):
        """One vector fitted to the last painted edit of every session in ``ids``."""
        edits = []
        for i in ids:
            session = self._session(req, i)
            if getattr(session, "last_painted", None) is None:
                raise req.error("no_edit", f"session {i!r} has no painted edit: a preset fitted to several "
                                           "faces learns from segmentation edits, not preset results")
            edits.append((session, session.last_painted, getattr(session, "last_part_colours", None)))
        with engine_errors(req.id):
            return self.editor.learn_preset(
                name, edits, steps=steps, default_strength=strength, should_cancel=ctx.should_cancel,
                progress=lambda step, total, preview=None: ctx.progress(step, total, preview, stage="learn"))

    def delete_preset(self, req: Request) -> JobFn:
        name = preset_name(req, req.header.get("name"))
        req.check_all_frames_used()

        def run(ctx: JobContext):
            with engine_errors(req.id):
                self.editor.delete_preset(name)
            self._refresh_presets()
            return {"deleted": name}, {}
        return run

    # -- helpers ----------------------------------------------------------------------------------
    def _refresh_presets(self) -> None:
        try:
            self.presets = [plain(p) for p in self.editor.list_presets()]
        except Exception:  # keep serving the last good list
            log.warning("could not list presets", exc_info=True)

    def _edit_result(self, sid: str, session, result):
        if getattr(session, "last_result", None) is not result:
            session.last_result = result
        x, y, w, h = (int(v) for v in result.box)
        image = np.asarray(result.image)
        fields = {"session": sid, "box": [x, y, w, h], "width": int(image.shape[1]), "height": int(image.shape[0]),
                  "classes": [self.class_names[int(c)] for c in result.classes], "metrics": result.metrics}
        crop = image[y:y + h, x:x + w] if w > 0 and h > 0 else np.zeros((0, 0, 3), np.uint8)
        return fields, {"image": to_rgba(crop)}  # an empty box gives a 0x0 buffer (empty frame)
