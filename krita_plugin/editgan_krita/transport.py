"""A ZeroMQ DEALER socket driven by Qt's event loop, with a heartbeat.

Krita's GUI thread must never block, so the socket is non-blocking and a ``QSocketNotifier`` on
``zmq.FD`` wakes us up. That FD is edge-triggered: on every wake-up (and once after every send,
because a send can swallow the edge) we drain while ``EVENTS & POLLIN``.

``ZMQ_IMMEDIATE`` makes sends fail fast while no server is connected instead of queueing stale
requests for a server that may come back as a different process. When a connected server goes
silent the socket is replaced, dropping anything still queued; ZeroMQ then keeps reconnecting on
its own and the heartbeat notices when the server is back.
"""

import itertools
import logging
import time
from pathlib import Path

import msgpack
import zmq

from .qt_compat import NOTIFIER_READ, QObject, QSocketNotifier, QTimer, pyqtSignal

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
CONNECTING, CONNECTED, GONE, DISCONNECTED = "connecting", "connected", "server_gone", "disconnected"
HEARTBEAT_PREFIX = "hb-"


def load_curve_keys(folder: str):
    """(server public, client public, client secret) from a keys folder made by
    ``editgan-server keygen``: the keygen folder itself, or a copy of ``server.key`` plus the
    ``client/`` key pair."""
    from zmq.auth import load_certificate
    root = Path(folder).expanduser()
    server = root / "server.key"
    secrets = [p for d in (root, root / "client") if d.is_dir() for p in sorted(d.glob("*.key_secret"))
               if p.name != "server.key_secret"]
    if not server.is_file() or not secrets:
        raise ValueError(f"{root} needs server.key and a client *.key_secret (from `editgan-server keygen`)")
    server_public, _ = load_certificate(server)
    public, secret = load_certificate(secrets[0])
    return server_public, public, secret


def normalize_address(address: str) -> str:
    """``host:port`` → ``tcp://host:port``; full ZeroMQ endpoints pass through."""
    address = address.strip()
    return address if "://" in address else f"tcp://{address}"


class Heartbeat:
    """The connection state machine, free of sockets and Qt so it can be tested with a fake clock.

    connecting ─reply→ connected ─silence > timeout→ server_gone ─reply→ connected.
    A connection that never answered also ends in server_gone after ``timeout``.
    """

    def __init__(self, interval: float = 2.0, timeout: float = 7.0):
        self.interval, self.timeout = interval, timeout
        self.state = DISCONNECTED
        self._last_rx = self._last_ping = self._since = 0.0

    def start(self, now: float) -> None:
        self.state, self._since, self._last_ping = CONNECTING, now, float("-inf")

    def received(self, now: float) -> bool:
        """A message arrived; True when this changed the state (to connected)."""
        self._last_rx = now
        changed = self.state != CONNECTED
        self.state = CONNECTED
        return changed

    def lose(self) -> bool:
        """The connection dropped (ZeroMQ saw it): gone at once, no need to wait for the timeout."""
        if self.state != CONNECTED:
            return False
        self.state = GONE
        return True

    def tick(self, now: float) -> tuple:
        """(send a ping?, the server just went silent?) for this moment."""
        went_silent = False
        if self.state == CONNECTED and now - self._last_rx > self.timeout:
            self.state, went_silent = GONE, True
        elif self.state == CONNECTING and now - self._since > self.timeout:
            self.state, went_silent = GONE, True
        interval = self.interval if self.state == CONNECTED else min(self.interval, 0.5)
        ping = self.state != DISCONNECTED and now - self._last_ping >= interval
        if ping:
            self._last_ping = now
        return ping, went_silent


class Transport(QObject):
    """Sends msgpack header + raw frames; emits every non-heartbeat message and state changes."""

    message = pyqtSignal(object, object)       # header dict, list of binary frames
    state_changed = pyqtSignal(str, str)       # state, human detail

    def __init__(self, interval: float = 2.0, timeout: float = 7.0, clock=time.monotonic, parent=None):
        super().__init__(parent)
        self._clock = clock
        self.heartbeat = Heartbeat(interval, timeout)
        self.address = self._curve = None
        self._socket = self._notifier = self._monitor = None
        self._ids = itertools.count(1)
        self._timer = QTimer(self)
        self._timer.setInterval(int(min(interval, 0.5) * 1000))
        self._timer.timeout.connect(self._tick)

    @property
    def state(self) -> str:
        return self.heartbeat.state

    def connect_to(self, address: str, keys: str = "") -> None:
        """Connect to ``address``; ``keys`` names a CURVE keys folder (needed by remote servers)."""
        self.close()
        self.address = normalize_address(address)
        try:
            self._curve = load_curve_keys(keys) if keys else None
            self._open()
        except (zmq.ZMQError, ValueError, OSError) as e:
            self.address = None
            self.state_changed.emit(DISCONNECTED, f"cannot connect to {address!r}: {e}")
            return
        self.heartbeat.start(self._clock())
        self.state_changed.emit(CONNECTING, f"connecting to {self.address}…")
        self._timer.start()
        self._tick()

    def close(self) -> None:
        self._timer.stop()
        self._close_socket()
        if self.heartbeat.state != DISCONNECTED:
            self.heartbeat.state = DISCONNECTED
            self.state_changed.emit(DISCONNECTED, "disconnected")

    def send(self, header: dict, frames=()) -> bool:
        """Queue one message; False when no server connection can take it right now."""
        if self._socket is None:
            return False
        parts = [msgpack.packb({"v": PROTOCOL_VERSION, **header}, use_bin_type=True), *frames]
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        QTimer.singleShot(0, self._drain)
        return True

    def _open(self) -> None:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self._curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._curve
        try:
            sock.connect(self.address)
        except zmq.ZMQError:
            sock.close()
            raise
        self._socket = sock
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._notifier = QSocketNotifier(sock.getsockopt(zmq.FD), NOTIFIER_READ, self)
        self._notifier.activated.connect(self._on_readable)

    def _close_socket(self) -> None:
        if self._notifier is not None:
            self._notifier.setEnabled(False)
            self._notifier.deleteLater()
            self._notifier = None
        if self._monitor is not None:
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _on_readable(self, *_):
        self._notifier.setEnabled(False)
        try:
            self._drain()
        finally:
            if self._notifier is not None:
                self._notifier.setEnabled(True)

    def _drain(self) -> None:
        sock = self._socket
        while sock is not None and sock is self._socket and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            self._receive(frames)

    def _receive(self, frames) -> None:
        if self.heartbeat.received(self._clock()):
            self.state_changed.emit(CONNECTED, f"connected to {self.address}")
        try:
            header = msgpack.unpackb(frames[0], raw=False)
        except Exception as e:  # a broken server must not break Krita
            log.warning("dropping an undecodable message: %s", e)
            return
        if not isinstance(header, dict):
            log.warning("dropping a message whose header is not a map")
        elif not str(header.get("id", "")).startswith(HEARTBEAT_PREFIX):
            self.message.emit(header, frames[1:])

    def _peer_lost(self) -> bool:
        """Whether ZeroMQ saw the connection drop since the last look: a server that exits or
        restarts is noticed at once (a restart would otherwise go unseen and skip ``hello``)."""
        lost = False
        while self._monitor is not None and self._monitor.poll(0):
            self._monitor.recv_multipart()
            lost = True
        return lost

    def _tick(self) -> None:
        lost = self._peer_lost() and self.heartbeat.lose()
        ping, went_silent = self.heartbeat.tick(self._clock())
        if lost or went_silent:
            log.info("server at %s %s: reconnecting", self.address, "lost" if lost else "silent")
            self._close_socket()
            self._open()
            hint = " (check the CURVE keys)" if self._curve else ""
            self.state_changed.emit(GONE, f"lost the connection to {self.address}; reconnecting…" if lost
                                    else f"no answer from {self.address}{hint}; retrying…")
        if ping:
            self.send({"id": f"{HEARTBEAT_PREFIX}{next(self._ids)}", "op": "ping"})
