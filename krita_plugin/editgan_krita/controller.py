"""What the buttons and actions do: read layers, run server jobs, add result layers.

One controller serves every window's docker and the shortcut actions. It runs one job at a time
(the server queues across clients; one job per user keeps progress and Cancel unambiguous) and
reports through Qt signals only, so the docker stays a thin view and tests can drive it directly.
"""

import logging
import zlib

from . import document, settings
from .client import Buffer, Client
from .document import DocumentError
from .image import Rect
from .layer import (EDIT_NAME, SEGMENTATION_NAME, add_result_layer, add_segmentation_layer, find_node,
                    format_strength, preset_layer_name, read_rgba, result_pixels, uid)
from .qt_compat import QObject, pyqtSignal
from .sessions import Entry, SessionRunner, SessionStore

log = logging.getLogger(__name__)

NO_CHANGE_MESSAGE = "The edit changed no pixels: paint a bigger change, use more steps or raise the strength."
STAGE_LABELS = {"embed": "Analyzing", "edit": "Editing", "apply_preset": "Applying presets",
                "refine": "Refining", "save_preset": "Saving preset", "learn": "Learning preset"}


def describe_metrics(metrics: dict) -> str:
    """" (IoU 0.83, leak 0.4 %, 12.3 s, from smile ×1.0)" from a result's metrics, or "" when there are none."""
    formats = (("iou", "IoU {:.2f}", 1), ("leak", "leak {:.1f} %", 100), ("seconds", "{:.1f} s", 1))
    facts = [fmt.format(scale * metrics[key]) for key, fmt, scale in formats
             if isinstance(metrics.get(key), (int, float))]
    start = metrics.get("start")
    if isinstance(start, dict) and isinstance(start.get("preset"), str) and isinstance(start.get("strength"), (int, float)):
        facts.append(f"from {start['preset']} ×{format_strength(start['strength'])}")
    return f" ({', '.join(facts)})" if facts else ""


class Job:
    """The one request chain in flight, kept for Cancel and for re-finding its layers afterwards."""

    def __init__(self, kind, doc=None, entry=None, layer_name=None):
        self.kind, self.doc, self.entry, self.layer_name = kind, doc, entry, layer_name
        self.runner = self.request_id = None


class Controller(QObject):
    state_changed = pyqtSignal(str, str)     # connection state, detail
    info_changed = pyqtSignal(object)        # hello result or None
    presets_changed = pyqtSignal(object)     # [{name, classes, default_strength}]
    busy_changed = pyqtSignal(bool)
    progress = pyqtSignal(str, int, int)     # text, value, maximum (0: indeterminate)
    preview = pyqtSignal(object)             # rgb8 Buffer of the job's current model image, or None
    message = pyqtSignal(str, bool)          # text, is_error
    finished = pyqtSignal(str, bool, str)    # job kind, ok, new layer uid or error message
    part_colours_changed = pyqtSignal(object)  # {class name: (r, g, b)}

    def __init__(self, client: Client = None, parent=None):
        super().__init__(parent)
        self.client = client or Client(parent=self)
        self.sessions = SessionStore()
        self.job = None
        self.last_result = None  # {layer, name, metrics, box (document pixels)} of the last new layer
        self.part_colours = {}   # class name -> (r, g, b): how the parts painted with that class should look
        self.state = ("disconnected", "")
        self.client.state_changed.connect(self._on_state)
        self.client.hello.connect(self._on_hello)

    # -- connection -------------------------------------------------------------------------
    @property
    def info(self):
        return self.client.info

    @property
    def can_segment(self) -> bool:
        """Whether the server's model has a segmentation branch (without one only presets work)."""
        return bool(((self.info or {}).get("model") or {}).get("segmenter", True))

    @property
    def presets(self) -> list:
        return list((self.info or {}).get("presets") or [])

    def connect_to(self, address: str = None, keys: str = None) -> None:
        """Connect to ``address`` (default: the saved one) and remember it; ``keys``: CURVE folder."""
        for key, value in (("server", address), ("keys", keys)):
            if value is not None:
                settings.write(key, value)
        self.client.connect_to(settings.read("server"), settings.read("keys"))

    def _on_state(self, state, detail):
        self.state = (state, detail)
        self.state_changed.emit(state, detail)

    def _on_hello(self, info):
        names = {c.get("name") for c in (info or {}).get("classes") or () if isinstance(c, dict)}
        if any(name not in names for name in self.part_colours):  # another model: its classes differ
            self.part_colours = {k: v for k, v in self.part_colours.items() if k in names}
            self.part_colours_changed.emit(dict(self.part_colours))
        self.info_changed.emit(info)
        self.presets_changed.emit(self.presets)

    def set_part_colour(self, name: str, rgb=None) -> None:
        """How parts painted with class ``name`` should look in the next edits: (r, g, b), or None
        for the model's own choice (the colour the class has nearby in the picture)."""
        if rgb is None:
            self.part_colours.pop(name, None)
        else:
            rgb = tuple(int(v) for v in rgb)
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise ValueError(f"a colour is 3 values 0..255, got {rgb!r}")
            self.part_colours[name] = rgb
        self.part_colours_changed.emit(dict(self.part_colours))

    # -- user commands ----------------------------------------------------------------------
    def analyze(self, steps: int = None) -> None:
        """Embed the active layer (or the selection) and add the "EditGAN segmentation" layer."""
        if not self._can_start():
            return
        if not self.can_segment:
            return self._fail("analyze", "The server's model has no segmentation branch: only presets work "
                                         "(train one with `editgan train segmenter`).")
        if steps is not None:
            settings.write("embed_steps", steps)
        try:
            doc, source = self._active()
            key, source_id = document.document_key(doc), uid(source)
            owner = self.sessions.owner(key, source_id)
            if source.name() == SEGMENTATION_NAME or (owner is not None and source_id == owner.segmentation):
                raise DocumentError("That is the segmentation layer: select the portrait layer to analyze.")
            rect = self._checked_region(doc)
            pixels = read_rgba(source, rect)
        except DocumentError as e:
            return self._fail("analyze", str(e))
        earlier = owner.layer_ids() - {source_id} if owner is not None and owner.source == source_id else ()
        entry = Entry(key, source_id, rect, zlib.crc32(pixels), outputs=sorted(earlier))
        job = Job("analyze", doc, entry)
        job.runner = SessionRunner(self._send, entry, lambda: self._embed_fields(pixels, rect),
                                   lambda op, event, msg: self._on_event(job, op, event, msg))
        self._start(job, None)

    def apply_edit(self, steps: int = None) -> None:
        """Send the painted segmentation; the result becomes "EditGAN: edit"."""
        if not self._can_start():
            return
        steps = settings.read("edit_steps") if steps is None else steps
        try:
            doc, entry, source = self._entry_for_active(create=False)
            seg_node = find_node(doc.rootNode(), entry.segmentation or "")
            if seg_node is None:
                raise DocumentError("The EditGAN segmentation layer is gone: analyze the layer again.")
            seg = read_rgba(seg_node, entry.region)
        except DocumentError as e:
            return self._fail("edit", str(e))
        job = Job("edit", doc, entry, EDIT_NAME)
        job.runner = self._runner(job, source)
        fields = {"segmentation": Buffer(seg, entry.region.width, entry.region.height), "steps": int(steps),
                  "preview": True}
        if self.part_colours:
            fields["part_colours"] = {name: list(rgb) for name, rgb in self.part_colours.items()}
        self._start(job, "edit", fields)

    def apply_presets(self, choices, refine_steps: int = None) -> None:
        """Apply one or several presets [(name, strength)] → "EditGAN: smile ×1.0 + glasses ×0.5"."""
        if not self._can_start():
            return
        choices = [(str(n), float(s)) for n, s in choices]
        refine_steps = settings.read("refine_steps") if refine_steps is None else refine_steps
        if not choices:
            return self._fail("apply_preset", "Tick at least one preset.")
        try:
            doc, entry, source = self._entry_for_active(create=True)
        except DocumentError as e:
            return self._fail("apply_preset", str(e))
        job = Job("apply_preset", doc, entry, preset_layer_name(choices))
        job.runner = self._runner(job, source)
        self._start(job, "apply_preset", {"presets": [{"name": n, "strength": s} for n, s in choices],
                                          "refine_steps": int(refine_steps), "preview": True})

    def save_preset(self, name: str, default_strength: float = 1.0, every_painted_layer: bool = False) -> None:
        """Store the last edit of the active layer's session as a named preset on the server.

        ``every_painted_layer``: fit one vector to the painted edits of every analyzed layer in the
        open documents (the same edit made on several portraits), which carries over to new
        portraits far better.
        """
        if not self._can_start():
            return
        name = name.strip()
        try:
            if not name:
                raise DocumentError("Give the preset a name.")
            doc, node = self._active()
            entry = self.sessions.owner(document.document_key(doc), uid(node))
            if entry is None or not (entry.has_edit and entry.session):
                raise DocumentError("Apply an edit first: a preset is made from the last edit.")
            open_docs = document.open_document_keys()
            others = [e.session for e in self.sessions.entries()
                      if e is not entry and e.painted and e.session and e.document in open_docs]
            if every_painted_layer and not (entry.painted and others):
                raise DocumentError("Paint and apply the same edit on at least two analyzed layers first "
                                    "(the last result of each must be an edit, not a preset).")
        except DocumentError as e:
            return self._fail("save_preset", str(e))
        job = Job("save_preset", entry=entry)
        fields = {"session": entry.session, "name": name, "default_strength": float(default_strength)}
        if every_painted_layer:
            fields["more_sessions"] = others
        self._start_request(job, "save_preset", fields)

    def cancel(self) -> None:
        job = self.job
        if job is not None:
            request_id = job.runner.current if job.runner else job.request_id
            if request_id:
                self.client.cancel(request_id)
            self.progress.emit("Cancelling…", 0, 0)

    # -- jobs -------------------------------------------------------------------------------
    def _can_start(self) -> bool:
        if self.job is not None:
            self.message.emit("Busy: wait for the current job or cancel it.", True)
            return False
        if not self.client.connected:
            self._fail("connect", "Not connected to the EditGAN server: start `editgan-server` "
                                  f"or check the address ({settings.read('server')}).")
            return False
        return True

    def _active(self):
        doc = document.active_document()
        document.check_rgba8(doc)
        return doc, document.active_paint_layer(doc)

    def _checked_region(self, doc) -> Rect:
        rect = document.region(doc)
        limits = (self.info or {}).get("limits") or {}
        side, size, least = limits.get("max_side"), limits.get("max_message_bytes"), limits.get("min_side")
        if least and min(rect.width, rect.height) < least:
            raise DocumentError(f"The region is {rect.width}×{rect.height} px; the server needs at least "
                                f"{least} px per side.")
        if side and max(rect.width, rect.height) > side:
            raise DocumentError(f"The region is {rect.width}×{rect.height} px; the server takes at most "
                                f"{side} px per side. Select a smaller area around the face.")
        if size and rect.width * rect.height * 4 + 4096 > size:
            raise DocumentError(f"The region is too large for one message ({size} bytes): select a smaller area.")
        return rect

    def _entry_for_active(self, create: bool):
        """(doc, entry, source node) for the active layer: its own entry, the entry of the source
        whose segmentation/result layer it is, or (``create``) a new entry to embed on the way."""
        doc, node = self._active()
        key, node_id = document.document_key(doc), uid(node)
        entry = self.sessions.owner(key, node_id)
        if entry is None:
            if not create:
                raise DocumentError("Analyze this layer first (EditGAN docker ▸ Analyze layer).")
            entry = Entry(key, node_id, self._checked_region(doc), source_crc=None)
        source = find_node(doc.rootNode(), entry.source)
        if source is None:
            raise DocumentError("The analyzed layer was deleted: select a portrait layer and analyze it.")
        pixels = read_rgba(source, entry.region)
        crc = zlib.crc32(pixels)
        if crc != entry.source_crc:  # the portrait was painted on since: embed it again
            entry.source_crc, entry.session = crc, None
        return doc, entry, source

    def _runner(self, job, source):
        rect = job.entry.region
        return SessionRunner(self._send, job.entry, lambda: self._embed_fields(read_rgba(source, rect), rect),
                             lambda op, event, msg: self._on_event(job, op, event, msg))

    @staticmethod
    def _embed_fields(pixels: bytes, rect: Rect) -> dict:
        return {"image": Buffer(pixels, rect.width, rect.height), "steps": settings.read("embed_steps"),
                "preview": True}

    def _send(self, op, fields, callback):
        return self.client.request(op, fields, callback)

    def _start(self, job, op, fields=None):
        self._set_job(job)
        job.runner.run(op, fields)

    def _start_request(self, job, op, fields):
        self._set_job(job)
        try:
            job.request_id = self.client.request(op, fields, lambda event, msg: self._on_event(job, op, event, msg))
        except Exception as e:
            self._on_event(job, op, "error", {"code": "client", "message": str(e)})

    def _set_job(self, job):
        self.job = job
        self.busy_changed.emit(True)
        self.progress.emit(f"{STAGE_LABELS.get(job.kind, job.kind)}…", 0, 0)

    def _on_event(self, job, op, event, msg):
        if job is not self.job:
            return
        stage = STAGE_LABELS.get(msg.get("stage") or op, op)
        if event == "queued":
            self.progress.emit(f"Queued ({int(msg.get('position', 0))} ahead)", 0, 0)
        elif event == "progress":
            step, total = int(msg.get("step", 0)), int(msg.get("total", 0))
            self.progress.emit(f"{stage} {step}/{total}", step, total)
            preview = msg.get("preview")
            if isinstance(preview, Buffer) and preview.format == "rgb8":
                self.preview.emit(preview)
        elif event == "error":
            self._finish(job, False, msg.get("message") or msg.get("code", "error"), msg.get("code"))
        elif event == "result":
            try:
                self._finish(job, *self._on_result(job, op, msg))
            except (DocumentError, ValueError, KeyError, TypeError) as e:
                log.exception("could not use the %s result", op)
                self._finish(job, False, f"Could not use the server's answer: {e}", "client")

    def _on_result(self, job, op, msg):
        """Use a ``result``: (ok, message, new layer uid or error code)."""
        if op == "save_preset":
            self._refresh_presets()
            faces = msg.get("faces")
            fitted = f" (fitted to {faces} portraits)" if isinstance(faces, int) and faces > 1 else ""
            return True, f"Saved preset “{(msg.get('preset') or {}).get('name', '?')}”{fitted}.", ""
        root = job.doc.rootNode()
        source = find_node(root, job.entry.source) if root is not None else None
        if source is None:
            raise DocumentError("The layer was deleted or its document closed before the result arrived.")
        if op == "embed":
            return self._segmentation_arrived(job, source, msg)
        return self._edit_arrived(job, source, msg)

    def _segmentation_arrived(self, job, source, msg):
        entry, seg = job.entry, msg.get("segmentation")
        if not isinstance(seg, Buffer):
            return False, "The server returned no segmentation (its model has no segmentation branch).", "no_segmenter"
        if (seg.format, seg.width, seg.height) != ("rgba8", entry.region.width, entry.region.height):
            raise ValueError(f"segmentation is {seg.width}×{seg.height} {seg.format}")
        node = add_segmentation_layer(job.doc, source, seg.data, entry.region, entry.layer_ids() - {entry.source})
        entry.segmentation = uid(node)
        entry.outputs.append(entry.segmentation)
        self.sessions.put(entry)
        job.doc.setActiveNode(node)
        text = "Analyzed: paint on “EditGAN segmentation” with the class colours, then Apply edit."
        if isinstance(msg.get("psnr"), (int, float)):
            text += f" (reconstruction {msg['psnr']:.1f} dB)"
        return True, text, entry.segmentation

    def _edit_arrived(self, job, source, msg):
        entry, region, image = job.entry, job.entry.region, msg["image"]
        box = [int(v) for v in msg["box"]]
        if len(box) != 4 or box[0] < 0 or box[1] < 0 or box[0] + box[2] > region.width \
                or box[1] + box[3] > region.height or (image.width, image.height) != (box[2], box[3]) \
                or image.format != "rgba8":
            raise ValueError(f"result box {box} / image {image.width}×{image.height} does not fit the "
                             f"{region.width}×{region.height} region")
        entry.has_edit, entry.painted = True, job.kind == "edit"
        self.sessions.put(entry)
        if box[2] == 0 or box[3] == 0:
            return False, NO_CHANGE_MESSAGE, "no_change"
        pixels = result_pixels(job.doc, source, region, box, image.data)
        node = add_result_layer(job.doc, source, job.layer_name, pixels, entry.layer_ids() - {entry.source})
        entry.outputs.append(uid(node))
        job.doc.setActiveNode(node)
        metrics = msg.get("metrics") or {}
        self.last_result = {"layer": uid(node), "name": job.layer_name, "metrics": metrics,
                            "box": Rect(region.x + box[0], region.y + box[1], box[2], box[3])}
        return True, f"Added “{job.layer_name}”{describe_metrics(metrics)}.", uid(node)

    def _finish(self, job, ok, text, detail_or_code=""):
        self.job = None
        self.busy_changed.emit(False)
        self.preview.emit(None)
        cancelled = not ok and detail_or_code == "cancelled"
        self.progress.emit("Cancelled" if cancelled else ("Done" if ok else "Failed"), int(ok), 1)
        if cancelled:
            text = "Cancelled."
        self.message.emit(text, not ok and not cancelled)
        document.show_floating_message(f"EditGAN: {text}", error=not ok and not cancelled)
        self.finished.emit(job.kind, ok, detail_or_code if ok else text)

    def _fail(self, kind, text):
        self.message.emit(text, True)
        document.show_floating_message(f"EditGAN: {text}", error=True)
        self.finished.emit(kind, False, text)

    def _refresh_presets(self):
        def on_list(event, msg):
            if event == "result" and self.info is not None:
                self.info["presets"] = list(msg.get("presets") or [])
                self.presets_changed.emit(self.presets)
        try:
            self.client.request("list_presets", {}, on_list)
        except Exception as e:
            log.warning("could not refresh presets: %s", e)


_shared = None


def shared() -> Controller:
    """The one controller of this Krita process, connected to the saved server address."""
    global _shared
    if _shared is None:
        _shared = Controller()
        _shared.connect_to()
    return _shared
