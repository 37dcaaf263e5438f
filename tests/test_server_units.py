"""Server building blocks without sockets: framing/validation, palette snapping, the fair job
queue and worker (with small test-only job functions that really step and sleep), the session
LRU, loopback detection and CURVE key generation."""

import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest

from server.handlers import IMMEDIATE_OPS, JOB_OPS
from server.jobs import Job, JobContext, Scheduler, Worker
from server.protocol import (ERROR_CODES, Limits, ProtocolError, encode_event, parse_request,
                             segmentation_to_labels, snap_to_palette)
from server.security import CurveConfig, SecurityError, is_loopback, keygen
from server.sessions import SessionStore

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)


def pack(header, *buffers):
    return [msgpack.packb(header), *buffers]


def code_of(frames, limits=Limits()):
    with pytest.raises(ProtocolError) as e:
        req = parse_request(frames, limits)
        req.buffer("image", ("rgba8", "rgb8"))
        req.check_all_frames_used()
    return e.value.code


# -- protocol -------------------------------------------------------------------------------------
def test_envelope_and_buffer_validation():
    ok = {"v": 1, "id": "r1", "op": "embed", "image": {"frame": 1, "width": 2, "height": 3, "format": "rgba8"}}
    req = parse_request(pack(ok, bytes(24)), Limits())
    buf = req.buffer("image", ("rgba8", "rgb8"))
    assert buf.array().shape == (3, 2, 4)
    req.check_all_frames_used()

    assert code_of([b"\xc1"]) == "bad_request"                                   # not msgpack
    assert code_of([msgpack.packb([1, 2])]) == "bad_request"                     # not a map
    assert code_of(pack({**ok, "v": 2}, bytes(24))) == "unsupported_version"
    assert code_of(pack({**ok, "id": "x" * 65}, bytes(24))) == "bad_request"
    assert code_of(pack(ok, bytes(23))) == "invalid_image"                       # byte length
    assert code_of(pack(ok)) == "bad_request"                                    # missing frame
    assert code_of(pack(ok, bytes(24), b"extra")) == "bad_request"               # unreferenced frame
    assert code_of(pack({**ok, "image": {**ok["image"], "frame": -1}}, bytes(24))) == "bad_request"
    assert code_of(pack({**ok, "image": {**ok["image"], "width": 10 ** 12}}, bytes(24))) == "too_large"
    assert code_of(pack({**ok, "image": {**ok["image"], "width": 2.0}}, bytes(24))) == "invalid_image"
    assert code_of(pack({**ok, "image": {**ok["image"], "format": "f32"}}, bytes(24))) == "invalid_image"
    small = Limits(max_message_bytes=100)
    assert code_of(pack(ok, bytes(24)) + [bytes(100)], small) == "too_large"
    assert code_of([b""] * 9) == "bad_request"                                   # too many frames


def test_number_validation_rejects_nan_bool_and_range():
    req = parse_request(pack({"v": 1, "id": "a", "op": "x", "s": float("nan"), "b": True, "i": 5}), Limits())
    for call in (lambda: req.number("s", -1, 1), lambda: req.integer("b", 0, 9), lambda: req.integer("i", 0, 4),
                 lambda: req.boolean("i"), lambda: req.string("i")):
        with pytest.raises(ProtocolError) as e:
            call()
        assert e.value.code == "bad_request" and e.value.rid == "a"


def test_encode_event_roundtrip():
    frames = encode_event("q", "result", {"x": np.float32(1.5), "box": (1, 2, 3, 4)},
                          {"image": np.zeros((2, 3, 4), np.uint8), "labels": np.ones((2, 3), np.uint8)})
    header = msgpack.unpackb(frames[0])
    assert header["x"] == 1.5 and header["box"] == [1, 2, 3, 4] and header["id"] == "q"
    assert header["image"] == {"frame": 1, "width": 3, "height": 2, "format": "rgba8", "channels": 4}
    assert bytes(frames[2]) == b"\x01" * 6


def test_snap_to_palette_nearest_and_antialiased():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    got = snap_to_palette(img, PALETTE, chunk=100)  # many chunks
    d = ((img[:, :, None, :].astype(int) - PALETTE[None, None].astype(int)) ** 2).sum(-1)
    assert np.array_equal(got, d.argmin(-1))
    # an anti-aliased red/green edge: 70 % red goes to red, 30 % red to green
    edge = np.array([[[178, 77, 0], [77, 178, 0]]], np.uint8)
    assert snap_to_palette(edge, PALETTE).tolist() == [[1, 2]]


def as_buffer(arr, fmt):
    h, w = arr.shape[:2]
    req = parse_request(pack({"v": 1, "id": "a", "op": "edit",
                              "b": {"frame": 1, "width": w, "height": h, "format": fmt}}, arr.tobytes()), Limits())
    return req.buffer("b", (fmt,))


def test_segmentation_alpha_means_unchanged():
    source_labels = np.full((4, 5), 3, np.uint8)
    seg = np.zeros((4, 5, 4), np.uint8)
    seg[..., :3] = [250, 5, 5]
    seg[:2, :, 3] = 255   # painted (near) red
    seg[2:, :, 3] = 100   # mostly transparent: unchanged
    labels = segmentation_to_labels(as_buffer(seg, "rgba8"), source_labels, PALETTE)
    assert (labels[:2] == 1).all() and (labels[2:] == 3).all()
    assert (segmentation_to_labels(as_buffer(seg[..., :3].copy(), "rgb8"), source_labels, PALETTE) == 1).all()
    with pytest.raises(ProtocolError) as e:
        segmentation_to_labels(as_buffer(np.full((4, 5), 9, np.uint8), "label8"), source_labels, PALETTE)
    assert e.value.code == "unknown_class"
    with pytest.raises(ProtocolError) as e:
        segmentation_to_labels(as_buffer(np.zeros((5, 4, 4), np.uint8), "rgba8"), source_labels, PALETTE)
    assert e.value.code == "invalid_image"


# -- jobs -----------------------------------------------------------------------------------------
def stepping_job(steps, delay, log=None, name=None):
    """A test-only job: really steps and sleeps, honours cancellation like the engine does."""
    def run(ctx: JobContext):
        if log is not None:
            log.append(name)
        for i in range(steps):
            if ctx.should_cancel():
                raise ProtocolError("cancelled", "cancelled")
            time.sleep(delay)
            ctx.progress(i + 1, steps)
        return {"done": name}, {}
    return run


def test_scheduler_round_robin_positions_and_caps():
    s = Scheduler(max_per_client=3, max_total=5)
    a = [Job(b"A", f"a{i}", "x", None) for i in range(3)]
    b = Job(b"B", "b0", "x", None)
    assert [s.submit(j) for j in a] == [0, 1, 2]
    assert s.submit(b) == 1            # fair: B goes right after A's first job, not behind all of A
    with pytest.raises(ProtocolError) as e:
        s.submit(Job(b"A", "a3", "x", None))
    assert e.value.code == "busy"
    order = [s.take(0).rid for _ in range(2)]
    assert order == ["a0", "b0"]
    assert s.cancel(b"B", "a1") is None                 # other clients cannot cancel A's jobs
    state, job = s.cancel(b"A", "a2")
    assert state == "queued" and job.cancel.is_set()
    assert s.cancel(b"A", "b0") is None
    s.finish(s.running)
    assert s.take(0).rid == "a1"
    assert s.cancel(b"A", "a1")[0] == "running"
    assert s.close() == [] and s.take(0) is None


def test_scheduler_byte_budget():
    s = Scheduler(max_per_client=8, max_total=8, max_bytes=100)
    s.submit(Job(b"A", "huge", "x", None, nbytes=500))     # one queued job is always accepted
    with pytest.raises(ProtocolError) as e:
        s.submit(Job(b"B", "small", "x", None, nbytes=1))
    assert e.value.code == "busy" and "bytes" in e.value.message
    assert s.take(0).rid == "huge"                         # running jobs do not count
    s.submit(Job(b"B", "a", "x", None, nbytes=60))
    with pytest.raises(ProtocolError):
        s.submit(Job(b"B", "b", "x", None, nbytes=60))


def test_worker_fairness_cancel_and_survival():
    sched, events, started = Scheduler(8, 64), [], []
    lock = threading.Lock()

    def sink_factory():
        def sink(client, frames):
            with lock:
                events.append((client, msgpack.unpackb(bytes(frames[0]))))
        return sink, lambda: None

    def boom(ctx):
        raise RuntimeError("kaboom")

    worker = Worker(sched, sink_factory)
    sched.submit(Job(b"A", "long", "x", stepping_job(200, 0.01, started, "long")))
    for i in range(3):
        sched.submit(Job(b"A", f"a{i}", "x", stepping_job(2, 0.01, started, f"a{i}")))
    sched.submit(Job(b"B", "boom", "x", boom))
    sched.submit(Job(b"B", "b1", "x", stepping_job(2, 0.01, started, "b1")))
    worker.start()
    deadline = time.monotonic() + 5
    while "long" not in started and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sched.cancel(b"A", "long")[0] == "running"
    while len([e for e in events if e[1]["event"] in ("result", "error")]) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    sched.close()
    worker.join(5)
    assert not worker.is_alive()
    final = {e["id"]: e for _, e in events if e["event"] in ("result", "error")}
    assert final["long"]["code"] == "cancelled"
    assert final["boom"]["code"] == "internal" and "kaboom" in final["boom"]["message"]
    assert all(final[k]["event"] == "result" for k in ("a0", "a1", "a2", "b1"))
    # round-robin: B's jobs are interleaved with A's instead of waiting for all of A
    assert started == ["long", "a0", "b1", "a1", "a2"]  # (boom ran between long and a0)
    assert any(e["event"] == "progress" and e["id"] == "long" for _, e in events)


# -- sessions & security --------------------------------------------------------------------------
def test_session_lru():
    store = SessionStore(max_sessions=2)
    s1, s2 = store.add("one"), store.add("two")
    assert store.get(s1) == "one"          # s1 is now most recent
    s3 = store.add("three")                # evicts s2
    assert store.get(s2) is None and store.get(s1) == "one" and store.get(s3) == "three"
    assert store.close(s1) and not store.close(s1) and len(store) == 1


@pytest.mark.parametrize("endpoint,loop", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:5555", True),
    ("tcp://127.0.0.1:*", True), ("ipc:///tmp/x", True), ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False), ("tcp://eth0:5555", False), ("tcp://192.168.1.4:5555", False),
    ("tcp://example.com:5555", False)])
def test_is_loopback(endpoint, loop):
    assert is_loopback(endpoint) is loop


def test_keygen_layout_and_load(tmp_path):
    paths = keygen(tmp_path / "keys")
    cfg = CurveConfig.load(tmp_path / "keys")
    assert cfg.allowed_clients() == 1 and len(cfg.public) == 40 and len(cfg.secret) == 40
    assert paths["allowed"].read_bytes() == paths["client_public"].read_bytes()
    assert (paths["server_secret"].stat().st_mode & 0o077) == 0
    with pytest.raises(SecurityError):
        keygen(tmp_path / "keys")        # never overwrites
    with pytest.raises(SecurityError):
        CurveConfig.load(tmp_path / "nothing")


def test_protocol_doc_in_sync_with_server():
    doc = DOC.read_text()
    for op in (*IMMEDIATE_OPS, *JOB_OPS, "cancel"):
        assert f"### `{op}`" in doc, f"op {op} undocumented"
    for code in ERROR_CODES:
        assert f"| `{code}` |" in doc, f"error code {code} not in the table"
    for key, value in Limits().to_dict().items():
        assert f"| `{key}` |" in doc, f"limit {key} not in the table"
        assert f"{value:,}" in doc or str(value) in doc, f"default of {key} ({value}) not documented"


def test_reference_client_forgets_a_timed_out_request_and_refuses_bad_keys(tmp_path):
    from editgan.client import ClientError, EditGANClient
    with EditGANClient("tcp://127.0.0.1:5597", timeout=0.2) as client:  # nobody listens there
        rid = client.submit("ping", {"payload": "x"})
        with pytest.raises(ClientError) as timed_out:
            client.next_event(rid)
        assert timed_out.value.code == "timeout" and rid not in client._open  # late events are not kept
        with pytest.raises(ClientError) as again:
            client.next_event(rid)
        assert again.value.code == "unknown_request"
    with pytest.raises(OSError):
        EditGANClient(server_key=tmp_path / "missing.key", client_key=tmp_path / "missing.key_secret")
    with pytest.raises(ValueError, match="both"):
        EditGANClient(server_key=tmp_path / "missing.key")
