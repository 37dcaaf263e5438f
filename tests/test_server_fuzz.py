"""Hostile input: thousands of malformed multipart messages, each answered by exactly one ``error``
(never a crash, never a hang), then the server still pings and edits; oversize messages."""

import time

import msgpack
import numpy as np
import pytest
import zmq

from server.protocol import Limits, MiB
from tests.server_fixtures import (editor, face, make_client, paint_edit, server,  # noqa: F401
                                   start_server, tiny_bundle_dir)

IMG = {"frame": 1, "width": 4, "height": 3, "format": "rgba8"}
OPS = ["hello", "ping", "echo", "embed", "edit", "apply_preset", "save_preset", "delete_preset", "list_presets",
       "cancel", "close_session"]
BAD_VALUES = [None, True, -1, 0, 2 ** 63, -2 ** 63, 1.5, float("nan"), float("inf"), "", "x" * 300, b"\x00" * 9,
              [], [1, [2]], {}, {"frame": 1}, {"a": {"b": {"c": 1}}}]


BAD_STEPS = [True, -1, 2 ** 63, 1.5, float("nan"), "5", [], 10 ** 6, {"n": 1}]


def deep_ping(rid, depth, as_map):
    """{"v": 1, "id": rid, "op": "ping", "payload": [[[...]]]} nested ``depth`` deep, packed by hand
    (msgpack's packer refuses such depth). Shallow: an invalid payload; deeper than msgpack's
    unpacker stack (1024): undecodable."""
    head = b"".join(msgpack.packb(x) for x in ("v", 1, "id", rid, "op", "ping", "payload"))
    inner = (b"\x81\xa1k" if as_map else b"\x91") * depth + b"\x01"
    return b"\x84" + head + inner


def malformed_messages(rng, n):
    """Yields (frames, expected id or None). Every message is invalid by construction."""
    valid = {"v": 1, "op": "embed", "image": IMG}
    for k in range(n):
        rid = f"f{k}"
        kind = k % 14
        if kind == 0:      # random garbage
            yield [rng.bytes(int(rng.integers(0, 120)))], None
        elif kind == 1:    # truncated msgpack of a valid-looking request
            data = msgpack.packb({**valid, "id": rid, "steps": 3})
            yield [data[:int(rng.integers(0, len(data) - 1))], bytes(48)], None
        elif kind == 2:    # valid msgpack, not a map
            yield [msgpack.packb([1, 2, 3][: k % 4] if k % 3 else ("str", 7)[k % 2])], None
        elif kind == 3:    # bad envelope: v / id / op
            field = ["v", "id", "op"][k % 3]
            header = {"v": 1, "id": rid, "op": "ping", field: BAD_VALUES[k % len(BAD_VALUES)]}
            if field == "v" and header["v"] == 1:
                header["v"] = 99
            yield [msgpack.packb(header)], (rid if field != "id" else None)
        elif kind == 4:    # unknown ops
            yield [msgpack.packb({"v": 1, "id": rid, "op": f"op{k}"})], rid
        elif kind == 5:    # bad buffer descriptor fields (incl. huge/negative declared sizes)
            key = ["frame", "width", "height", "format", "channels"][k % 5]
            bad = [0, -5, 10 ** 12, "3", 2.0, 7, None, 2 ** 40][k % 8]
            if key == "channels" and bad is None:
                bad = 3
            yield [msgpack.packb({**valid, "id": rid, "image": {**IMG, key: bad}}), bytes(48)], rid
        elif kind == 6:    # byte length mismatch
            yield [msgpack.packb({**valid, "id": rid}), bytes(int(rng.integers(0, 200)) | 1)], rid
        elif kind == 7:    # wrong frame counts: missing, unreferenced, too many
            frames = [msgpack.packb({**valid, "id": rid}), bytes(48)] + [b"x"] * (k % 9 + 1)
            yield (frames if k % 2 else frames[:1]), rid
        elif kind == 8:    # wrong types in op fields
            op = ["embed", "edit", "apply_preset", "save_preset", "delete_preset", "cancel", "close_session",
                  "ping", "hello", "echo"][k % 10]
            fields = {"embed": {"image": IMG, "steps": BAD_STEPS[k % len(BAD_STEPS)]},
                      "edit": {"session": 5, "segmentation": IMG},
                      "apply_preset": {"session": "s-x", "presets": BAD_VALUES[k % len(BAD_VALUES)]},
                      "save_preset": {"session": ["s"], "name": "ok"},
                      "delete_preset": {"name": BAD_VALUES[k % 4] if k % 4 else "!!!"},
                      "cancel": {"target": BAD_VALUES[k % 7]},
                      "close_session": {"session": {"x": 1}},
                      "ping": {"payload": "p" * 5000 if k % 2 else {"no": "maps"}},
                      "hello": {"client": 12},
                      "echo": {"image": {**IMG, "format": "jpeg"}}}[op]
            frames = [msgpack.packb({"v": 1, "id": rid, "op": op, **fields})]
            if op in ("embed", "edit", "echo"):
                frames.append(bytes(48))
            yield frames, rid
        elif kind == 9:    # deep nesting (arrays or maps), below and above the unpacker's stack limit
            depth = int(rng.integers(50, 1000)) if k % 4 < 2 else int(rng.integers(1100, 20000))
            yield [deep_ping(rid, depth, as_map=k % 2 == 1)], (rid if depth < 1000 else None)
        elif kind == 10:   # huge declared container/string sizes with no data behind them
            yield [[b"\xdd\xff\xff\xff\xff", b"\xdf\x7f\xff\xff\xff", b"\xdb\xff\xff\xff\xf0abc",
                    b"\xc6\xff\xff\xff\xff"][k % 4]], None
        elif kind == 11:   # ext types, non-string keys, invalid utf-8
            yield [[b"\x81\xa1v\xd6\xff\x00\x00\x00\x01", b"\x81\x01\x01", b"\x81\xa2id\xa2\xff\xfe"][k % 3]], None
        elif kind == 12:   # presets entries malformed
            presets = [[{"name": 5}], [{"name": "a", "strength": "1"}], [{"strength": 1}], [1], [{}] * 40,
                       [{"name": "a" * 100}]][k % 6]
            yield [msgpack.packb({"v": 1, "id": rid, "op": "apply_preset", "session": "s-none",
                                  "presets": presets})], rid
        else:              # oversized header frame
            yield [msgpack.packb({"v": 1, "id": rid, "op": "ping", "pad": "x" * 70000})], None


def test_fuzz_2000_malformed_messages_then_ping_and_edit(server, make_client):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    rng = np.random.default_rng(1234)
    messages = list(malformed_messages(rng, 2100))
    try:
        for start in range(0, len(messages), 50):           # windows: never overrun the HWMs
            batch = messages[start:start + 50]
            for frames, _ in batch:
                sock.send_multipart(frames)
            for i, (frames, rid) in enumerate(batch):
                assert sock.poll(5000), f"no reply to fuzz message {start + i}: {frames[0][:40]!r}"
                reply = sock.recv_multipart()
                header = msgpack.unpackb(reply[0])
                assert header["event"] == "error", (start + i, header)
                assert header["code"] in ("bad_request", "unsupported_version", "unknown_op", "too_large",
                                          "invalid_image", "unknown_session", "unknown_preset"), header
                if rid is not None:
                    assert header["id"] == rid, (start + i, header)
        assert not sock.poll(200)                            # exactly one reply each
    finally:
        sock.close()
        ctx.term()

    c = make_client(server.endpoint)
    assert c.ping("still alive")["payload"] == "still alive"
    info = c.hello()
    emb = c.embed(face(24, 24, 9), steps=1)
    palette = [tuple(x["color"]) for x in info["classes"]]
    target = next(i for i in range(len(palette)) if (emb["labels"] != i).mean() > 0.5)
    res = c.edit(emb["session"], paint_edit(emb["segmentation"], palette, target), steps=2)
    x, y, w, h = res["box"]
    assert (res["width"], res["height"]) == (24, 24) and res["image"].shape == (h, w, 4)


def test_oversize_messages(editor, make_client):
    srv = start_server(editor, limits=Limits(max_message_bytes=1 * MiB, max_side=256))
    try:
        c = make_client(srv.endpoint, timeout=5)
        # one frame above ZMQ_MAXMSGSIZE: libzmq drops it and the connection — bounded silence
        rid = c.submit("echo", buffers={"image": (bytes(2 * MiB), 1024, 512)})
        with pytest.raises(Exception) as e:
            c.wait(rid, timeout=1.0)
        assert getattr(e.value, "code", None) == "timeout"
        # frames each under the limit but together over it: too_large reply
        frames = [msgpack.packb({"v": 1, "id": "big", "op": "echo", "image": {**IMG, "width": 256, "height": 256}}),
                  bytes(256 * 256 * 4), bytes(900 * 1024)]
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(srv.endpoint)
        try:
            sock.send_multipart(frames)
            assert sock.poll(5000)
            header = msgpack.unpackb(sock.recv_multipart()[0])
            assert (header["id"], header["code"]) == ("big", "too_large")
            sock.send_multipart([msgpack.packb({"v": 1, "id": "wide", "op": "embed",
                                                "image": {**IMG, "width": 100000}}), bytes(48)])
            assert sock.poll(5000)
            header = msgpack.unpackb(sock.recv_multipart()[0])
            assert (header["id"], header["code"]) == ("wide", "too_large")
        finally:
            sock.close()
            ctx.term()
        # the server (and even the dropped client, after its automatic reconnect) still works
        deadline = time.monotonic() + 10
        while True:
            try:
                assert c.ping("ok", )["payload"] == "ok"
                break
            except Exception:
                assert time.monotonic() < deadline
        assert make_client(srv.endpoint).ping("fresh")["payload"] == "fresh"
    finally:
        srv.close()
