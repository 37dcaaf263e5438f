"""The plugin's controller against the REAL server (tiny random bundle, loopback, in a thread).

What the scripted server cannot prove: that the plugin's framing, field names and buffer formats
are the ones ``server/`` accepts, and that its results land in the right layers.
"""

import pytest

from tests import fake_krita

pytest.importorskip("editgan.editor", reason="the engine (editgan.editor) is not there yet")
pytest.importorskip("PyQt5", reason="PyQt5 is needed for the Krita plugin's Qt tests")

from tests.server_fixtures import editor, face, server, tiny_bundle_dir  # noqa: E402,F401
from tests.test_plugin_transport import wait_until  # noqa: E402

from editgan_krita import palette  # noqa: E402
from editgan_krita.client import Client  # noqa: E402
from editgan_krita.controller import Controller  # noqa: E402
from editgan_krita.document import document_key  # noqa: E402
from editgan_krita.image import rgba_to_bgra  # noqa: E402
from editgan_krita.layer import uid  # noqa: E402
from editgan_krita.transport import Transport  # noqa: E402

SIZE = 48  # not the model's 32: the server resizes in and the plugin composites back at layer size


@pytest.fixture
def env(server):  # noqa: F811
    app = fake_krita.Krita.reset()
    app.writeSetting("EditGAN", "embed_steps", "5")
    doc = fake_krita.Document(SIZE, SIZE)
    source = doc.add_layer("portrait", rgba_to_bgra(face(SIZE, SIZE, seed=3).tobytes()))
    app.setActiveDocument(doc)
    ctl = Controller(Client(Transport(interval=0.2, timeout=5.0)))
    ctl.connect_to(server.endpoint)
    assert wait_until(lambda: ctl.client.connected, timeout=10)
    done = []
    ctl.finished.connect(lambda kind, ok, detail: done.append((kind, ok, detail)))
    yield doc, source, ctl, done
    ctl.client.transport.close()


def run(ctl, done, command, *args, timeout=60):
    count = len(done)
    getattr(ctl, command)(*args)
    assert wait_until(lambda: len(done) > count, timeout=timeout), f"{command} did not finish"
    kind, ok, detail = done[-1]
    assert ok, f"{command}: {detail}"
    return detail


def layer(doc, name):
    return next(n for n in doc.rootNode().childNodes() if n.name() == name)


def check_result(doc, source, ctl, name):
    node = layer(doc, name)
    box = ctl.last_result["box"]
    src, out = source.pixelData(0, 0, SIZE, SIZE), node.pixelData(0, 0, SIZE, SIZE)
    changed = [i for i in range(SIZE * SIZE) if src[i * 4:i * 4 + 4] != out[i * 4:i * 4 + 4]]
    assert changed, f"{name} changed nothing"
    assert all(box.x <= i % SIZE < box.x + box.width and box.y <= i // SIZE < box.y + box.height for i in changed)


def test_analyze_edit_save_and_apply_preset_on_the_real_server(env):
    doc, source, ctl, done = env
    before = source.pixelData(0, 0, SIZE, SIZE)
    previews = []
    ctl.preview.connect(previews.append)
    run(ctl, done, "analyze")
    shown = [p for p in previews if p is not None]
    assert shown and shown[0].format == "rgb8" and shown[0].width == ctl.info["model"]["resolution"]
    seg = layer(doc, "EditGAN segmentation")
    lips = palette.by_name(palette.from_hello(ctl.info["classes"]), "lips").rgb
    block = rgba_to_bgra(bytes([*lips, 255])) * (SIZE // 2)
    for y in range(SIZE // 4, SIZE // 2):       # the test plays the user and paints a lips block
        seg.setPixelData(block, SIZE // 4, y, SIZE // 2, 1)
    run(ctl, done, "apply_edit", 3)
    check_result(doc, source, ctl, "EditGAN: edit")
    run(ctl, done, "save_preset", "plugin test")
    assert wait_until(lambda: "plugin_test" in [p["name"] for p in ctl.presets], timeout=10)
    doc.setActiveNode(source)
    run(ctl, done, "apply_presets", [("plugin_test", 0.5)], 0)
    check_result(doc, source, ctl, "EditGAN: plugin_test ×0.5")
    assert source.pixelData(0, 0, SIZE, SIZE) == before and source.writes_in_stack == 0


def test_expired_session_is_reembedded_transparently(env):
    doc, source, ctl, done = env
    run(ctl, done, "analyze")
    seg = layer(doc, "EditGAN segmentation")
    lips = palette.by_name(palette.from_hello(ctl.info["classes"]), "lips").rgb
    seg.setPixelData(rgba_to_bgra(bytes([*lips, 255])) * 24 * 12, 12, 12, 24, 12)
    entry = ctl.sessions.owner(document_key(doc), uid(seg))
    closed = []
    ctl.client.request("close_session", {"session": entry.session}, lambda e, m: closed.append(m))
    assert wait_until(lambda: closed, timeout=10) and closed[0].get("closed") is True
    run(ctl, done, "apply_edit", 3)
    check_result(doc, source, ctl, "EditGAN: edit")


def test_a_chosen_part_colour_reaches_the_engine(env, editor, monkeypatch):  # noqa: F811
    doc, source, ctl, done = env
    monkeypatch.setattr(editor, "edit_settings", editor.edit_settings.replace(lambda_colour=3.0))
    seen, real = [], editor.edit
    monkeypatch.setattr(editor, "edit", lambda *a, **kw: seen.append(kw.get("part_colours")) or real(*a, **kw))
    run(ctl, done, "analyze")
    seg = layer(doc, "EditGAN segmentation")
    lips = palette.by_name(palette.from_hello(ctl.info["classes"]), "lips").rgb
    seg.setPixelData(rgba_to_bgra(bytes([*lips, 255])) * 24 * 12, 12, 12, 24, 12)
    ctl.set_part_colour("lips", (180, 20, 30))
    run(ctl, done, "apply_edit", 3)
    check_result(doc, source, ctl, "EditGAN: edit")
    assert seen == [{"lips": (180, 20, 30)}]
