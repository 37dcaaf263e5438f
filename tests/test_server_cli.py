"""The ``editgan-server`` program: real subprocess (SIGTERM with a running job, restart → old session
ids are unknown, logs), refusal of unsafe binds, ``keygen`` and CURVE authentication."""

import time

import msgpack
import numpy as np
import pytest
import zmq
import zmq.auth

from editgan.client import ClientError
from server.app import Server
from server.main import main
from server.security import CurveConfig, SecurityError
from tests.server_fixtures import (ServerProcess, editor, face, make_client, server,  # noqa: F401
                                   start_server, tiny_bundle_dir)


def test_sigterm_cancels_running_job_and_restart_forgets_sessions(tiny_bundle_dir, editor, make_client):
    proc = ServerProcess("--model", str(tiny_bundle_dir), "--bind", "tcp://127.0.0.1:*", "--device", "cpu")
    try:
        assert "PERCEPTUAL LOSS IS A FALLBACK" in proc.log() or "perceptual loss: LPIPS" in proc.log()
        c = make_client(proc.endpoint)
        assert c.hello()["protocol"] == 1
        sid = c.embed(face(10, 12, 1), steps=1)["session"]
        rid = c.submit("embed", {"steps": 1000}, {"image": face(10, 12, 2)})
        while c.next_event(rid)["event"] != "progress":
            pass
        t0 = time.monotonic()
        assert proc.terminate(timeout=20) == 0                # clean exit code on SIGTERM
        assert time.monotonic() - t0 < 15
        with pytest.raises(ClientError) as e:                 # the running job ended as cancelled
            c.wait(rid, timeout=5)
        assert e.value.code == "cancelled"
        log = proc.log()
        assert "op=embed" in log and "outcome=result" in log and "outcome=cancelled" in log
        assert "server stopped" in log
    finally:
        proc.kill()

    # restart on the same address (in-process this time: the program's start is proven above)
    port = proc.endpoint.rsplit(":", 1)[1]
    srv = start_server(editor, bind=f"tcp://127.0.0.1:{port}")
    try:
        with pytest.raises(ClientError) as e:    # same address, same client socket: the old id is gone
            c.edit(sid, np.zeros((10, 12, 4), np.uint8))
        assert e.value.code == "unknown_session"
        assert c.ping("back")["payload"] == "back"
    finally:
        srv.close()


def test_non_loopback_bind_refused_without_keys(tiny_bundle_dir, editor, caplog):
    assert main(["--model", str(tiny_bundle_dir), "--bind", "tcp://0.0.0.0:5599"]) == 2
    assert main(["--model", str(tiny_bundle_dir), "--bind", "tcp://*:5599", "--log-level", "ERROR"]) == 2
    assert "refusing to bind" in caplog.text
    with pytest.raises(SecurityError):
        Server(editor, "tcp://0.0.0.0:5599")
    Server(editor, "tcp://0.0.0.0:5599", insecure=True)   # explicit opt-out is accepted (not started)


def test_start_up_errors_are_one_line_exits_not_tracebacks(tiny_bundle_dir, tmp_path, monkeypatch, caplog):
    import json
    import shutil

    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--model", str(tiny_bundle_dir), "--device", "cuda", "--bind", "tcp://127.0.0.1:5598"]) == 2
    assert "no usable CUDA device" in caplog.text
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle_dir, broken)
    manifest = json.loads((broken / "model.json").read_text())
    manifest["classes"] = manifest["classes"][:-1]  # the segmenter predicts one class more
    (broken / "model.json").write_text(json.dumps(manifest))
    assert main(["--model", str(broken), "--bind", "tcp://127.0.0.1:5598"]) == 2
    assert "cannot load model bundle" in caplog.text


def test_curve_allow_listed_client_only(tmp_path, editor, make_client):
    keys = tmp_path / "keys"
    assert main(["keygen", "--out", str(keys)]) == 0
    srv = start_server(editor, curve=CurveConfig.load(keys))
    try:
        ok = make_client(srv.endpoint, server_key=keys / "server.key",
                         client_key=keys / "client" / "client.key_secret")
        assert ok.hello()["protocol"] == 1 and ok.ping("secret")["payload"] == "secret"

        stranger_dir = tmp_path / "stranger"
        stranger_dir.mkdir()
        _, secret = zmq.auth.create_certificates(stranger_dir, "intruder")   # valid keys, not allow-listed
        bad = make_client(srv.endpoint, timeout=1.0, server_key=keys / "server.key", client_key=secret)
        with pytest.raises(ClientError) as e:
            bad.ping("let me in")
        assert e.value.code == "timeout"

        ctx = zmq.Context()                                   # no CURVE at all
        plain = ctx.socket(zmq.DEALER)
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect(srv.endpoint)
        try:
            plain.send(msgpack.packb({"v": 1, "id": "p", "op": "ping"}))
            assert not plain.poll(1000)
        finally:
            plain.close()
            ctx.term()
        assert ok.ping("still fine")["payload"] == "still fine"
    finally:
        srv.close()


def test_remote_edit_cli(tmp_path, server, editor, capsys, monkeypatch):
    import argparse

    from PIL import Image

    from editgan.client import register

    parser = argparse.ArgumentParser(prog="editgan")
    register(parser.add_subparsers(dest="command"))
    src = face(20, 26, 11, alpha=False)
    Image.fromarray(src).save(tmp_path / "in.png")

    def run(*argv):
        args = parser.parse_args(["remote-edit", "--server", server.endpoint, "--image", str(tmp_path / "in.png"),
                                  "--embed-steps", "1", "--timeout", "20", *argv])
        return args.func(args)

    assert run("--analyze-out", str(tmp_path / "seg.png")) == 0
    seg = np.asarray(Image.open(tmp_path / "seg.png").convert("RGBA")).copy()
    assert seg.shape == (20, 26, 4)
    # paint a block of the rarest class on the analyzed segmentation, as a user would in Krita
    info_colors = [tuple(c["color"]) for c in server.handlers.info["classes"]]
    used = {tuple(p) for p in seg[..., :3].reshape(-1, 3)}
    new = next(c for c in info_colors if c not in used)
    seg[5:12, 6:18, :3] = new
    Image.fromarray(seg).save(tmp_path / "edited.png")
    assert run("--segmentation", str(tmp_path / "edited.png"), "--steps", "2", "--out", str(tmp_path / "out.png"),
               "--save-preset", "cli preset") == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (20, 26, 4)
    assert run("--preset", "cli_preset:0.5", "--preset", "cli_preset", "--strength", "1",
               "--out", str(tmp_path / "out2.png")) == 0
    assert "wrote" in capsys.readouterr().out
    assert run("--preset", "does_not_exist", "--out", str(tmp_path / "x.png")) == 1
    assert "unknown_preset" in capsys.readouterr().err
    assert run() == 2   # nothing to do
    assert run("--part-colour", "lips=#ff0000", "--preset", "cli_preset", "--out", str(tmp_path / "x.png")) == 2
    with pytest.raises(SystemExit):
        run("--part-colour", "lips=red", "--segmentation", str(tmp_path / "edited.png"), "--out", str(tmp_path / "x.png"))
    new_name = server.handlers.info["classes"][info_colors.index(new)]["name"]
    painted = ["--segmentation", str(tmp_path / "edited.png"), "--steps", "2", "--out", str(tmp_path / "out3.png"),
               "--part-colour", f"{new_name}=#C8A040"]
    capsys.readouterr()
    assert run(*painted) == 1 and "lambda_colour" in capsys.readouterr().err   # the tiny model's colour term is off
    monkeypatch.setattr(editor, "edit_settings", editor.edit_settings.replace(lambda_colour=1.0))
    seen, real = [], editor.edit
    monkeypatch.setattr(editor, "edit", lambda *a, **kw: seen.append(kw["part_colours"]) or real(*a, **kw))
    assert run(*painted) == 0 and seen == [{new_name: (200, 160, 64)}]
