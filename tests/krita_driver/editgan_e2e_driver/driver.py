"""The e2e scenario in real Krita: open → analyze → paint a smile → edit → preset → check → shared preset.

The driver plays the user: it triggers the plugin's actions, paints the segmentation layer with
``setPixelData`` (the plugin itself never writes into existing layers), then checks layers and pixels
and writes a JSON report. Every wait is bounded; whatever happens, Krita is asked to quit.
"""

import json
import time
import traceback
from pathlib import Path

from krita import Krita, Selection

from editgan_krita import DOCKER_ID, controller, palette
from editgan_krita.document import document_key
from editgan_krita.layer import SEGMENTATION_NAME, uid
from editgan_krita.qt_compat import QTimer, QtWidgets

POLL_MS = 100


def diff_box(a: bytes, b: bytes, width: int):
    """(count, (x0, y0, x1, y1) inclusive) of pixels that differ between two B,G,R,A buffers."""
    stride, count, box = width * 4, 0, None
    for y in range(len(a) // stride):
        row_a, row_b = a[y * stride:(y + 1) * stride], b[y * stride:(y + 1) * stride]
        if row_a == row_b:
            continue
        xs = [x for x in range(width) if row_a[x * 4:x * 4 + 4] != row_b[x * 4:x * 4 + 4]]
        count += len(xs)
        x0, x1 = xs[0], xs[-1]
        box = (x0, y, x1, y) if box is None else (min(box[0], x0), box[1], max(box[2], x1), y)
    return count, box


def color_box(bgra: bytes, width: int, rgb):
    """Bounding box (x0, y0, x1, y1) of the pixels of one exact colour, or None."""
    key, box = bytes([rgb[2], rgb[1], rgb[0]]), None
    for i in range(0, len(bgra), 4):
        if bgra[i:i + 3] == key and bgra[i + 3] > 0:
            x, y = (i // 4) % width, (i // 4) // width
            box = (x, y, x, y) if box is None else (min(box[0], x), min(box[1], y), max(box[2], x), max(box[3], y))
    return box


def paint_smile(bgra: bytes, width: int, height: int, rgb, lips):
    """A wider mouth whose corners curve up, painted in the lips colour over the predicted lips."""
    out = bytearray(bgra)
    if lips is None:  # no lips predicted (random model): a default mouth place
        lips = (int(width * 0.4), int(height * 0.7), int(width * 0.6), int(height * 0.74))
    cx, cy = (lips[0] + lips[2]) / 2, (lips[1] + lips[3]) / 2
    half = max((lips[2] - lips[0]) / 2 * 1.4, width * 0.12)
    depth, thick = max(3.0, height * 0.04), max(2.0, height * 0.022)
    pixel = bytes([rgb[2], rgb[1], rgb[0], 255])
    painted = 0
    for x in range(int(cx - half), int(cx + half) + 1):
        t = (x - cx) / half
        yc = cy + depth * (0.5 - t * t)  # centre lower, corners higher: a smile
        for y in range(int(yc - thick), int(yc + thick) + 1):
            if 0 <= x < width and 0 <= y < height:
                out[(y * width + x) * 4:(y * width + x) * 4 + 4] = pixel
                painted += 1
    return bytes(out), painted


class Driver:
    def __init__(self, config):
        self.cfg = config
        self.report = {"ok": False, "steps": [], "checks": {}, "errors": [], "no_change": []}
        self.t0 = time.monotonic()
        self.finished, self.messages = [], []
        self._gen = self._timer = None
        self._deadline = self._label = self._predicate = None
        self._done = False

    # -- a tiny coroutine runner: the scenario yields (predicate, timeout, label) -------------
    def start(self):
        QTimer.singleShot(int(self.cfg.get("start_delay_ms", 1500)), self._begin)
        QTimer.singleShot(int(self.cfg.get("timeout_s", 200) * 1000), lambda: self._fail("driver timeout"))

    def _begin(self):
        self._gen = self.scenario()
        self._timer = QTimer()
        self._timer.timeout.connect(self._poll)
        self._advance()

    def _advance(self):
        try:
            self._predicate, timeout, self._label = next(self._gen)
            self._deadline = time.monotonic() + timeout
            self._timer.start(POLL_MS)
        except StopIteration:
            self._timer.stop()
            self._finish()
        except Exception:
            self._fail(traceback.format_exc())

    def _poll(self):
        if self._done:
            return
        try:
            ready = self._predicate()
        except Exception:
            return self._fail(traceback.format_exc())
        if ready:
            self._timer.stop()
            self.step(f"{self._label}: ok")
            self._advance()
        elif time.monotonic() > self._deadline:
            self._fail(f"timed out waiting for {self._label}")

    def step(self, text):
        self.report["steps"].append(f"{time.monotonic() - self.t0:6.1f}s {text}")
        self._write()

    def _write(self):
        Path(self.cfg["result"]).write_text(json.dumps(self.report, indent=2))

    # -- the scenario -----------------------------------------------------------------------
    def job(self, label, timeout=120):
        count = len(self.finished)
        return lambda: len(self.finished) > count, timeout, label

    def scenario(self):
        app = Krita.instance()
        doc = app.openDocument(self.cfg["image"])
        app.activeWindow().addView(doc)
        yield (lambda: app.activeDocument() is not None), 30, "document open"
        doc = app.activeDocument()
        width, height = doc.width(), doc.height()
        source = [n for n in doc.topLevelNodes() if n.type() == "paintlayer"][0]
        doc.setActiveNode(source)
        self._show_docker(app)
        ctl = controller.shared()
        ctl.finished.connect(lambda kind, ok, detail: self.finished.append((kind, ok, detail)))
        ctl.message.connect(lambda text, is_error: self.messages.append(text))
        yield (lambda: ctl.client.connected), 60, "server connected"
        self.report["model"] = (ctl.info.get("model") or {})
        source_before = bytes(source.pixelData(0, 0, width, height))
        checks = self.report["checks"]

        margin = 8  # analyze a selection: results must come back at its offset
        selection = Selection()
        selection.select(margin, margin, width - 2 * margin, height - 2 * margin, 255)
        doc.setSelection(selection)
        app.action("editgan_analyze").trigger()
        yield self.job("analyze")
        self.expect_ok("analyze")
        app.action("deselect").trigger()  # not doc.setSelection(None): that crashes Krita 5.1 with a view
        checks["region"] = list(ctl.sessions.owner(document_key(doc), uid(source)).region)
        seg = next(n for n in doc.topLevelNodes() if n.name() == SEGMENTATION_NAME)
        seg_predicted = bytes(seg.pixelData(0, 0, width, height))
        lips_rgb = palette.by_name(palette.from_hello(ctl.info["classes"]), "lips").rgb
        view = app.activeWindow().activeView()
        self._swatch(app, "lips").click()
        fg = view.foregroundColor().colorForCanvas(view.canvas())
        checks["swatch_sets_foreground"] = (fg.red(), fg.green(), fg.blue()) == tuple(lips_rgb)
        ctl.set_part_colour("lips", (110, 40, 150))  # violet lipstick: what the swatch menu's colour dialog does
        checks["part_colour_on_swatch"] = "border-bottom: 5px solid #6e2896" in self._swatch(app, "lips").styleSheet()
        lips = color_box(seg_predicted, width, lips_rgb)
        seg_painted = self.paint(seg, width, height, lips_rgb, lips)
        doc.setActiveNode(seg)
        app.action("editgan_apply_edit").trigger()
        yield self.job("apply edit", 150)
        self.expect_ok("apply edit", "edit")
        edit = None if "edit" in self.report["no_change"] else dict(ctl.last_result)

        presets = [p["name"] for p in ctl.presets]
        if not presets:
            ctl.save_preset("e2e smile")
            yield self.job("save preset")
            self.expect_ok("save preset")
            yield (lambda: ctl.presets), 20, "preset list refreshed"
            presets = [p["name"] for p in ctl.presets]
        name = "smile" if "smile" in presets else presets[0]
        doc.setActiveNode(source)
        ctl.apply_presets([(name, 1.0)], 0)
        yield self.job(f"apply preset {name}", 150)
        self.expect_ok("apply preset", "preset")
        preset = None if "preset" in self.report["no_change"] else dict(ctl.last_result)

        self.check(doc, source, seg, source_before, seg_painted, edit, preset, f"EditGAN: {name} ×1.0")
        view.canvas().setZoomLevel(2.0)
        Path(self.cfg["ready_file"]).write_text("ready")
        shot = Path(self.cfg["shot_done_file"])
        yield (lambda: shot.exists()), 30, "screenshot"
        ctl.set_part_colour("lips", None)

        names = [n.name() for n in doc.topLevelNodes()]
        if preset is not None:  # one undo removes the newest result layer, and only it
            app.action("edit_undo").trigger()
            yield (lambda: len(doc.topLevelNodes()) < len(names)), 10, "undo"
            expected = [n for n in names if n != f"EditGAN: {name} ×1.0"]
            checks["undo_removes_result"] = [n.name() for n in doc.topLevelNodes()] == expected
        if self.cfg["expect_changes"]:
            yield from self.shared_preset(app, ctl, lips_rgb)

    def paint(self, seg, width, height, lips_rgb, lips):
        """The user paints a smile on the segmentation layer; returns its new pixels."""
        seg_painted, painted = paint_smile(bytes(seg.pixelData(0, 0, width, height)), width, height, lips_rgb, lips)
        seg.setPixelData(seg_painted, 0, 0, width, height)
        self.step(f"painted {painted} px of lips (predicted lips box {lips})")
        return seg_painted

    def shared_preset(self, app, ctl, lips_rgb):
        """The same smile on two more portraits, saved as one preset fitted to both ("from every
        painted layer"); once one portrait is closed, its layer no longer counts."""
        docs = []
        for path in self.cfg["more_images"]:
            doc = app.openDocument(path)
            app.activeWindow().addView(doc)
            key = document_key(doc)
            yield (lambda: app.activeDocument() is not None and document_key(app.activeDocument()) == key), 30, \
                f"open {Path(path).name}"
            source = [n for n in doc.topLevelNodes() if n.type() == "paintlayer"][0]
            doc.setActiveNode(source)
            app.action("editgan_analyze").trigger()
            yield self.job(f"analyze {Path(path).name}")
            self.expect_ok("analyze")
            seg = next(n for n in doc.topLevelNodes() if n.name() == SEGMENTATION_NAME)
            width, height = doc.width(), doc.height()
            lips = color_box(bytes(seg.pixelData(0, 0, width, height)), width, lips_rgb)
            self.paint(seg, width, height, lips_rgb, lips)
            doc.setActiveNode(seg)
            app.action("editgan_apply_edit").trigger()
            yield self.job(f"apply edit {Path(path).name}", 150)
            self.expect_ok("apply edit")
            docs.append(doc)
        ctl.save_preset("e2e shared smile", 1.0, every_painted_layer=True)  # the first portrait's last result
        yield self.job("save shared preset", 150)                           # is a preset: not painted
        self.expect_ok("save shared preset")
        checks = self.report["checks"]
        checks["shared_preset_message"] = self.messages[-1]  # what the docker shows
        yield (lambda: "e2e_shared_smile" in [p["name"] for p in ctl.presets]), 20, "shared preset listed"
        docs[0].setModified(False)
        docs[0].close()
        yield (lambda: len(app.documents()) == 2), 10, "close the second portrait"
        count = len(self.finished)
        ctl.save_preset("e2e shared smile", 1.0, every_painted_layer=True)
        kind, ok, detail = self.finished[-1] if len(self.finished) > count else (None, True, "no answer")
        checks["closed_portrait_refused"] = (kind == "save_preset" and not ok and "at least two" in detail)
        self.step(f"save after closing: {detail}")

    def expect_ok(self, label, key=None):
        """Raise unless the last job succeeded; a "changed no pixels" outcome is acceptable (and
        recorded under ``key``) when the config says the model may not change anything (random weights)."""
        kind, ok, detail = self.finished[-1]
        if key is not None and not ok and detail == controller.NO_CHANGE_MESSAGE and not self.cfg["expect_changes"]:
            self.report["no_change"].append(key)
            return
        if not ok:
            raise RuntimeError(f"{label} failed: {detail}")

    def check(self, doc, source, seg, source_before, seg_painted, edit, preset, preset_name):
        width, height = doc.width(), doc.height()
        names = [n.name() for n in doc.topLevelNodes()]
        checks = self.report["checks"]
        checks["layer_names"] = names
        checks["source_unchanged"] = bytes(source.pixelData(0, 0, width, height)) == source_before
        checks["segmentation_unchanged"] = bytes(seg.pixelData(0, 0, width, height)) == seg_painted
        for key, info, expected in (("edit", edit, "EditGAN: edit"), ("preset", preset, preset_name)):
            node = next((n for n in doc.topLevelNodes() if n.name() == expected), None)
            if node is None or info is None:
                checks[key] = {"exists": False}
                continue
            count, box = diff_box(source_before, bytes(node.pixelData(0, 0, width, height)), width)
            b, r = info["box"], checks["region"]
            inside = box is not None and b[0] <= box[0] and b[1] <= box[1] \
                and box[2] < b[0] + b[2] and box[3] < b[1] + b[3]
            in_region = r[0] <= b[0] and r[1] <= b[1] and b[0] + b[2] <= r[0] + r[2] and b[1] + b[3] <= r[1] + r[3]
            checks[key] = {"exists": True, "name": expected, "changed_pixels": count, "changed_box": box,
                           "server_box": list(b), "identical_outside_box": inside, "box_in_region": in_region,
                           "metrics": info["metrics"],
                           "above_source": names.index(expected) > names.index(source.name())}
        self.step("checks done")

    def _swatch(self, app, name):
        """A class swatch button in the docker, to click as a user would."""
        for dock in app.activeWindow().qwindow().findChildren(QtWidgets.QDockWidget):
            if dock.objectName() == DOCKER_ID:
                for button in dock.findChildren(QtWidgets.QToolButton):
                    if button.text() == name.replace("_", " "):
                        return button
        raise RuntimeError(f"no {name!r} swatch in the EditGAN docker")

    def _show_docker(self, app):
        """Fill the (window-manager-less) screen and make the EditGAN docker visible for the screenshot."""
        window = app.activeWindow().qwindow()
        window.setGeometry(QtWidgets.QApplication.primaryScreen().availableGeometry())
        for dock in window.findChildren(QtWidgets.QDockWidget):
            if dock.objectName() == DOCKER_ID:
                dock.show()
                dock.raise_()

    # -- the end ------------------------------------------------------------------------------
    def _fail(self, error):
        if self._done:
            return
        self.report["errors"].append(error)
        self._finish()

    def _finish(self):
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.stop()
        self.report["ok"] = not self.report["errors"]
        self.report["seconds"] = round(time.monotonic() - self.t0, 1)
        self._write()
        app = Krita.instance()
        for doc in app.documents():
            doc.setModified(False)
        QTimer.singleShot(200, lambda: app.action("file_quit").trigger())
