"""``editgan-server`` command line: serve a model bundle, or ``keygen`` CURVE keys."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import zmq

from .protocol import MiB, Limits
from .security import CurveConfig, SecurityError, is_loopback, keygen

log = logging.getLogger("editgan.server")


def build_parser() -> argparse.ArgumentParser:
    d = Limits()
    p = argparse.ArgumentParser(prog="editgan-server", description="EditGAN editing server (ZeroMQ + msgpack, "
                                "protocol in docs/protocol.md). `editgan-server keygen --out DIR` makes CURVE keys.")
    p.add_argument("--model", default=None, help="model bundle folder (default: the shipped demo model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--bind", default="tcp://127.0.0.1:5555",
                   help="ZeroMQ endpoint (default loopback; tcp://127.0.0.1:* picks a free port)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for the compute worker (default: torch's choice). On a small machine "
                        "shared with other busy processes, 1 avoids OpenMP threads stalling each other")
    p.add_argument("--max-sessions", type=int, default=8, help="LRU cap on embedded sessions (default 8)")
    p.add_argument("--max-message-mib", type=float, default=d.max_message_bytes / MiB,
                   help=f"largest accepted message (default {d.max_message_bytes / MiB:.0f} MiB)")
    p.add_argument("--max-side", type=int, default=d.max_side, help=f"largest image side (default {d.max_side})")
    p.add_argument("--max-steps", type=int, default=d.max_steps,
                   help=f"largest embed/edit step count (default {d.max_steps})")
    p.add_argument("--curve-dir", default=None, help="CURVE key folder from `editgan-server keygen` (encrypts and "
                   "allow-lists clients; required for non-loopback binds unless --insecure)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback bind WITHOUT encryption/auth")
    return p


def keygen_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="editgan-server keygen",
                                description="create CURVE keys: server pair, one client pair, allow-list it")
    p.add_argument("--out", required=True, help="key folder to create")
    p.add_argument("--client-name", default="client")
    args = p.parse_args(argv)
    try:
        paths = keygen(args.out, args.client_name)
    except SecurityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"server keys:   {paths['server_secret']} (keep), {paths['server_public']} (give to clients)")
    print(f"client keys:   {paths['client_secret']} + {paths['client_public']} (copy to the client machine)")
    print(f"allow-listed:  {paths['allowed']} (add more client *.key files to {paths['allowed'].parent})")
    print(f"serve with:    editgan-server --bind tcp://0.0.0.0:5555 --curve-dir {args.out}")
    return 0


def pick_device(name: str) -> str:
    """``auto`` → cuda when available, else cpu; ``cuda`` without a usable GPU raises ValueError."""
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch build or machine has no usable CUDA device (try --device cpu)")
    return name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["keygen"]:
        return keygen_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        curve = CurveConfig.load(args.curve_dir) if args.curve_dir else None
        if not is_loopback(args.bind) and curve is None and not args.insecure:
            raise SecurityError(f"refusing to bind non-loopback address {args.bind}: configure CURVE keys "
                                "(--curve-dir, see `editgan-server keygen`) or pass --insecure")
        limits = Limits(max_message_bytes=int(args.max_message_mib * MiB), max_side=args.max_side,
                        max_steps=args.max_steps)
        if args.max_sessions < 1 or limits.max_side < 1 or limits.max_steps < 1 or limits.max_message_bytes < 1024:
            raise SecurityError("--max-sessions, --max-side, --max-steps must be >= 1, --max-message-mib >= 0.001")
    except SecurityError as e:
        log.error("%s", e)
        return 2
    if not is_loopback(args.bind) and curve is None:
        log.warning("INSECURE: serving %s without encryption or client authentication", args.bind)

    from editgan.bundle import Bundle, BundleError
    from editgan.editor import Editor, EditorError
    from editgan.models import default_bundle_path
    from .app import Server

    path = Path(args.model) if args.model else default_bundle_path()
    try:
        device = pick_device(args.device)
    except ValueError as e:
        log.error("%s", e)
        return 2
    if args.threads is not None:
        import torch
        torch.set_num_threads(max(1, args.threads))
    try:
        editor = Editor(Bundle.load(path, device=device), device=device)
    except (BundleError, EditorError, OSError) as e:  # EditorError: e.g. segmenter and class list disagree
        log.error("cannot load model bundle %s: %s", path, e)
        return 2
    info = editor.info()
    perceptual = info.get("perceptual") or {}
    log.info("model %s (%s², %d classes, %d presets) on %s", info.get("name"), info.get("resolution"),
             len(info.get("classes") or []), len(info.get("presets") or []), device)
    if perceptual.get("kind") != "lpips-vgg16":
        log.warning("!" * 78)
        log.warning("PERCEPTUAL LOSS IS A FALLBACK, NOT LPIPS: %s", perceptual.get("detail", perceptual))
        log.warning("!" * 78)
    else:
        log.info("perceptual loss: %s", perceptual.get("detail"))

    server = Server(editor, args.bind, limits=limits, max_sessions=args.max_sessions, curve=curve,
                    insecure=args.insecure)

    def on_signal(signum, frame):
        log.info("received %s: cancelling the running job and stopping", signal.Signals(signum).name)
        server.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server.run()
    except (zmq.ZMQError, SecurityError) as e:
        log.error("cannot serve on %s: %s", args.bind, e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
