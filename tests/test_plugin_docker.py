"""Registration, actions and the docker widgets (offscreen Qt, fake ``krita``, scripted server)."""

import pytest

from tests import fake_krita
from tests.test_plugin_controller import FakeEditGAN
from tests.test_plugin_transport import ProtocolServer, wait_until

import editgan_krita  # noqa: E402
from editgan_krita import controller as controller_module  # noqa: E402
from editgan_krita import deps, extension  # noqa: E402
from editgan_krita.client import Buffer, Client  # noqa: E402
from editgan_krita.controller import Controller  # noqa: E402
from editgan_krita import docker as docker_module  # noqa: E402
from editgan_krita.docker import EditGANDocker  # noqa: E402
from editgan_krita.qt_compat import CHECKED, QColor, QLabel  # noqa: E402
from editgan_krita.transport import Transport  # noqa: E402


@pytest.fixture
def ctl():
    app = fake_krita.Krita.reset()
    app.setActiveDocument(fake_krita.Document(16, 16))
    server = ProtocolServer(FakeEditGAN())
    controller = Controller(Client(Transport(interval=0.1, timeout=3.0)))
    controller.connect_to(server.address)
    controller_module._shared = controller
    yield controller
    controller_module._shared = None
    controller.client.transport.close()
    server.stop()


class Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, args))


def test_register_adds_the_extension_and_the_docker_factory():
    app = fake_krita.Krita.reset()
    editgan_krita.register(app)
    assert len(app.extensions) == 1 and isinstance(app.extensions[0], extension.EditGANExtension)
    factory = app.dock_factories[0]
    assert factory.id == editgan_krita.DOCKER_ID and factory.cls is EditGANDocker
    assert factory.area == fake_krita.DockWidgetFactoryBase.DockRight


def test_actions_are_shortcut_able_and_call_the_controller(monkeypatch):
    app = fake_krita.Krita.reset()
    recorder = Recorder()
    monkeypatch.setattr(controller_module, "_shared", recorder)
    ext = extension.EditGANExtension(app)
    ext.setup()
    ext.createActions(app.window)
    assert set(app.window.actions) == {"editgan_analyze", "editgan_apply_edit", "editgan_cancel"}
    for name in ("editgan_analyze", "editgan_apply_edit", "editgan_cancel"):
        app.action(name).trigger()
    assert [name for name, _ in recorder.calls] == ["analyze", "apply_edit", "cancel"]
    assert app.notifier().active


def test_missing_dependencies_are_explained_not_hidden(monkeypatch):
    app = fake_krita.Krita.reset()
    monkeypatch.setattr(deps, "problem", "EditGAN needs pyzmq (No module named 'zmq')")
    ext = extension.EditGANExtension(app)
    ext.createActions(app.window)
    app.action("editgan_analyze").trigger()
    assert "needs pyzmq" in app.window.view.messages[-1]
    docker = EditGANDocker()
    assert any("needs pyzmq" in label.text() for label in docker.widget().findChildren(QLabel))


def test_docker_shows_status_model_swatches_and_presets(ctl):
    assert wait_until(lambda: ctl.client.connected)
    docker = EditGANDocker()
    assert "connected" in docker.status.text()
    assert "fake-model" in docker.model.text()
    swatches = [docker.swatches.itemAt(i).widget() for i in range(docker.swatches.count())]
    assert [s.text() for s in swatches] == ["background", "lips"]
    assert "lips" in swatches[1].toolTip() and "#c8283c" in swatches[1].toolTip()
    swatches[1].click()
    view = fake_krita.Krita.instance().window.view
    assert view.foreground.rgb == (200, 40, 60)
    assert docker.preset_list.count() == 1 and docker.preset_list.item(0).text() == "smile ×1.0"
    assert docker.analyze_button.isEnabled() and not docker.cancel_button.isEnabled()


def test_docker_presets_strength_refine_and_settings(ctl, monkeypatch):
    assert wait_until(lambda: ctl.client.connected)
    docker = EditGANDocker()
    calls = []
    monkeypatch.setattr(ctl, "apply_presets", lambda choices, refine: calls.append((choices, refine)))
    item = docker.preset_list.item(0)
    docker.preset_list.setCurrentItem(item)
    docker.strength.setValue(50)
    assert item.text() == "smile ×0.5"
    docker.refine.setCurrentIndex(2)
    docker.apply_presets_button.click()          # nothing ticked: the highlighted preset
    item.setCheckState(CHECKED)
    docker.apply_presets_button.click()
    assert calls == [([("smile", 0.5)], 30), ([("smile", 0.5)], 30)]
    docker.steps.setValue(12)
    app = fake_krita.Krita.instance()
    assert app.readSetting("EditGAN", "edit_steps", None) == "12"
    assert app.readSetting("EditGAN", "refine_steps", None) == "30"
    docker.address.setText("tcp://127.0.0.1:1")
    docker.connect_button.click()
    assert app.readSetting("EditGAN", "server", None) == "tcp://127.0.0.1:1"
    assert wait_until(lambda: "connecting" in docker.status.text() or "no answer" in docker.status.text())
    assert not docker.analyze_button.isEnabled()


def test_docker_save_preset_asks_a_name_and_passes_the_every_layer_choice(ctl, monkeypatch):
    from editgan_krita import docker as docker_module
    assert wait_until(lambda: ctl.client.connected)
    docker = EditGANDocker()
    calls, answers = [], iter([("  wide smile ", True), ("x", False), ("shared", True)])
    monkeypatch.setattr(docker_module.QInputDialog, "getText", lambda *a, **k: next(answers))
    monkeypatch.setattr(ctl, "save_preset", lambda name, every_painted_layer=False: calls.append((name, every_painted_layer)))
    docker.save_button.click()
    docker.save_button.click()                   # cancelled dialog: nothing saved
    docker.save_every.setChecked(True)
    docker.save_button.click()
    assert calls == [("wide smile", False), ("shared", True)]


def test_docker_swatch_menu_chooses_the_colour_of_new_parts(ctl, monkeypatch):
    assert wait_until(lambda: ctl.client.connected)
    docker = EditGANDocker()
    lips = next(entry for _, entry in docker.swatch_entries if entry.name == "lips")
    asked = []
    monkeypatch.setattr(docker_module.QColorDialog, "getColor",
                        lambda initial, *a: asked.append(initial.getRgb()[:3]) or QColor(180, 20, 30))
    choose, automatic = docker.part_colour_menu(lips).actions()
    assert "Right-click" in docker.part_colours.text() and not automatic.isEnabled()
    choose.trigger()
    assert asked == [(200, 40, 60)]                        # no appearance known: the palette colour
    assert ctl.part_colours == {"lips": (180, 20, 30)}
    assert "lips" in docker.part_colours.text() and "#b4141e" in docker.part_colours.text()
    button = next(b for b, entry in docker.swatch_entries if entry.name == "lips")
    assert "border-bottom: 5px solid #b4141e" in button.styleSheet()
    choose, automatic = docker.part_colour_menu(lips).actions()
    choose.trigger()
    assert asked[-1] == (180, 20, 30)                      # the dialog opens on the current choice
    automatic.trigger()
    assert ctl.part_colours == {} and "border-bottom" not in button.styleSheet()


def test_docker_shows_progress_and_errors(ctl):
    assert wait_until(lambda: ctl.client.connected)
    docker = EditGANDocker()
    ctl.progress.emit("Queued (2 ahead)", 0, 0)
    assert docker.progress.format() == "Queued (2 ahead)"
    ctl.busy_changed.emit(True)
    assert docker.cancel_button.isEnabled()
    ctl.message.emit("Something failed", True)
    assert docker.message.text() == "Something failed" and "d33" in docker.message.styleSheet()
    ctl.preview.emit(Buffer(bytes(range(48)), 4, 4, "rgb8"))
    assert not docker.preview.isHidden() and docker.preview.pixmap().width() == 128
    ctl.preview.emit(None)
    assert docker.preview.isHidden()


def test_docker_disables_segmentation_commands_without_a_segmenter(ctl):
    assert wait_until(lambda: ctl.client.connected)
    ctl.client.info["model"]["segmenter"] = False
    docker = EditGANDocker()
    assert not docker.analyze_button.isEnabled() and not docker.apply_button.isEnabled()
    assert docker.apply_presets_button.isEnabled()
