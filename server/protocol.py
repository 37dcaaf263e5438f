"""Wire format of docs/protocol.md: framing, limits, field validation, buffer codecs, palette snapping.

Pure functions on bytes/numpy; no sockets, no threads, no torch. Every failure is a
:class:`ProtocolError` carrying a stable error code and a human message.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
MiB = 1 << 20

ERROR_CODES = frozenset({
    "bad_request", "unsupported_version", "unknown_op", "too_large", "invalid_image", "unknown_session",
    "unknown_preset", "unknown_class", "no_change", "no_edit", "no_segmenter", "cancelled", "busy",
    "internal",
})

# bytes per pixel of each buffer format
FORMATS = {"rgba8": 4, "rgb8": 3, "label8": 1}
MAX_ID_CHARS = 64
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 256
MAX_PAYLOAD_BYTES = 4096


@dataclass(frozen=True)
class Limits:
    """Hard limits; all are announced to clients in ``hello`` (``limits``)."""

    # one full-size rgba8 buffer of max_side² plus room for the header frame
    max_message_bytes: int = 256 * MiB + 1 * MiB
    max_side: int = 8192
    min_side: int = 8              # smallest image side the engine embeds (editgan.editor.MIN_SIDE)
    max_steps: int = 1000
    max_refine_steps: int = 100
    max_strength: float = 10.0
    max_presets: int = 16          # presets composed in one apply_preset
    max_preset_faces: int = 8      # sessions one save_preset fits its vector to (one batch: memory ~ K edit steps)
    max_frames: int = 8            # frames per message, header included
    max_header_bytes: int = 64 * 1024
    max_queue_per_client: int = 8  # queued + running jobs of one client
    max_queue_total: int = 64
    max_queued_bytes: int = 1024 * MiB  # request bytes held by queued jobs (one job is always accepted)

    def to_dict(self) -> dict:
        return asdict(self)


class ProtocolError(Exception):
    """A request that cannot be served; becomes an ``error`` event ``{code, message}``."""

    def __init__(self, code: str, message: str, rid: str | None = None):
        assert code in ERROR_CODES, code
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.rid = code, message, rid


def _nbytes(frame) -> int:
    return frame.buffer.nbytes if hasattr(frame, "buffer") else len(frame)


def _view(frame) -> memoryview:
    return frame.buffer if hasattr(frame, "buffer") else memoryview(frame)


def unpack_header(data: bytes, limits: Limits) -> dict:
    if len(data) > limits.max_header_bytes:
        raise ProtocolError("too_large", f"header frame is {len(data)} bytes (limit {limits.max_header_bytes})")
    try:
        header = msgpack.unpackb(data, raw=False, strict_map_key=True, max_ext_len=0,
                                 max_str_len=limits.max_header_bytes, max_bin_len=limits.max_header_bytes,
                                 max_array_len=4096, max_map_len=256)
    except Exception as e:  # any malformed/truncated/over-deep msgpack
        raise ProtocolError("bad_request", f"header frame is not valid msgpack ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_request", f"header must be a msgpack map, got {type(header).__name__}")
    return header


@dataclass(frozen=True)
class Buffer:
    """A validated pixel buffer: ``data`` has exactly width·height·channels bytes."""

    frame: int
    width: int
    height: int
    format: str
    data: memoryview

    def array(self) -> np.ndarray:
        """(H, W, C) uint8 view for rgba8/rgb8, (H, W) for label8 (read-only, zero copy)."""
        a = np.frombuffer(self.data, dtype=np.uint8)
        c = FORMATS[self.format]
        return a.reshape(self.height, self.width) if c == 1 else a.reshape(self.height, self.width, c)


class Request:
    """One client request: validated envelope (``v``, ``id``, ``op``) + typed field accessors."""

    def __init__(self, header: dict, frames: list, limits: Limits):
        self.header, self.frames, self.limits = header, frames, limits
        self.nbytes = sum(_nbytes(f) for f in frames)
        rid = header.get("id")
        self.id = rid if isinstance(rid, str) and 0 < len(rid) <= MAX_ID_CHARS else None
        if self.id is None:
            raise ProtocolError("bad_request", f"'id' must be a string of 1..{MAX_ID_CHARS} characters")
        v = header.get("v")
        if type(v) is not int:
            raise ProtocolError("bad_request", "'v' (protocol version) must be an integer", self.id)
        if v != PROTOCOL_VERSION:
            raise ProtocolError("unsupported_version", f"protocol version {v} is not supported "
                                f"(this server speaks {PROTOCOL_VERSION})", self.id)
        op = header.get("op")
        if not isinstance(op, str) or not 0 < len(op) <= MAX_NAME_CHARS:
            raise ProtocolError("bad_request", "'op' must be a non-empty string", self.id)
        self.op = op
        self._used: set[int] = set()

    def error(self, code: str, message: str) -> ProtocolError:
        return ProtocolError(code, message, self.id)

    # -- typed fields -------------------------------------------------------------------------
    def _get(self, name: str, default: Any, required: bool) -> Any:
        if name not in self.header or self.header[name] is None:
            if required:
                raise self.error("bad_request", f"missing field '{name}'")
            return default
        return self.header[name]

    def string(self, name: str, *, required: bool = True, default: str | None = None,
               max_len: int = MAX_NAME_CHARS) -> str | None:
        value = self._get(name, default, required)
        if value is default and not required:
            return value
        if not isinstance(value, str) or not 0 < len(value) <= max_len:
            raise self.error("bad_request", f"'{name}' must be a string of 1..{max_len} characters")
        return value

    def integer(self, name: str, lo: int, hi: int, *, default: int | None = None, required: bool = False) -> int:
        value = self._get(name, default, required)
        if type(value) is not int or not lo <= value <= hi:
            raise self.error("bad_request", f"'{name}' must be an integer in {lo}..{hi}")
        return value

    def number(self, name: str, lo: float, hi: float, *, default: float | None = None, required: bool = False) -> float:
        value = self._get(name, default, required)
        return check_number(value, name, lo, hi, self.id)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self._get(name, default, False)
        if type(value) is not bool:
            raise self.error("bad_request", f"'{name}' must be true or false")
        return value

    def buffer(self, name: str, formats: tuple[str, ...], *, required: bool = True) -> Buffer | None:
        desc = self._get(name, None, required)
        if desc is None:
            return None
        return self.parse_buffer(desc, name, formats)

    def parse_buffer(self, desc: Any, name: str, formats: tuple[str, ...]) -> Buffer:
        if not isinstance(desc, dict):
            raise self.error("bad_request", f"'{name}' must be a buffer descriptor map "
                             "{frame, width, height, format}")
        fmt = desc.get("format")
        if fmt not in formats:
            raise self.error("invalid_image", f"'{name}.format' must be one of {', '.join(formats)}")
        frame = desc.get("frame")
        if type(frame) is not int or not 1 <= frame < len(self.frames):
            raise self.error("bad_request", f"'{name}.frame' must be a frame index in 1..{len(self.frames) - 1}")
        if frame in self._used:
            raise self.error("bad_request", f"'{name}.frame' {frame} is already used by another buffer")
        w, h = desc.get("width"), desc.get("height")
        for key, value in (("width", w), ("height", h)):
            if type(value) is not int or value < 1:
                raise self.error("invalid_image", f"'{name}.{key}' must be a positive integer")
            if value > self.limits.max_side:
                raise self.error("too_large", f"'{name}.{key}' is {value} (limit {self.limits.max_side})")
        channels = FORMATS[fmt]
        if "channels" in desc and desc["channels"] != channels:
            raise self.error("invalid_image", f"'{name}.channels' must be {channels} for {fmt}")
        expected, got = w * h * channels, _nbytes(self.frames[frame])
        if got != expected:
            raise self.error("invalid_image", f"'{name}': frame {frame} has {got} bytes, "
                             f"expected {w}x{h}x{channels} = {expected}")
        self._used.add(frame)
        return Buffer(frame, w, h, fmt, _view(self.frames[frame]))

    def check_all_frames_used(self) -> None:
        unused = set(range(1, len(self.frames))) - self._used
        if unused:
            raise self.error("bad_request", f"frame(s) {sorted(unused)} not referenced by any field")


def check_number(value: Any, name: str, lo: float, hi: float, rid: str | None = None) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
        raise ProtocolError("bad_request", f"'{name}' must be a finite number in [{lo}, {hi}]", rid)
    return float(value)


def parse_request(frames: list, limits: Limits) -> Request:
    """Envelope checks shared by every op; field checks are done by each op's handler."""
    if not frames:
        raise ProtocolError("bad_request", "empty message")
    header = unpack_header(bytes(_view(frames[0])), limits)
    rid = header.get("id") if isinstance(header.get("id"), str) and 0 < len(header["id"]) <= MAX_ID_CHARS else None
    if len(frames) > limits.max_frames:
        raise ProtocolError("bad_request", f"{len(frames)} frames (limit {limits.max_frames})", rid)
    total = sum(_nbytes(f) for f in frames)
    if total > limits.max_message_bytes:
        raise ProtocolError("too_large", f"message is {total} bytes (limit {limits.max_message_bytes})", rid)
    return Request(header, frames, limits)


# -- encoding ---------------------------------------------------------------------------------
def plain(obj: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and dataclass-ish values into msgpack-safe plain data."""
    if obj is None or isinstance(obj, (bool, int, str, bytes)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return plain(obj.to_dict())
    return str(obj)


def encode_event(rid: str | None, event: str, fields: dict | None = None,
                 buffers: dict[str, np.ndarray] | None = None) -> list:
    """Header frame + one frame per buffer; ``buffers`` maps a field name to a uint8 array of shape
    (H, W, 4) rgba8, (H, W, 3) rgb8 or (H, W) label8, or to a received :class:`Buffer` (echoed)."""
    header = {"v": PROTOCOL_VERSION, "id": rid, "event": event}
    header.update(plain(fields or {}))
    out = [None]
    for name, arr in (buffers or {}).items():
        if isinstance(arr, Buffer):
            header[name] = {"frame": len(out), "width": arr.width, "height": arr.height, "format": arr.format,
                            "channels": FORMATS[arr.format]}
            out.append(arr.data)
            continue
        arr = np.ascontiguousarray(arr, dtype=np.uint8)
        c = 1 if arr.ndim == 2 else arr.shape[2]
        fmt = {1: "label8", 3: "rgb8", 4: "rgba8"}[c]
        header[name] = {"frame": len(out), "width": int(arr.shape[1]), "height": int(arr.shape[0]),
                        "format": fmt, "channels": c}
        out.append(arr.data)
    out[0] = msgpack.packb(header, use_bin_type=True)
    return out


def error_frames(rid: str | None, code: str, message: str) -> list:
    return encode_event(rid, "error", {"code": code, "message": message[:1000]})


# -- pixel codecs -----------------------------------------------------------------------------
def to_rgb(buf: Buffer) -> np.ndarray:
    """rgba8/rgb8 buffer → (H, W, 3) uint8 copy (alpha ignored)."""
    if buf.format not in ("rgba8", "rgb8"):
        raise ProtocolError("invalid_image", f"expected an rgba8 or rgb8 image, got {buf.format}")
    return np.ascontiguousarray(buf.array()[..., :3])


def to_rgba(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 → (H, W, 4) with alpha 255."""
    out = np.empty(rgb.shape[:2] + (4,), np.uint8)
    out[..., :3] = rgb
    out[..., 3] = 255
    return out


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class ids → (H, W, 4) palette-coloured rgba8, alpha 255."""
    lut = np.concatenate([np.asarray(palette, np.uint8), np.full((len(palette), 1), 255, np.uint8)], axis=1)
    return lut[labels]


def snap_to_palette(rgb: np.ndarray, palette: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Nearest palette colour (squared RGB distance; ties → lower class id) per pixel → (H, W) uint8 ids.

    Vectorized in row chunks so memory stays ~chunk·classes·4 bytes whatever the image size.
    """
    pal = np.asarray(palette, np.int32)  # (K, 3)
    flat = rgb.reshape(-1, 3)
    out = np.empty(flat.shape[0], np.uint8)
    for start in range(0, flat.shape[0], chunk):
        px = flat[start:start + chunk].astype(np.int32)
        d = np.zeros((px.shape[0], pal.shape[0]), np.int32)
        for c in range(3):
            diff = px[:, c:c + 1] - pal[None, :, c]
            d += diff * diff
        out[start:start + chunk] = d.argmin(axis=1)
    return out.reshape(rgb.shape[:2])


def segmentation_to_labels(buf: Buffer, source_labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The user's painted segmentation layer → class ids at source size.

    rgba8: alpha < 128 → "unchanged" (the session's ``source_labels``), else the nearest palette colour.
    rgb8: every pixel snapped. label8: class ids as they are (checked against the class count).
    """
    h, w = source_labels.shape
    if (buf.height, buf.width) != (h, w):
        raise ProtocolError("invalid_image", f"segmentation is {buf.width}x{buf.height} but the session's "
                            f"source image is {w}x{h}")
    arr = buf.array()
    if buf.format == "label8":
        if arr.size and int(arr.max()) >= len(palette):
            raise ProtocolError("unknown_class", f"class id {int(arr.max())} >= number of classes {len(palette)}")
        return arr.copy()
    labels = snap_to_palette(arr[..., :3], palette)
    if buf.format == "rgba8":
        keep = arr[..., 3] < 128
        labels[keep] = source_labels[keep]
    return labels
