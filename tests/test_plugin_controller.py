"""The plugin's commands end to end against the fake ``krita`` module and a scripted protocol server.

The server (``FakeEditGAN``) is deterministic: its segmentation is a lips box on background, an
edit inverts the source inside the bounding box of the painted change, a preset inverts the centre.
That makes layer contents, offsets and names checkable to the byte.
"""

import itertools

import pytest

from tests import fake_krita
from tests.test_plugin_transport import HELLO, ProtocolServer, wait_until

from editgan_krita import controller as controller_module  # noqa: E402
from editgan_krita.client import Client  # noqa: E402
from editgan_krita.controller import Controller, describe_metrics  # noqa: E402
from editgan_krita.image import Rect, crop, rgba_to_bgra  # noqa: E402
from editgan_krita.layer import format_strength, preset_layer_name  # noqa: E402
from editgan_krita.transport import Transport  # noqa: E402

BG, LIPS = bytes([0, 0, 0, 255]), bytes([200, 40, 60, 255])


def invert(rgba: bytes) -> bytes:
    out = bytearray(255 - b for b in rgba)
    out[3::4] = b"\xff" * (len(rgba) // 4)
    return bytes(out)


def bbox(mask, w):
    idx = [i for i, m in enumerate(mask) if m]
    xs, ys = [i % w for i in idx], [i // w for i in idx]
    return [min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1]


class FakeEditGAN:
    """Scripted answers for embed/edit/apply_preset/save_preset/list_presets/cancel."""

    def __init__(self):
        self.sessions, self.ids, self.presets = {}, itertools.count(1), list(HELLO["presets"])
        self.hold = False  # when True, jobs only get "queued" (to test Cancel)

    def segmentation(self, w, h):
        rows = []
        for y in range(h):
            rows.append(b"".join(LIPS if (h // 2 <= y < h // 2 + 2 and w // 4 <= x < 3 * w // 4) else BG
                                 for x in range(w)))
        return b"".join(rows)

    def __call__(self, header, frames):
        op = header["op"]
        if op == "cancel":
            return [({"event": "error", "id": header["target"], "code": "cancelled", "message": "cancelled"},),
                    ({"event": "result", "cancelled": True},)]
        if op == "list_presets":
            return [({"event": "result", "presets": self.presets},)]
        if self.hold:
            return [({"event": "queued", "position": 1},)]
        if op == "embed":
            d = header["image"]
            session = f"s{next(self.ids)}"
            seg = self.segmentation(d["width"], d["height"])
            self.sessions[session] = {"image": frames[0], "w": d["width"], "h": d["height"], "seg": seg}
            preview = {"frame": 1, "width": 4, "height": 4, "channels": 3, "format": "rgb8"}
            return [({"event": "progress", "step": 1, "total": 2, "stage": "embed", "preview": preview},
                     [bytes(range(48))]),
                    ({"event": "result", "session": session, "width": d["width"], "height": d["height"],
                      "psnr": 30.0, "segmentation": dict(d, frame=1, format="rgba8", channels=4)}, [seg])]
        s = self.sessions.get(header.get("session"))
        if s is None:
            return [({"event": "error", "code": "unknown_session", "message": "unknown session"},)]
        if op == "save_preset":
            missing = [m for m in header.get("more_sessions", []) if m not in self.sessions]
            if missing:
                return [({"event": "error", "code": "unknown_session", "message": f"unknown session {missing[0]}"},)]
            preset = {"name": header["name"], "classes": ["lips"], "default_strength": 1.0}
            self.presets.append(preset)
            return [({"event": "result", "preset": preset, "faces": 1 + len(header.get("more_sessions", []))},)]
        w, h = s["w"], s["h"]
        if op == "edit":
            seg = frames[0]
            changed = [seg[i * 4 + 3] >= 128 and seg[i * 4:i * 4 + 3] != s["seg"][i * 4:i * 4 + 3] for i in range(w * h)]
            if not any(changed):
                return [({"event": "error", "code": "no_change", "message": "nothing was painted"},)]
            box = bbox(changed, w)
        elif all(p["strength"] == 0 for p in header["presets"]):
            box = [0, 0, 0, 0]
        else:
            box = [w // 4, h // 4, w // 2, h // 2]
        image = invert(crop(s["image"], w, h, Rect(*box))) if box[2] else b""
        return [({"event": "progress", "step": 1, "total": 1, "stage": op},),
                ({"event": "result", "box": box, "width": w, "height": h, "classes": ["lips"],
                  "metrics": {"iou": 0.9, "leak": 0.0, "steps": 1, "seconds": 0.1},
                  "image": {"frame": 1, "width": box[2], "height": box[3], "channels": 4, "format": "rgba8"}},
                 [image])]


def portrait(w, h):
    return bytes(((i * 37) % 251) if i % 4 != 3 else 255 for i in range(w * h * 4))


@pytest.fixture
def env():
    """(krita instance, document with a "portrait" layer, controller connected to a FakeEditGAN)."""
    app = fake_krita.Krita.reset()
    doc = fake_krita.Document(32, 24)
    source = doc.add_layer("portrait", portrait(32, 24))
    app.setActiveDocument(doc)
    fake = FakeEditGAN()
    server = ProtocolServer(fake)
    ctl = Controller(Client(Transport(interval=0.1, timeout=3.0)))
    ctl.connect_to(server.address)
    assert wait_until(lambda: ctl.client.connected)
    done, messages = [], []
    ctl.finished.connect(lambda kind, ok, detail: done.append((kind, ok, detail)))
    ctl.message.connect(lambda text, error: messages.append((text, error)))
    yield type("Env", (), dict(app=app, doc=doc, source=source, ctl=ctl, server=server, fake=fake,
                               done=done, messages=messages))
    ctl.client.transport.close()
    server.stop()


def run(env, command, *args):
    count = len(env.done)
    getattr(env.ctl, command)(*args)
    assert wait_until(lambda: len(env.done) > count, timeout=5), f"{command} did not finish"
    return env.done[-1]


def ops(env):
    return [h["op"] for h, _ in env.server.received if h["op"] != "list_presets"]


def last_request(env):
    """The last request header other than the preset-list refresh, which a save sends after it
    finished and may still be on its way (reading ``received[-2]`` raced with it)."""
    return [h for h, _ in env.server.received if h["op"] != "list_presets"][-1]


def layer(env, name):
    return next(n for n in env.doc.rootNode().childNodes() if n.name() == name)


def full(node, doc):
    return node.pixelData(0, 0, doc.width(), doc.height())


def paint_lips_lower(env, seg, rect):
    """The test plays the user: paint a lips row one pixel below the predicted lips."""
    y = rect.y + rect.height // 2 + 2
    seg.setPixelData(rgba_to_bgra(LIPS) * (rect.width // 2), rect.x + rect.width // 4, y, rect.width // 2, 1)


def test_analyze_adds_the_segmentation_layer_above_the_source(env):
    kind, ok, detail = run(env, "analyze")
    assert (kind, ok) == ("analyze", True)
    assert env.doc.layer_names() == ["portrait", "EditGAN segmentation"]
    header, frames = env.server.received[0]
    assert header["op"] == "embed" and (header["image"]["width"], header["image"]["height"]) == (32, 24)
    assert header["steps"] == 100                                         # settings default
    assert frames[0] == rgba_to_bgra(full(env.source, env.doc))          # RGBA on the wire
    seg = layer(env, "EditGAN segmentation")
    assert full(seg, env.doc) == rgba_to_bgra(env.fake.segmentation(32, 24))
    assert seg.opacity() < 255 and env.doc.activeNode() is seg
    assert env.source.writes_in_stack == 0 and full(env.source, env.doc) == portrait(32, 24)


def test_selection_is_the_region_and_results_go_back_at_its_offset(env):
    rect = Rect(6, 4, 16, 12)
    env.doc.setSelection(fake_krita.Selection(*rect))
    assert run(env, "analyze")[1]
    header, frames = env.server.received[0]
    assert (header["image"]["width"], header["image"]["height"]) == (16, 12)
    assert frames[0] == rgba_to_bgra(env.source.pixelData(*rect))
    seg = layer(env, "EditGAN segmentation")
    assert seg.pixelData(*rect) == rgba_to_bgra(env.fake.segmentation(16, 12))
    assert seg.pixelData(0, 0, 32, 4) == bytes(32 * 4 * 4)               # nothing outside the region

    paint_lips_lower(env, seg, rect)
    seg_before = full(seg, env.doc)
    kind, ok, _ = run(env, "apply_edit", 7)
    assert (kind, ok) == ("edit", True), env.messages
    header, frames = env.server.received[-1]
    assert header["op"] == "edit" and header["steps"] == 7 and header["session"] == "s1"
    assert frames[0] == rgba_to_bgra(seg.pixelData(*rect))
    result = layer(env, "EditGAN: edit")
    box = Rect(rect.x + 4, rect.y + 8, 8, 1)                              # the painted row, in the document
    src, out = full(env.source, env.doc), full(result, env.doc)
    assert result.pixelData(*box) == rgba_to_bgra(invert(rgba_to_bgra(env.source.pixelData(*box))))
    outside = [i for i in range(32 * 24) if not (box.x <= i % 32 < box.x + box.width and i // 32 == box.y)]
    assert all(out[i * 4:i * 4 + 4] == src[i * 4:i * 4 + 4] for i in outside)
    assert full(seg, env.doc) == seg_before and full(env.source, env.doc) == portrait(32, 24)
    assert env.source.writes_in_stack == 0 and seg.writes_in_stack == 1  # only the test's own painting


def test_layers_stack_newest_on_top_and_each_undoes_in_one_step(env):
    run(env, "analyze")
    seg = layer(env, "EditGAN segmentation")
    paint_lips_lower(env, seg, Rect(0, 0, 32, 24))
    env.doc.undo_stack.clear()
    env.doc.setActiveNode(seg)                                            # apply works from the seg layer
    assert run(env, "apply_edit", 3)[1]
    env.doc.setActiveNode(env.source)                                     # …and from the source
    assert run(env, "apply_presets", [("smile", 1.0), ("glasses", 0.5)], 10)[1]
    assert env.doc.layer_names() == ["portrait", "EditGAN segmentation", "EditGAN: edit",
                                     "EditGAN: smile ×1.0 + glasses ×0.5"]
    header = env.server.received[-1][0]
    assert header["presets"] == [{"name": "smile", "strength": 1.0}, {"name": "glasses", "strength": 0.5}]
    assert header["refine_steps"] == 10
    assert len(env.doc.undo_stack) == 2
    env.doc.undo()
    assert env.doc.layer_names()[-1] == "EditGAN: edit"
    env.doc.setActiveNode(env.source)
    assert run(env, "analyze")[1]                                         # re-analyze: new seg on top
    assert env.doc.layer_names()[-1] == "EditGAN segmentation"


def test_chosen_part_colours_travel_with_edits_and_leave_with_their_class(env):
    changes = []
    env.ctl.part_colours_changed.connect(changes.append)
    run(env, "analyze")
    paint_lips_lower(env, layer(env, "EditGAN segmentation"), Rect(0, 0, 32, 24))
    assert run(env, "apply_edit", 3)[1] and "part_colours" not in last_request(env)
    env.ctl.set_part_colour("lips", (180, 20, 30))
    env.ctl.set_part_colour("glasses", [10, 10, 10])       # a class this model lacks (see below)
    env.doc.setActiveNode(env.source)
    assert run(env, "apply_edit", 3)[1]
    assert last_request(env)["part_colours"] == {"lips": [180, 20, 30], "glasses": [10, 10, 10]}
    with pytest.raises(ValueError):
        env.ctl.set_part_colour("lips", (0, 0, 300))
    env.ctl.client.hello.emit(HELLO)                      # a (re)connect: this model has no glasses
    assert env.ctl.part_colours == {"lips": (180, 20, 30)} and changes[-1] == {"lips": (180, 20, 30)}
    env.ctl.set_part_colour("lips", None)
    env.doc.setActiveNode(env.source)
    assert run(env, "apply_edit", 3)[1] and "part_colours" not in last_request(env)
    assert changes[-1] == {}


def test_previews_stream_while_a_job_runs_and_clear_at_the_end(env):
    previews = []
    env.ctl.preview.connect(previews.append)
    run(env, "analyze")
    assert env.server.received[0][0]["preview"] is True
    assert previews[0].data == bytes(range(48)) and (previews[0].width, previews[0].format) == (4, "rgb8")
    assert previews[-1] is None


def test_regions_below_the_servers_minimum_are_refused(env):
    env.ctl.client.info["limits"]["min_side"] = 16
    env.doc.setSelection(fake_krita.Selection(0, 0, 30, 10))
    assert "at least 16 px" in run(env, "analyze")[2]
    assert env.server.received == []


def test_a_model_without_segmenter_only_allows_presets(env):
    env.ctl.client.info["model"]["segmenter"] = False
    assert not env.ctl.can_segment
    assert "no segmentation branch" in run(env, "analyze")[2]
    assert run(env, "apply_presets", [("smile", 1.0)], 0)[1]


def test_the_segmentation_layer_is_not_a_portrait(env):
    run(env, "analyze", 12)
    assert env.server.received[0][0]["steps"] == 12
    kind, ok, detail = run(env, "analyze")                                # the seg layer is active now
    assert not ok and "segmentation layer" in detail and len(env.server.received) == 1


def test_preset_on_a_layer_never_analyzed_embeds_on_the_way(env):
    kind, ok, _ = run(env, "apply_presets", [("smile", 1.5)], 0)
    assert ok and ops(env) == ["embed", "apply_preset"]
    assert env.doc.layer_names() == ["portrait", "EditGAN: smile ×1.5"]


def test_a_result_that_changes_nothing_adds_no_layer(env):
    kind, ok, detail = run(env, "apply_presets", [("smile", 0.0)], 0)
    assert not ok and "changed no pixels" in detail
    assert env.doc.layer_names() == ["portrait"]


def test_unknown_session_is_answered_by_a_silent_reembed(env):
    run(env, "analyze")
    paint_lips_lower(env, layer(env, "EditGAN segmentation"), Rect(0, 0, 32, 24))
    env.fake.sessions.clear()                                             # the server restarted
    kind, ok, _ = run(env, "apply_edit", 3)
    assert ok and ops(env) == ["embed", "edit", "embed", "edit"]
    assert not [m for m in env.messages if m[1]]


def test_a_repainted_source_is_embedded_again_before_editing(env):
    run(env, "analyze")
    paint_lips_lower(env, layer(env, "EditGAN segmentation"), Rect(0, 0, 32, 24))
    env.source.setPixelData(b"\x10\x20\x30\xff", 0, 0, 1, 1)              # the user touched the portrait
    assert run(env, "apply_edit", 3)[1]
    assert ops(env) == ["embed", "embed", "edit"]


@pytest.mark.parametrize("model,depth,where", [("RGBA", "U16", "image"), ("GRAYA", "U8", "image"),
                                               ("RGBA", "F32", "layer")])
def test_refuses_anything_but_rgba8(env, model, depth, where):
    if where == "image":
        env.doc._model, env.doc._depth = model, depth
    else:
        env.doc.setActiveNode(env.doc.add_layer("float", model=model, depth=depth))
    kind, ok, detail = run(env, "analyze")
    assert not ok and f"{model}/{depth}" in detail and "8-bit" in detail
    assert env.server.received == []
    assert env.app.window.view.messages[-1].startswith("EditGAN: ")      # floating message too


def test_clear_errors_for_missing_document_analysis_and_oversized_regions(env):
    assert "Analyze this layer first" in run(env, "apply_edit", 3)[2]
    assert "Apply an edit first" in run(env, "save_preset", "mine")[2]
    env.ctl.client.info["limits"]["max_side"] = 16
    assert "at most 16 px" in run(env, "analyze")[2]
    env.app.setActiveDocument(None)
    assert "Open an image first" in run(env, "analyze")[2]
    assert env.server.received == []


def test_no_change_error_is_reported(env):
    run(env, "analyze")
    kind, ok, detail = run(env, "apply_edit", 3)
    assert not ok and "nothing was painted" in detail
    assert env.messages[-1] == ("nothing was painted", True)


def test_busy_and_cancel(env):
    env.fake.hold = True
    progress = []
    env.ctl.progress.connect(lambda text, value, maximum: progress.append(text))
    env.ctl.analyze()
    assert wait_until(lambda: "Queued (1 ahead)" in progress)
    env.ctl.analyze()
    assert env.messages[-1][0].startswith("Busy")
    kind, ok, detail = run(env, "cancel")
    assert (kind, ok) == ("analyze", False) and env.messages[-1] == ("Cancelled.", False)
    assert progress[-1] == "Cancelled" and env.ctl.job is None
    assert env.doc.layer_names() == ["portrait"]


def test_save_preset_refreshes_the_list(env):
    run(env, "analyze")
    paint_lips_lower(env, layer(env, "EditGAN segmentation"), Rect(0, 0, 32, 24))
    run(env, "apply_edit", 3)
    lists = []
    env.ctl.presets_changed.connect(lists.append)
    kind, ok, _ = run(env, "save_preset", "wide smile")
    assert ok and last_request(env)["name"] == "wide smile"
    assert wait_until(lambda: lists)
    assert [p["name"] for p in env.ctl.presets] == ["smile", "wide smile"]


def test_a_preset_from_every_painted_layer_names_their_sessions(env):
    second = env.doc.add_layer("second portrait", portrait(32, 24))
    for node in (env.source, second):
        env.doc.setActiveNode(node)
        run(env, "analyze")
        seg = env.doc.activeNode()
        paint_lips_lower(env, seg, Rect(0, 0, 32, 24))
        assert run(env, "apply_edit", 3)[1]
    env.doc.setActiveNode(env.source)
    assert run(env, "apply_presets", [("smile", 1.0)], 0)[1]     # the first layer's last result: a preset
    kind, ok, detail = run(env, "save_preset", "shared", 1.0, True)
    assert not ok and "at least two analyzed layers" in detail
    env.doc.setActiveNode(second)
    kind, ok, _ = run(env, "save_preset", "shared", 1.0, True)  # only the second layer still holds a painted edit
    assert not ok

    env.doc.setActiveNode(env.source)
    seg = layer(env, "EditGAN segmentation")
    paint_lips_lower(env, seg, Rect(0, 0, 32, 24))
    assert run(env, "apply_edit", 3)[1]
    kind, ok, _ = run(env, "save_preset", "shared", 1.0, True)
    header = last_request(env)
    assert ok and header["op"] == "save_preset" and header["session"] == "s1" and header["more_sessions"] == ["s2"]
    assert env.messages[-1][0] == "Saved preset “shared” (fitted to 2 portraits)."
    kind, ok, _ = run(env, "save_preset", "single")                # the default: this layer's edit alone
    assert ok and "more_sessions" not in last_request(env)

    other = fake_krita.Document(32, 24, name="other")               # a painted portrait in another document
    env.app.setActiveDocument(other)
    other.setActiveNode(other.add_layer("third portrait", portrait(32, 24)))
    run(env, "analyze")
    seg = other.activeNode()
    paint_lips_lower(env, seg, Rect(0, 0, 32, 24))
    assert run(env, "apply_edit", 3)[1]
    env.app.setActiveDocument(env.doc)
    assert run(env, "save_preset", "shared", 1.0, True)[1]
    assert last_request(env)["more_sessions"] == ["s2", "s3"]
    other.close()                                                   # its session is no longer offered
    assert run(env, "save_preset", "shared", 1.0, True)[1]
    assert last_request(env)["more_sessions"] == ["s2"]


def test_not_connected_is_a_clear_error(env):
    env.server.stop()
    assert wait_until(lambda: not env.ctl.client.connected, timeout=3)
    kind, ok, detail = run(env, "analyze")
    assert not ok and "Not connected" in detail and "editgan-server" in detail


def test_names_strength_and_metrics_format():
    assert describe_metrics({"iou": 0.834, "leak": 0.004, "seconds": 12.34, "steps": 30}) == \
        " (IoU 0.83, leak 0.4 %, 12.3 s)"
    assert describe_metrics({}) == ""
    assert describe_metrics({"iou": 0.5, "start": {"preset": "close_eyes", "strength": 2}}) == \
        " (IoU 0.50, from close_eyes ×2.0)"
    assert describe_metrics({"start": None}) == "" and describe_metrics({"start": {"preset": 3}}) == ""
    assert format_strength(1) == "1.0" and format_strength(0.5) == "0.5" and format_strength(0.25) == "0.25"
    assert format_strength(-1) == "-1.0"
    assert preset_layer_name([("smile", 1.0)]) == "EditGAN: smile ×1.0"


def test_shared_controller_connects_to_the_saved_address():
    app = fake_krita.Krita.reset()
    app.writeSetting("EditGAN", "server", "tcp://127.0.0.1:1")
    controller_module._shared = None
    try:
        ctl = controller_module.shared()
        assert ctl is controller_module.shared()
        assert ctl.client.transport.address == "tcp://127.0.0.1:1"
        ctl.connect_to("127.0.0.1:2")
        assert app.readSetting("EditGAN", "server", "") == "127.0.0.1:2"
        ctl.client.transport.close()
    finally:
        controller_module._shared = None
