"""Krita plugin logic that needs neither Qt nor Krita: pixels, palette, deps, sessions."""

import sys

import pytest

from tests import fake_krita

sys.path.insert(0, str(fake_krita.PLUGIN_DIR))

from editgan_krita import deps, palette  # noqa: E402
from editgan_krita.image import Rect, bgra_to_rgba, crop, paste, rgba_to_bgra  # noqa: E402
from editgan_krita.sessions import Entry, SessionRunner, SessionStore  # noqa: E402


def pattern(w, h):
    """A buffer whose every byte says where it is: easy to check crops by eye and by value."""
    return bytes((i * 7 + i // 4) % 256 for i in range(w * h * 4))


# -- pixels -------------------------------------------------------------------------------------
def test_bgra_rgba_swap_is_exact_and_involutive():
    bgra = bytes([10, 20, 30, 40, 1, 2, 3, 255])
    assert bgra_to_rgba(bgra) == bytes([30, 20, 10, 40, 3, 2, 1, 255])
    assert rgba_to_bgra(bgra_to_rgba(bgra)) == bgra
    big = pattern(64, 48)
    assert rgba_to_bgra(bgra_to_rgba(big)) == big


def test_crop_and_paste_round_trip():
    w, h = 9, 7
    img = pattern(w, h)
    rect = Rect(2, 1, 4, 3)
    part = crop(img, w, h, rect)
    assert len(part) == 4 * 3 * 4
    assert part[:4] == img[(1 * w + 2) * 4:(1 * w + 2) * 4 + 4]          # top-left pixel
    assert part[-4:] == img[(3 * w + 5) * 4:(3 * w + 5) * 4 + 4]         # bottom-right pixel
    dest = bytearray(w * h * 4)
    paste(dest, w, h, part, rect)
    assert crop(bytes(dest), w, h, rect) == part
    assert dest[:4] == b"\0\0\0\0"                                       # outside untouched
    assert crop(img, w, h, Rect(0, 2, w, 3)) == img[2 * w * 4:5 * w * 4]  # full-width fast path


def test_crop_refuses_rects_outside_and_wrong_sizes():
    img = pattern(4, 4)
    with pytest.raises(ValueError):
        crop(img, 4, 4, Rect(2, 2, 3, 1))
    with pytest.raises(ValueError):
        crop(img[:-1], 4, 4, Rect(0, 0, 1, 1))
    with pytest.raises(ValueError):
        paste(bytearray(img), 4, 4, b"\0" * 8, Rect(0, 0, 1, 1))


def test_rect_maths():
    a = Rect(10, 10, 20, 20)
    assert a.intersected(Rect(0, 0, 15, 100)) == Rect(10, 10, 5, 20)
    assert a.intersected(Rect(50, 50, 5, 5)).empty
    assert a.translated(-10, 5) == Rect(0, 15, 20, 20)


# -- palette ------------------------------------------------------------------------------------
CLASSES = [{"name": "background", "color": [0, 0, 0]}, {"name": "skin", "color": [230, 190, 160]},
           {"name": "lips", "color": [200, 40, 60], "appearance": [150, 60, 70]},
           {"name": "eye_white", "color": [255, 255, 255]}]


def test_palette_from_hello_keeps_class_ids_names_and_colours():
    entries = palette.from_hello(CLASSES)
    assert [(e.index, e.name, e.rgb) for e in entries][2] == (2, "lips", (200, 40, 60))
    assert palette.by_name(entries, "lips").hex == "#c8283c"
    assert palette.by_name(entries, "eye_white").label == "eye white"
    assert palette.by_name(entries, "nose") is None
    assert entries[0].text_hex() == "#ffffff" and entries[3].text_hex() == "#000000"
    assert "#c8283c" in palette.swatch_style(entries[2]) and "border-bottom" not in palette.swatch_style(entries[2])
    assert entries[2].appearance == (150, 60, 70) and entries[1].appearance is None
    assert "border-bottom: 5px solid #0a141e" in palette.swatch_style(entries[2], (10, 20, 30))


def test_palette_rejects_bad_colours():
    with pytest.raises(ValueError):
        palette.from_hello([{"name": "x", "color": [300, 0, 0]}])
    with pytest.raises(ValueError, match="appearance"):
        palette.from_hello([{"name": "x", "color": [3, 0, 0], "appearance": [1, 2]}])


# -- vendored dependencies ------------------------------------------------------------------------
@pytest.mark.parametrize("tag,system,machine,ok", [
    ("manylinux_2_28_x86_64", "linux", "x86_64", True),
    ("manylinux2014_aarch64", "linux", "aarch64", True),
    ("manylinux_2_28_x86_64", "linux", "aarch64", False),
    ("win_amd64", "win32", "AMD64", True),
    ("win_amd64", "linux", "x86_64", False),
    ("macosx_10_15_universal2", "darwin", "arm64", True),
    ("macosx_11_0_arm64", "darwin", "arm64", True),
    ("macosx_11_0_arm64", "darwin", "x86_64", False),
    ("macosx_10_9_x86_64", "darwin", "x86_64", True),
])
def test_platform_tag_matching(tag, system, machine, ok):
    assert deps.platform_matches(tag, system, machine) is ok


def test_vendor_dir_picks_this_python_and_platform(tmp_path):
    for name in ("cp310-manylinux_2_28_x86_64", "cp311-win_amd64", "cp311-manylinux_2_28_x86_64"):
        (tmp_path / name).mkdir()
    found = deps.vendor_dir(tmp_path, version=(3, 11), system="linux", machine="x86_64")
    assert found.name == "cp311-manylinux_2_28_x86_64"
    assert deps.vendor_dir(tmp_path, version=(3, 12), system="linux", machine="x86_64") is None
    assert deps.vendor_dir(tmp_path / "missing") is None


def test_missing_dependency_gives_a_message_not_an_exception(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zmq", None)  # `import zmq` now raises ImportError
    message = deps.setup(tmp_path)
    assert "pyzmq" in message and "msgpack" not in message.split("in Krita")[0]
    assert "Import Python Plugin from File" in message


# -- sessions -----------------------------------------------------------------------------------
def test_store_finds_the_entry_from_any_of_its_layers():
    store = SessionStore()
    entry = store.put(Entry("doc", "src", Rect(0, 0, 8, 8), 1, segmentation="seg", outputs=["seg", "res"]))
    store.put(Entry("other-doc", "src", Rect(0, 0, 8, 8), 2))
    assert store.owner("doc", "src") is entry
    assert store.owner("doc", "seg") is entry and store.owner("doc", "res") is entry
    assert store.owner("doc", "nope") is None
    assert store.owner("other-doc", "seg") is None
    assert len(store) == 2


class FakeServer:
    """Answers SessionRunner requests synchronously, forgetting sessions on demand."""

    def __init__(self):
        self.sent, self.known, self.counter, self.amnesiac = [], set(), 0, False

    def request(self, op, fields, callback):
        self.sent.append((op, fields))
        if op == "embed":
            self.counter += 1
            session = f"s{self.counter}"
            self.known.add(session)
            callback("progress", {"step": 1, "total": 1})
            callback("result", {"session": session})
        elif self.amnesiac or fields["session"] not in self.known:
            callback("error", {"code": "unknown_session", "message": "gone"})
        else:
            callback("result", {"box": [0, 0, 0, 0]})
        return f"r{len(self.sent)}"


def run(server, entry, op="edit"):
    events = []
    runner = SessionRunner(server.request, entry, lambda: {"image": "pixels"},
                           lambda *e: events.append(e))
    runner.run(op, {"steps": 3} if op else None)
    return events, runner


def test_runner_embeds_first_when_there_is_no_session():
    server, entry = FakeServer(), Entry("d", "l", Rect(0, 0, 1, 1), 0)
    events, runner = run(server, entry)
    assert [op for op, _ in server.sent] == ["embed", "edit"]
    assert server.sent[1][1] == {"session": "s1", "steps": 3}
    assert events[-1][:2] == ("edit", "result") and entry.session == "s1"
    assert runner.current == "r2"


def test_runner_reembeds_once_after_unknown_session():
    server, entry = FakeServer(), Entry("d", "l", Rect(0, 0, 1, 1), 0, session="stale")
    events, _ = run(server, entry)
    assert [op for op, _ in server.sent] == ["edit", "embed", "edit"]
    assert events[-1][:2] == ("edit", "result") and entry.session == "s1"
    assert not [e for e in events if e[1] == "error"]  # the user never saw the unknown_session


def test_runner_gives_up_after_one_retry():
    server, entry = FakeServer(), Entry("d", "l", Rect(0, 0, 1, 1), 0, session="stale")
    server.amnesiac = True  # loses every session at once
    events, _ = run(server, entry)
    assert [op for op, _ in server.sent] == ["edit", "embed", "edit"]
    assert events[-1][:2] == ("edit", "error") and events[-1][2]["code"] == "unknown_session"


def test_runner_embed_only_and_send_failures_become_errors():
    server, entry = FakeServer(), Entry("d", "l", Rect(0, 0, 1, 1), 0, session="old")
    events, _ = run(server, entry, op=None)
    assert [op for op, _ in server.sent] == ["embed"] and entry.session == "s1"
    assert events[-1][:2] == ("embed", "result")

    def offline(op, fields, callback):
        raise RuntimeError("Not connected")
    events = []
    SessionRunner(offline, Entry("d", "l", Rect(0, 0, 1, 1), 0), dict, lambda *e: events.append(e)).run("edit", {})
    assert events == [("embed", "error", {"code": "client", "message": "Not connected"})]
