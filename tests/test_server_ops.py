"""Happy path (and the expected refusals) of every op, over a real loopback socket, through the
real ``Editor`` on a tiny random bundle."""

import numpy as np
import pytest

from editgan.client import ClientError, composite
from tests.server_fixtures import (client, editor, face, make_client, paint_edit, server,  # noqa: F401
                                   start_server, tiny_bundle_dir)

STEPS = dict(steps=2)


def palette_of(info):
    return [tuple(c["color"]) for c in info["classes"]]


def embed(client, h=23, w=37, seed=0, **kw):
    return client.embed(face(h, w, seed), **{**STEPS, **kw})


def test_hello_ping_echo(client):
    info = client.hello()
    assert info["protocol"] == 1 and info["event"] == "result"
    assert info["model"]["resolution"] == 32 and info["model"]["num_ws"] > 0
    assert len(info["classes"]) == 13 and all(len(c["color"]) == 3 for c in info["classes"])
    assert info["perceptual"]["kind"] and info["device"] == "cpu"
    assert info["limits"]["max_side"] == 8192 and info["limits"]["max_sessions"] == 8
    assert isinstance(info["presets"], list)
    pong = client.ping("hi there")
    assert pong["payload"] == "hi there" and pong["time"] > 0
    img = face(5, 7, 1)
    echo = client.echo(img)
    assert np.array_equal(echo["image"], img) and echo["bytes"] == img.nbytes


def test_embed_rgba_and_rgb_any_size(client):
    info = client.hello()
    events = []
    res = embed(client, 23, 37, progress=events.append)
    assert res["width"] == 37 and res["height"] == 23 and res["session"].startswith("s-")
    assert events[0]["event"] == "queued" and events[0]["position"] == 0
    assert any(e["event"] == "progress" and e["total"] == 2 for e in events)
    seg = res["segmentation"]
    assert seg.shape == (23, 37, 4) and (seg[..., 3] == 255).all()
    palette = np.array(palette_of(info))
    assert np.array_equal(seg[..., :3], palette[res["labels"]])   # palette colours of the labels
    assert res["labels"].shape == (23, 37) and np.isfinite(res["psnr"])
    rgb = client.embed(face(40, 16, 2, alpha=False), **STEPS)
    assert (rgb["width"], rgb["height"]) == (16, 40) and rgb["session"] != res["session"]


def test_edit_snaps_and_returns_cropped_rgba(client):
    info = client.hello()
    palette = palette_of(info)
    src = face(30, 44, 3)
    emb = client.embed(src, **STEPS)
    target = next(i for i in range(len(palette)) if (emb["labels"] != i).mean() > 0.5)
    events = []
    res = client.edit(emb["session"], paint_edit(emb["segmentation"], palette, target), steps=2,
                      progress=events.append, preview=True)
    x, y, w, h = res["box"]
    assert (res["width"], res["height"]) == (44, 30)
    assert 0 <= x and 0 <= y and x + w <= 44 and y + h <= 30
    assert info["classes"][target]["name"] in res["classes"]
    assert {"iou", "leak", "steps"} <= set(res["metrics"])
    assert res["image"].shape == (h, w, 4) and (res["image"][..., 3] == 255).all()  # (0, 0, 4) if empty
    out = composite(src, res)
    assert np.array_equal(np.delete(out, np.s_[y:y + h], axis=0), np.delete(src, np.s_[y:y + h], axis=0))
    previews = [e["preview"] for e in events if e["event"] == "progress" and "preview" in e]
    assert previews and all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in previews)
    # nothing painted (all transparent) → no_change
    with pytest.raises(ClientError) as e:
        client.edit(emb["session"], np.zeros((30, 44, 4), np.uint8), steps=2)
    assert e.value.code == "no_change"
    with pytest.raises(ClientError) as e:  # wrong size
        client.edit(emb["session"], np.zeros((10, 10, 4), np.uint8), steps=2)
    assert e.value.code == "invalid_image"


def test_edit_with_part_colours(client, editor, monkeypatch):
    info = client.hello()
    palette = palette_of(info)
    src = face(32, 32, 5)
    emb = client.embed(src, **STEPS)
    target = next(i for i in range(len(palette)) if (emb["labels"] != i).mean() > 0.5)
    name, seg = info["classes"][target]["name"], paint_edit(emb["segmentation"], palette, target)
    for colours, code in [([1, 2, 3], "bad_request"), ({"nope": [1, 2, 3]}, "unknown_class"),
                          ({name: [1, 2]}, "bad_request"), ({name: [0, 0, 256]}, "bad_request"),
                          ({name: [0, 0, 1.5]}, "bad_request"),
                          ({name: [0, 0, 0]}, "bad_request")]:  # the tiny bundle's colour term is off
        with pytest.raises(ClientError) as e:
            client.request("edit", {"session": emb["session"], "steps": 2, "part_colours": colours},
                           {"segmentation": (seg, None, None)})
        assert e.value.code == code, colours
    monkeypatch.setattr(editor, "edit_settings", editor.edit_settings.replace(lambda_colour=50.0, keep_q=0.0))
    painted = seg[..., 3] == 255
    brightness = {}
    for rgb in ((0, 0, 0), (255, 255, 255)):
        res = client.edit(emb["session"], seg, steps=10, from_presets=False, part_colours={name: rgb})
        brightness[rgb] = float(composite(src, res)[..., :3][painted].mean())
    assert brightness[(255, 255, 255)] > brightness[(0, 0, 0)] + 10, brightness


def test_presets_save_apply_compose_list_delete(client):
    info = client.hello()
    palette = palette_of(info)
    emb = client.embed(face(32, 32, 4), **STEPS)
    target = next(i for i in range(len(palette)) if (emb["labels"] != i).mean() > 0.5)
    with pytest.raises(ClientError) as e:
        client.save_preset(emb["session"], "nothing yet")
    assert e.value.code == "no_edit"
    client.edit(emb["session"], paint_edit(emb["segmentation"], palette, target), steps=2)
    saved = client.save_preset(emb["session"], "My Test Edit!", default_strength=0.5)["preset"]
    assert saved["name"] == "my_test_edit"
    painted = paint_edit(emb["segmentation"], palette, target)
    cold = client.edit(emb["session"], painted, steps=1, from_presets=False)
    assert "start" in cold["metrics"] and cold["metrics"]["start"] is None
    start = client.edit(emb["session"], painted, steps=1)["metrics"]["start"]  # the preset, if it beats the embedding
    assert start is None or (start["preset"] == "my_test_edit" and start["strength"] in (0.25, 0.5, 0.75))
    with pytest.raises(ClientError) as e:
        client.request("edit", {"session": emb["session"], "from_presets": "yes"},
                       {"segmentation": (painted, None, None)})
    assert e.value.code == "bad_request"
    other = (target + 1) % len(palette)
    client.edit(emb["session"], paint_edit(emb["segmentation"], palette, other), steps=2)
    client.save_preset(emb["session"], "second")
    names = [p["name"] for p in client.list_presets()]
    assert {"my_test_edit", "second"} <= set(names)
    assert {"my_test_edit", "second"} <= {p["name"] for p in client.hello()["presets"]}

    emb2 = client.embed(face(20, 28, 5), **STEPS)
    one = client.apply_presets(emb2["session"], [("My Test Edit", None)])   # default strength, sanitized name
    both = client.apply_presets(emb2["session"], [("my_test_edit", 1.0), ("second", -0.5)], refine_steps=1)
    for res in (one, both):
        assert (res["width"], res["height"]) == (28, 20) and len(res["box"]) == 4
    with pytest.raises(ClientError) as e:
        client.apply_presets(emb2["session"], [("no_such_preset", 1.0)])
    assert e.value.code == "unknown_preset"
    with pytest.raises(ClientError) as e:
        client.apply_presets(emb2["session"], [("second", float("inf"))])
    assert e.value.code == "bad_request"

    assert client.delete_preset("second")["deleted"] == "second"
    assert "second" not in [p["name"] for p in client.list_presets()]
    with pytest.raises(ClientError) as e:
        client.delete_preset("second")
    assert e.value.code == "unknown_preset"
    client.delete_preset("my_test_edit")


def test_save_preset_fitted_to_several_sessions(client):
    palette = palette_of(client.hello())
    ids = []
    for i, (h, w) in enumerate([(32, 32), (24, 30)]):
        emb = client.embed(face(h, w, 10 + i), **STEPS)
        target = next(c for c in range(len(palette)) if (emb["labels"] != c).mean() > 0.5)
        client.edit(emb["session"], paint_edit(emb["segmentation"], palette, target), steps=2)
        ids.append(emb["session"])
    events = []
    saved = client.save_preset(ids[0], "Two Faces", more_sessions=[ids[1], ids[0]], steps=3, progress=events.append)
    assert saved["faces"] == 2 and saved["preset"]["name"] == "two_faces"
    assert "shared by 2 faces" in saved["preset"]["source"]
    steps = [(e["stage"], e["step"], e["total"]) for e in events if e.get("event") == "progress"]
    assert steps[0] == ("learn", 1, 3) and steps[-1] == ("learn", 3, 3)  # throttled: first and last always
    assert {stage for stage, _, _ in steps} == {"learn"}
    assert "two_faces" in [p["name"] for p in client.list_presets()]

    limit = client.hello()["limits"]["max_preset_faces"]
    for more, code in [("abc", "bad_request"), ([1], "bad_request"), (["x"] * limit, "bad_request"),
                       (["no-such-session"], "unknown_session")]:
        with pytest.raises(ClientError) as e:
            client.request("save_preset", {"session": ids[0], "name": "bad", "more_sessions": more})
        assert e.value.code == code, more
    client.apply_presets(ids[1], [("two_faces", 1.0)])  # its last result is now a preset, not a painted edit
    with pytest.raises(ClientError) as e:
        client.save_preset(ids[0], "bad", more_sessions=[ids[1]])
    assert e.value.code == "no_edit" and "painted edit" in e.value.message
    assert "bad" not in [p["name"] for p in client.list_presets()]
    client.delete_preset("two_faces")


def test_close_session_and_lru_expiry(editor, make_client):
    srv = start_server(editor, max_sessions=2)
    try:
        c = make_client(srv.endpoint)
        ids = [c.embed(face(8, 8, i), steps=1)["session"] for i in range(3)]
        with pytest.raises(ClientError) as e:  # evicted (least recently used)
            c.edit(ids[0], np.zeros((8, 8, 4), np.uint8))
        assert e.value.code == "unknown_session"
        assert c.close_session(ids[2]) is True and c.close_session(ids[2]) is False
        with pytest.raises(ClientError) as e:
            c.apply_presets(ids[2], [("x", 1.0)])
        assert e.value.code == "unknown_session"
        with pytest.raises(ClientError) as e:
            c.save_preset(ids[2], "x")
        assert e.value.code == "unknown_session"
    finally:
        srv.close()


def test_worker_survives_an_engine_crash(client, editor, monkeypatch, caplog):
    real_embed = editor.embed

    def crash_once(*args, **kwargs):  # fault injection: the next call is the real engine again
        monkeypatch.setattr(editor, "embed", real_embed)
        raise RuntimeError("simulated engine bug")

    monkeypatch.setattr(editor, "embed", crash_once)
    with pytest.raises(ClientError) as e:
        client.embed(face(16, 16, 6), steps=1)
    assert e.value.code == "internal" and "simulated engine bug" in e.value.message
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)
    assert client.embed(face(16, 16, 6), steps=1)["width"] == 16     # same worker, still serving
