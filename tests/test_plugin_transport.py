"""The plugin's transport and client over real ZeroMQ sockets, in a Qt event loop (offscreen).

``ProtocolServer`` is a test-local ROUTER that speaks protocol v1 framing with scripted answers;
the controller tests reuse it. The heartbeat state machine is tested with a fake clock.
"""

import os
import sys
import threading
import time

import msgpack
import pytest
import zmq

from tests import fake_krita

pytest.importorskip("PyQt5", reason="PyQt5 is needed for the Krita plugin's Qt tests (pip install PyQt5)")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
fake_krita.install()

from PyQt5.QtCore import QEventLoop, QTimer  # noqa: E402
from PyQt5.QtWidgets import QApplication  # noqa: E402

from editgan_krita.client import Buffer, Client, ClientError  # noqa: E402
from editgan_krita.transport import (CONNECTED, CONNECTING, GONE, Heartbeat, Transport,  # noqa: E402
                                     normalize_address)

APP = QApplication.instance() or QApplication(sys.argv[:1])
HELLO = {"protocol": 1, "server": "fake", "model": {"name": "fake-model", "resolution": 32},
         "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "lips", "color": [200, 40, 60]}],
         "presets": [{"name": "smile", "classes": ["lips"], "default_strength": 1.0}],
         "device": "cpu", "limits": {"max_side": 4096, "max_steps": 200}}


def wait_until(predicate, timeout=5.0):
    """Run the Qt event loop until ``predicate()`` holds; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        APP.processEvents(QEventLoop.AllEvents, 20)
        time.sleep(0.002)
    return predicate()


class ProtocolServer:
    """A ROUTER in a thread: answers ping and hello itself, everything else with ``handler``;
    drops everything while ``mute`` (a hung server).

    ``handler(header, frames)`` returns a list of (event fields, frames) or yields them (with
    optional ``("sleep", seconds)`` pauses) and sees the decoded header. ``received`` keeps
    (header, frames) of every non-ping request.
    """

    def __init__(self, handler=None, port=None, curve=None):
        self.handler = handler or (lambda header, frames: [])
        self.received, self._stop, self.mute = [], threading.Event(), False
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:  # (public, secret): encrypt; no ZAP handler, so any client key is accepted
            self._sock.curve_publickey, self._sock.curve_secretkey = curve
            self._sock.curve_server = True
        if port is None:
            port = self._sock.bind_to_random_port("tcp://127.0.0.1")
        else:
            self._sock.bind(f"tcp://127.0.0.1:{port}")
        self.port, self.address = port, f"tcp://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if not self._sock.poll(20):
                continue
            ident, head, *frames = self._sock.recv_multipart()
            if self.mute:
                continue
            header = msgpack.unpackb(head, raw=False)
            if header.get("op") == "ping":
                self._send(ident, header, {"event": "result", "time": time.time()})
                continue
            if header.get("op") == "hello":
                self._send(ident, header, {"event": "result", **HELLO})
                continue
            self.received.append((header, frames))
            for item in self.handler(header, frames):
                if item[0] == "sleep":
                    self._stop.wait(item[1])
                else:
                    self._send(ident, header, *item)

    def _send(self, ident, header, fields, frames=()):
        head = msgpack.packb({"v": 1, "id": header["id"], **fields})
        self._sock.send_multipart([ident, head, *frames])

    def stop(self):
        if not self._sock.closed:
            self._stop.set()
            self._thread.join(5)
            self._sock.close(0)
            self._ctx.term()


@pytest.fixture
def server():
    srv = ProtocolServer()
    yield srv
    srv.stop()


def make_client(address, interval=0.1, timeout=3.0):
    client = Client(Transport(interval=interval, timeout=timeout))
    client.connect_to(address)
    return client


# -- heartbeat state machine --------------------------------------------------------------------
def test_heartbeat_states_with_a_fake_clock():
    hb = Heartbeat(interval=1.0, timeout=3.0)
    hb.start(0.0)
    assert hb.state == CONNECTING
    assert hb.tick(0.0) == (True, False)            # ping at once
    assert hb.tick(0.2) == (False, False)           # not again before 0.5 s while connecting
    assert hb.received(0.3) is True and hb.state == CONNECTED
    assert hb.received(0.4) is False
    assert hb.tick(0.9) == (False, False)           # connected: ping every interval
    assert hb.tick(1.0) == (True, False)
    assert hb.tick(3.5) == (True, True) and hb.state == GONE   # silent > timeout
    assert hb.tick(3.6) == (False, False)           # gone: no repeated "went silent"
    assert hb.received(4.0) is True and hb.state == CONNECTED
    assert hb.lose() is True and hb.state == GONE and hb.lose() is False


def test_heartbeat_gives_up_on_a_server_that_never_answers():
    hb = Heartbeat(interval=1.0, timeout=3.0)
    hb.start(10.0)
    assert hb.tick(12.0)[1] is False
    assert hb.tick(13.5)[1] is True and hb.state == GONE


def test_normalize_address():
    assert normalize_address(" 127.0.0.1:5555 ") == "tcp://127.0.0.1:5555"
    assert normalize_address("ipc:///tmp/x") == "ipc:///tmp/x"


# -- transport and client -----------------------------------------------------------------------
def test_connects_says_hello_and_swallows_heartbeats(server):
    client = make_client(server.address)
    states = []
    client.state_changed.connect(lambda s, d: states.append(s))
    assert wait_until(lambda: client.connected)
    assert client.info["model"]["name"] == "fake-model"
    received = []
    client.transport.message.connect(lambda h, f: received.append(h))
    wait_until(lambda: False, timeout=0.4)          # several heartbeats go by
    assert received == [] and server.received == []
    client.transport.close()


def test_buffers_travel_as_raw_frames_both_ways(server):
    pixels = bytes(range(256)) * 4                  # 16×16 rgba8
    server.handler = lambda h, f: [({"event": "result", "echo": {"frame": 1, "width": 16, "height": 16,
                                                                  "channels": 4, "format": "rgba8"},
                                     "note": "ok"}, [f[0]])]
    client = make_client(server.address)
    assert wait_until(lambda: client.connected)
    events = []
    rid = client.request("embed", {"image": Buffer(pixels, 16, 16), "steps": 5}, lambda e, m: events.append((e, m)))
    assert wait_until(lambda: events)
    header, frames = server.received[0]
    assert header["op"] == "embed" and header["id"] == rid and header["v"] == 1 and header["steps"] == 5
    assert header["image"] == {"frame": 1, "width": 16, "height": 16, "channels": 4, "format": "rgba8"}
    assert frames == [pixels]                       # no base64, no copy of the header
    event, msg = events[0]
    assert event == "result" and msg["note"] == "ok"
    assert isinstance(msg["echo"], Buffer) and msg["echo"].data == pixels
    client.transport.close()


def test_events_reach_the_callback_in_order_and_results_end_the_request(server):
    def handler(header, frames):
        yield {"event": "queued", "position": 2},
        for step in (1, 2, 3):
            yield {"event": "progress", "step": step, "total": 3, "stage": "edit"},
        yield {"event": "result", "box": [0, 0, 0, 0]},
        yield {"event": "progress", "step": 9, "total": 9},   # after the end: ignored
    server.handler = handler
    client = make_client(server.address)
    assert wait_until(lambda: client.connected)
    events = []
    client.request("edit", {"session": "s"}, lambda e, m: events.append((e, m.get("step") or m.get("position"))))
    assert wait_until(lambda: any(e == "result" for e, _ in events))
    wait_until(lambda: False, timeout=0.2)
    assert events == [("queued", 2), ("progress", 1), ("progress", 2), ("progress", 3), ("result", None)]
    client.transport.close()


def test_inconsistent_buffer_descriptors_become_an_error(server):
    server.handler = lambda h, f: [({"event": "result", "image": {"frame": 3, "width": 1, "height": 1,
                                                                   "channels": 4, "format": "rgba8"}},)]
    client = make_client(server.address)
    assert wait_until(lambda: client.connected)
    events = []
    client.request("edit", {}, lambda e, m: events.append((e, m)))
    assert wait_until(lambda: events)
    assert events[0][0] == "error" and events[0][1]["code"] == "bad_reply"
    client.transport.close()


def test_request_without_server_raises_client_error():
    with zmq.Context() as ctx:                      # a free port nobody listens on
        probe = ctx.socket(zmq.ROUTER)
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.close(0)
    client = make_client(f"tcp://127.0.0.1:{port}", timeout=0.6)
    assert client.transport.state == CONNECTING
    with pytest.raises(ClientError, match="Not connected"):
        client.request("embed", {})
    assert wait_until(lambda: client.transport.state == GONE, timeout=3)
    client.transport.close()


def test_invalid_address_is_reported_not_raised():
    transport = Transport()
    states = []
    transport.state_changed.connect(lambda s, d: states.append((s, d)))
    transport.connect_to("tcp://nonsense:port")
    assert states and states[-1][0] == "disconnected" and "cannot connect" in states[-1][1]


def test_a_silent_server_is_gone_pending_requests_fail_and_it_is_greeted_when_back(server):
    client = make_client(server.address, interval=0.1, timeout=0.5)
    assert wait_until(lambda: client.connected)
    hellos, events = [], []
    client.hello.connect(hellos.append)
    server.mute = True                              # hung: the TCP connection stays, answers stop
    client.request("edit", {}, lambda e, m: events.append((e, m)))
    assert wait_until(lambda: client.transport.state == GONE, timeout=3)
    assert events and events[0][0] == "error" and events[0][1]["code"] == "server_gone"
    assert hellos[-1] is None and not client.connected
    server.mute = False
    assert wait_until(lambda: client.connected, timeout=5)
    assert hellos[-1]["server"] == "fake" and client.transport.state == CONNECTED
    client.transport.close()


def test_curve_keys_folder_from_keygen(tmp_path):
    import zmq.auth
    (tmp_path / "client").mkdir()
    server_keys = zmq.auth.create_certificates(tmp_path, "server")
    zmq.auth.create_certificates(tmp_path / "client", "me")
    srv = ProtocolServer(curve=zmq.auth.load_certificate(server_keys[1]))
    try:
        with_keys = make_client(srv.address)
        with_keys.connect_to(srv.address, str(tmp_path))
        assert wait_until(lambda: with_keys.connected)
        without = make_client(srv.address, timeout=0.4)
        states = []
        without.state_changed.connect(lambda s, d: states.append(s))
        assert wait_until(lambda: GONE in states, timeout=3) and not without.connected
        with_keys.transport.close()
        without.transport.close()
    finally:
        srv.stop()
    broken = Transport()
    details = []
    broken.state_changed.connect(lambda s, d: details.append(d))
    broken.connect_to(srv.address, str(tmp_path / "nowhere"))
    assert "needs server.key" in details[-1]


def test_a_quick_server_restart_is_noticed_and_greeted_again(server):
    client = make_client(server.address, interval=0.1, timeout=30)   # the heartbeat alone would wait 30 s
    assert wait_until(lambda: client.connected)
    hellos, states = [], []
    client.hello.connect(hellos.append)
    client.state_changed.connect(lambda s, d: states.append((s, d)))
    port = server.port
    server.stop()
    restarted = ProtocolServer(port=port)
    try:
        assert wait_until(lambda: hellos and hellos[-1] is not None, timeout=5)
        assert states[0][0] == GONE and "lost the connection" in states[0][1]
        assert client.connected
    finally:
        restarted.stop()
        client.transport.close()


def test_event_loop_keeps_running_while_the_server_works(server):
    server.handler = lambda h, f: [("sleep", 0.6), ({"event": "result"},)]
    client = make_client(server.address)
    assert wait_until(lambda: client.connected)
    ticks, events = [], []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    started = time.monotonic()
    client.request("edit", {}, lambda e, m: events.append(e))
    call_time = time.monotonic() - started
    assert wait_until(lambda: events, timeout=3)
    timer.stop()
    assert call_time < 0.05                         # sending never waits for the server
    assert len(ticks) >= 15                         # the UI kept ticking during the 0.6 s job
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.25
    client.transport.close()
