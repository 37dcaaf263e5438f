"""Requests and their events on top of the transport (protocol v1, see docs/protocol.md).

Each request gets an id and one callback ``callback(event, msg)`` that sees ``queued`` and
``progress`` any number of times, then exactly one ``result`` or ``error``. Pixel buffers travel as
raw frames; in ``msg`` they appear as :class:`Buffer` objects in place of their descriptors.
"""

import itertools
import logging

from .qt_compat import QObject, pyqtSignal
from .transport import CONNECTED, DISCONNECTED, GONE, PROTOCOL_VERSION, Transport

log = logging.getLogger(__name__)

CHANNELS = {"rgba8": 4, "rgb8": 3, "label8": 1}
FINAL_EVENTS = ("result", "error")


class ClientError(Exception):
    """A request that could not even be sent (no server connection)."""


class Buffer:
    """A raw pixel buffer and its shape; ``data`` is bytes in the order its ``format`` names."""

    __slots__ = ("data", "width", "height", "format")

    def __init__(self, data, width: int, height: int, format: str = "rgba8"):
        if format not in CHANNELS:
            raise ValueError(f"unknown buffer format {format!r}")
        if len(data) != width * height * CHANNELS[format]:
            raise ValueError(f"{format} buffer of {len(data)} bytes is not {width}×{height}")
        self.data, self.width, self.height, self.format = data, width, height, format

    def descriptor(self, frame: int) -> dict:
        return {"frame": frame, "width": self.width, "height": self.height,
                "channels": CHANNELS[self.format], "format": self.format}


def encode(fields: dict):
    """Header fields with :class:`Buffer` values → (header fields with descriptors, frames)."""
    header, frames = {}, []
    for key, value in fields.items():
        if isinstance(value, Buffer):
            frames.append(value.data)
            header[key] = value.descriptor(len(frames))
        else:
            header[key] = value
    return header, frames


def decode(header: dict, frames) -> dict:
    """Replace buffer descriptors by :class:`Buffer` objects; ValueError on inconsistent frames."""
    msg = dict(header)
    for key, value in header.items():
        if isinstance(value, dict) and "frame" in value and "format" in value:
            index = value["frame"]
            if not isinstance(index, int) or not 1 <= index <= len(frames):
                raise ValueError(f"{key!r} names frame {index!r} but the message has {len(frames)}")
            msg[key] = Buffer(frames[index - 1], int(value["width"]), int(value["height"]), value["format"])
    return msg


class Client(QObject):
    """Request ids, callbacks per event, ``hello`` on every (re)connection."""

    state_changed = pyqtSignal(str, str)
    hello = pyqtSignal(object)      # the hello result, or None when the server is gone

    def __init__(self, transport: Transport = None, parent=None):
        super().__init__(parent)
        self.transport = transport or Transport(parent=self)
        self.info = None
        self._pending = {}
        self._ids = itertools.count(1)
        self.transport.message.connect(self._on_message)
        self.transport.state_changed.connect(self._on_state)

    @property
    def connected(self) -> bool:
        return self.transport.state == CONNECTED and self.info is not None

    def connect_to(self, address: str, keys: str = "") -> None:
        self._fail_pending("disconnected", "Disconnected from the server.")
        self.info = None
        self.transport.connect_to(address, keys)

    def request(self, op: str, fields: dict = None, callback=None) -> str:
        """Send ``op``; returns its id. Raises :class:`ClientError` when it cannot be sent."""
        request_id = f"r{next(self._ids)}"
        header, frames = encode(fields or {})
        if not self.transport.send({**header, "id": request_id, "op": op}, frames):
            raise ClientError(f"Not connected to the EditGAN server ({self.transport.address}). "
                              "Start it with `editgan-server` or check the address.")
        self._pending[request_id] = callback
        return request_id

    def cancel(self, request_id: str) -> None:
        if request_id in self._pending:
            try:
                self.request("cancel", {"target": request_id})
            except ClientError:
                pass  # the server is gone: the pending request fails on its own

    def _on_message(self, header: dict, frames) -> None:
        request_id, event = header.get("id"), header.get("event")
        if request_id not in self._pending:
            log.debug("ignoring %s for unknown request %r", event, request_id)
            return
        try:
            msg = decode(header, frames)
        except ValueError as e:
            event, msg = "error", {"code": "bad_reply", "message": f"Malformed reply from the server: {e}"}
        callback = self._pending.pop(request_id) if event in FINAL_EVENTS else self._pending[request_id]
        if callback is not None:
            callback(event, msg)

    def _on_state(self, state: str, detail: str) -> None:
        if state == CONNECTED:
            self._send_hello()
        elif state in (GONE, DISCONNECTED):
            self.info = None
            self._fail_pending("server_gone", "The EditGAN server stopped answering.")
            self.hello.emit(None)
        self.state_changed.emit(state, detail)

    def _send_hello(self) -> None:
        def on_hello(event, msg):
            if event == "result" and msg.get("protocol") == PROTOCOL_VERSION:
                self.info = msg
                self.hello.emit(msg)
            else:
                detail = msg.get("message") or f"server speaks protocol {msg.get('protocol')!r}"
                self.state_changed.emit("incompatible", f"Incompatible server: {detail}")
        try:
            self.request("hello", {"client": "editgan-krita"}, on_hello)
        except ClientError:
            log.debug("hello could not be sent yet")

    def _fail_pending(self, code: str, message: str) -> None:
        pending, self._pending = self._pending, {}
        for callback in pending.values():
            if callback is not None:
                callback("error", {"code": code, "message": message})
