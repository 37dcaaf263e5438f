"""A small synchronous client for ``editgan-server`` (docs/protocol.md), plus ``editgan remote-edit``.

Needs only pyzmq, msgpack and numpy (no torch)::

    with EditGANClient("tcp://127.0.0.1:5555", timeout=60) as c:
        info = c.hello()
        emb = c.embed(rgba_array)                       # (H, W, 4) or (H, W, 3) uint8, or bytes + w, h
        res = c.apply_presets(emb["session"], [("smile", 1.0)], refine_steps=10)
        x, y, w, h = res["box"]; patch = res["image"]   # (h, w, 4) uint8, alpha 255

Buffers in results come back as read-only numpy arrays. Failures raise :class:`ClientError`
(``.code`` is the protocol error code; ``"timeout"`` when nothing arrived in ``timeout`` seconds).
One client per thread: ZeroMQ sockets are not thread-safe.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections import deque
from typing import Any, Callable

import msgpack
import numpy as np
import zmq

PROTOCOL_VERSION = 1
_FORMATS = {"rgba8": 4, "rgb8": 3, "label8": 1}


class ClientError(Exception):
    def __init__(self, code: str, message: str, rid: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.rid = code, message, rid


def _descriptor(data, width, height, frame: int) -> tuple[dict, Any]:
    """(descriptor, frame payload) for a numpy image/labels array or raw bytes of a given size."""
    if isinstance(data, np.ndarray):
        arr = np.ascontiguousarray(data, dtype=np.uint8)
        if arr.ndim == 2:
            fmt = "label8"
        elif arr.ndim == 3 and arr.shape[2] in (3, 4):
            fmt = "rgb8" if arr.shape[2] == 3 else "rgba8"
        else:
            raise ValueError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
        height, width = arr.shape[:2]
        payload = arr.data
    else:
        if width is None or height is None:
            raise ValueError("raw bytes need width and height")
        payload = memoryview(data)
        per_px = payload.nbytes / (width * height)
        fmt = {4: "rgba8", 3: "rgb8", 1: "label8"}.get(per_px)
        if fmt is None:
            raise ValueError(f"{payload.nbytes} bytes is not {width}x{height} x 1, 3 or 4 channels")
    return {"frame": frame, "width": int(width), "height": int(height), "format": fmt,
            "channels": _FORMATS[fmt]}, payload


def decode_event(frames: list[bytes]) -> dict:
    """Header map with every buffer descriptor replaced by a numpy array."""
    event = msgpack.unpackb(frames[0], raw=False)
    for key, value in list(event.items()):
        if isinstance(value, dict) and {"frame", "width", "height", "format"} <= value.keys():
            data = np.frombuffer(frames[value["frame"]], np.uint8)
            c = _FORMATS[value["format"]]
            shape = (value["height"], value["width"]) + (() if c == 1 else (c,))
            event[key] = data.reshape(shape)
    return event


def _curve_keys(server_key, client_key) -> tuple[bytes, bytes, bytes] | None:
    """(server public, client public, client secret) for CURVE, or None when neither key is given."""
    if server_key is None and client_key is None:
        return None
    import zmq.auth as zmq_auth
    if server_key is None or client_key is None:
        raise ValueError("CURVE needs both server_key and client_key")
    if not isinstance(server_key, bytes):
        server_key, _ = zmq_auth.load_certificate(server_key)
    public, secret = zmq_auth.load_certificate(client_key)
    if not secret:
        raise ValueError(f"{client_key}: no secret key in this file")
    return server_key, public, secret


class EditGANClient:
    def __init__(self, address: str = "tcp://127.0.0.1:5555", timeout: float | None = 120.0, *,
                 server_key: str | os.PathLike | bytes | None = None,
                 client_key: str | os.PathLike | None = None):
        """``timeout``: seconds to wait for the next event of a request (None = forever).
        CURVE: ``server_key`` = the server's public key (``server.key`` file or z85 bytes),
        ``client_key`` = this client's ``*.key_secret`` file."""
        self.address, self.timeout = address, timeout
        curve = _curve_keys(server_key, client_key)  # before any socket exists: a bad key leaks nothing
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            self._sock.curve_serverkey, self._sock.curve_publickey, self._sock.curve_secretkey = curve
        self._sock.connect(address)
        self._ids = itertools.count()
        self._prefix = os.urandom(4).hex()
        self._open: dict[str, deque] = {}  # request id -> events received but not yet consumed

    def close(self) -> None:
        self._sock.close(0)
        self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- transport ----------------------------------------------------------------------------------
    def submit(self, op: str, fields: dict | None = None, buffers: dict | None = None) -> str:
        """Send a request without waiting; returns its id. ``buffers``: {field: array | (bytes, w, h)}.
        Buffers are sent without copying: do not modify them until the request has been answered."""
        rid = f"{self._prefix}-{next(self._ids)}"
        header = {"v": PROTOCOL_VERSION, "id": rid, "op": op, **(fields or {})}
        frames: list = [None]
        for name, value in (buffers or {}).items():
            data, w, h = value if isinstance(value, tuple) else (value, None, None)
            header[name], payload = _descriptor(data, w, h, len(frames))
            frames.append(payload)
        frames[0] = msgpack.packb(header, use_bin_type=True)
        self._open[rid] = deque()
        self._sock.send_multipart(frames, copy=len(frames) == 1)
        return rid

    def _pump(self, timeout: float | None) -> bool:
        """Receive one message into its request's queue; False on timeout."""
        if not self._sock.poll(None if timeout is None else max(0, int(timeout * 1000))):
            return False
        frames = self._sock.recv_multipart()
        try:
            event = decode_event(frames)
        except Exception:
            return True  # not ours to understand; ignore
        queue = self._open.get(event.get("id"))
        if queue is not None:
            queue.append(event)
        return True

    def next_event(self, rid: str, timeout: float | None = -1) -> dict:
        """The next event of request ``rid`` (any kind; nothing raised for ``error``); ClientError
        ``timeout`` when none arrives within ``timeout`` seconds (-1: the client default)."""
        timeout = self.timeout if timeout == -1 else timeout
        queue = self._open.get(rid)
        if queue is None:
            raise ClientError("unknown_request", f"request {rid} has ended, timed out or is not this client's", rid)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not queue:
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or not self._pump(remaining):
                self._open.pop(rid, None)  # given up: its late events are dropped, not kept forever
                raise ClientError("timeout", f"no reply to request {rid} within {timeout}s from {self.address}", rid)
        event = queue.popleft()
        if event.get("event") in ("result", "error"):
            self._open.pop(rid, None)
        return event

    def wait(self, rid: str, progress: Callable[[dict], None] | None = None, timeout: float | None = -1) -> dict:
        """Events of ``rid`` until its ``result`` (returned) or ``error`` (raised as ClientError).
        ``queued`` and ``progress`` events go to ``progress(event)``; ``timeout`` bounds the wait
        for each event (-1: the client default, None: forever)."""
        while True:
            event = self.next_event(rid, timeout)
            kind = event.get("event")
            if kind == "result":
                return event
            if kind == "error":
                raise ClientError(event.get("code", "?"), event.get("message", ""), rid)
            if progress is not None:
                progress(event)

    def request(self, op: str, fields: dict | None = None, buffers: dict | None = None, *,
                progress: Callable[[dict], None] | None = None, timeout: float | None = -1) -> dict:
        return self.wait(self.submit(op, fields, buffers), progress, timeout)

    # -- ops ----------------------------------------------------------------------------------------
    def hello(self, client: str = "editgan.client") -> dict:
        return self.request("hello", {"client": client})

    def ping(self, payload: str | bytes | None = None) -> dict:
        return self.request("ping", {} if payload is None else {"payload": payload})

    def echo(self, image=None, width: int | None = None, height: int | None = None) -> dict:
        return self.request("echo", buffers={} if image is None else {"image": (image, width, height)})

    def embed(self, image, width: int | None = None, height: int | None = None, *, steps: int | None = None,
              progress=None, preview: bool = False) -> dict:
        fields = {"preview": preview, **({} if steps is None else {"steps": steps})}
        return self.request("embed", fields, {"image": (image, width, height)}, progress=progress)

    def edit(self, session: str, segmentation, width: int | None = None, height: int | None = None, *,
             steps: int | None = None, from_presets: bool = True, part_colours: dict | None = None,
             progress=None, preview: bool = False) -> dict:
        """``part_colours``: {class name: (r, g, b)}, how the parts painted with those classes should look."""
        fields = {"session": session, "preview": preview, "from_presets": from_presets,
                  **({} if steps is None else {"steps": steps}),
                  **({"part_colours": {k: [int(v) for v in rgb] for k, rgb in part_colours.items()}}
                     if part_colours else {})}
        return self.request("edit", fields, {"segmentation": (segmentation, width, height)}, progress=progress)

    def apply_presets(self, session: str, presets, *, refine_steps: int = 0, progress=None,
                      preview: bool = False) -> dict:
        """``presets``: [(name, strength)], [{name, strength}] or {name: strength}; strength None = default."""
        items = presets.items() if isinstance(presets, dict) else presets
        items = [p if isinstance(p, dict) else {"name": p[0], "strength": p[1]} for p in items]
        return self.request("apply_preset", {"session": session, "presets": items, "refine_steps": refine_steps,
                                             "preview": preview}, progress=progress)

    def save_preset(self, session: str, name: str, default_strength: float | None = None, *,
                    more_sessions=(), steps: int | None = None, progress=None) -> dict:
        """Store the session's last edit; with ``more_sessions``, fit one vector to all their painted edits."""
        fields = {"session": session, "name": name}
        if default_strength is not None:
            fields["default_strength"] = default_strength
        if more_sessions:
            fields["more_sessions"] = list(more_sessions)
        if steps is not None:
            fields["steps"] = steps
        return self.request("save_preset", fields, progress=progress)

    def delete_preset(self, name: str) -> dict:
        return self.request("delete_preset", {"name": name})

    def list_presets(self) -> list[dict]:
        return self.request("list_presets")["presets"]

    def cancel(self, target: str) -> bool:
        return bool(self.request("cancel", {"target": target})["cancelled"])

    def close_session(self, session: str) -> bool:
        return bool(self.request("close_session", {"session": session})["closed"])


def composite(source: np.ndarray, result: dict) -> np.ndarray:
    """Paste an edit result's cropped patch into a copy of the full source (keeps the source alpha)."""
    out = np.array(source, copy=True)
    x, y, w, h = result["box"]
    if w and h:
        out[y:y + h, x:x + w, :3] = result["image"][..., :3]
    return out


# -- `editgan remote-edit` ----------------------------------------------------------------------------
def register(subparsers) -> None:
    p = subparsers.add_parser("remote-edit", help="edit an image through a running editgan-server")
    p.add_argument("--server", default="tcp://127.0.0.1:5555")
    p.add_argument("--image", required=True, help="input picture (PNG, any size)")
    p.add_argument("--preset", action="append", default=[], metavar="NAME[:STRENGTH]",
                   help="apply a preset (repeat to compose several)")
    p.add_argument("--strength", type=float, default=None, help="strength for presets given without one")
    p.add_argument("--refine-steps", type=int, default=0)
    p.add_argument("--segmentation", default=None, help="edited segmentation PNG (palette colours, image size; "
                   "transparent pixels = unchanged)")
    p.add_argument("--part-colour", action="append", default=[], type=_parse_part_colour, metavar="CLASS=#RRGGBB",
                   help="how the parts painted with CLASS should look (with --segmentation; repeat per class)")
    p.add_argument("--steps", type=int, default=None, help="edit steps (server default 30)")
    p.add_argument("--embed-steps", type=int, default=None, help="embedding steps (server default 100)")
    p.add_argument("--out", default=None, help="where to write the edited picture")
    p.add_argument("--analyze-out", default=None, help="write the predicted segmentation PNG here (to paint on)")
    p.add_argument("--save-preset", default=None, metavar="NAME", help="store this edit as a preset")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--server-key", default=None, help="CURVE: the server's public key file (server.key)")
    p.add_argument("--client-key", default=None, help="CURVE: this client's secret key file (client.key_secret)")
    p.set_defaults(func=cmd_remote_edit)


def _parse_part_colour(text: str) -> tuple[str, tuple[int, int, int]]:
    """``glasses=#c8a040`` → ("glasses", (200, 160, 64))."""
    name, _, colour = text.partition("=")
    digits = colour.strip().lstrip("#")
    if not name or len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise argparse.ArgumentTypeError(f"expected CLASS=#RRGGBB, got {text!r}")
    return name, tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))


def _parse_preset(text: str, default: float | None):
    name, _, strength = text.partition(":")
    return {"name": name, "strength": float(strength) if strength else default}


def cmd_remote_edit(args) -> int:
    from PIL import Image
    if not (args.preset or args.segmentation or args.analyze_out):
        print("error: give --preset, --segmentation or --analyze-out", file=sys.stderr)
        return 2
    if (args.preset or args.segmentation) and not args.out:
        print("error: --out is required for an edit", file=sys.stderr)
        return 2
    if args.part_colour and not args.segmentation:
        print("error: --part-colour colours the parts painted in --segmentation", file=sys.stderr)
        return 2
    source = np.asarray(Image.open(args.image).convert("RGBA"))

    def show(event):
        if event.get("event") == "progress":
            print(f"\r{event.get('stage', '')} {event['step']}/{event['total']}", end="", file=sys.stderr, flush=True)

    try:
        with EditGANClient(args.server, timeout=args.timeout, server_key=args.server_key,
                           client_key=args.client_key) as c:
            emb = c.embed(source, steps=args.embed_steps, progress=show)
            print(f"\nembedded: session {emb['session']}, reconstruction PSNR {emb['psnr']:.2f} dB", file=sys.stderr)
            if args.analyze_out:
                Image.fromarray(np.asarray(emb["segmentation"])).save(args.analyze_out)
                print(f"wrote {args.analyze_out}")
            if args.segmentation:
                seg = np.asarray(Image.open(args.segmentation).convert("RGBA"))
                result = c.edit(emb["session"], seg, steps=args.steps, part_colours=dict(args.part_colour),
                                progress=show)
            elif args.preset:
                presets = [_parse_preset(p, args.strength) for p in args.preset]
                result = c.apply_presets(emb["session"], presets, refine_steps=args.refine_steps, progress=show)
            else:
                return 0
            print("", file=sys.stderr)
            Image.fromarray(composite(source, result)).save(args.out)
            m = result.get("metrics") or {}
            print(f"wrote {args.out}: box {result['box']}, classes {result['classes']}, "
                  f"iou {m.get('iou')}, leak {m.get('leak')}")
            if args.save_preset:
                info = c.save_preset(emb["session"], args.save_preset)
                print(f"saved preset {info['preset']['name']}")
    except ClientError as e:
        print(f"\nerror: {e.code}: {e.message}", file=sys.stderr)
        return 1
    except (OSError, ValueError, zmq.ZMQError) as e:  # unreadable keys or images, a bad address
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    return 0
