"""Remote-use safety: loopback detection and ZeroMQ CURVE keys (``editgan-server keygen``).

Key folder layout (``keygen --out DIR``)::

    DIR/server.key              server public key   -> give to clients
    DIR/server.key_secret       server secret key   -> stays on the server
    DIR/clients/*.key           allow-listed client PUBLIC keys (every file here is accepted)
    DIR/client/client.key       a client key pair   -> copy both files (and server.key) to the client
    DIR/client/client.key_secret

Serving with ``--curve-dir DIR`` encrypts and authenticates every connection; a client whose public
key is not in ``DIR/clients/`` fails the handshake and never gets an answer. Keys are read at start.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger("editgan.server")

SERVER_NAME = "server"
CLIENTS_DIR = "clients"
CLIENT_DIR = "client"


class SecurityError(RuntimeError):
    """Refusing to serve: unsafe bind or unusable keys."""


def endpoint_host(endpoint: str) -> tuple[str, str]:
    """``tcp://host:port`` → ("tcp", host) (IPv6 brackets removed; ``tcp://iface;host:port`` → host)."""
    if "://" not in endpoint:
        raise SecurityError(f"bind address {endpoint!r} must look like tcp://127.0.0.1:5555")
    transport, rest = endpoint.split("://", 1)
    if transport != "tcp":
        return transport, rest
    rest = rest.split(";")[-1]
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return transport, host.strip("[]")


def is_loopback(endpoint: str) -> bool:
    """True when the endpoint is reachable only from this machine (loopback tcp, ipc, inproc).

    Wildcards (``*``, ``0.0.0.0``), interface names and host names other than ``localhost`` count as
    non-loopback: refusing to start is better than exposing the server by accident.
    """
    transport, host = endpoint_host(endpoint)
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class CurveConfig:
    public: bytes
    secret: bytes
    clients_dir: Path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "CurveConfig":
        folder = Path(folder)
        secret_file = folder / f"{SERVER_NAME}.key_secret"
        clients = folder / CLIENTS_DIR
        if not secret_file.is_file():
            raise SecurityError(f"{secret_file}: missing server secret key "
                                f"(run `editgan-server keygen --out {folder}`)")
        try:
            public, secret = zmq.auth.load_certificate(secret_file)
        except Exception as e:
            raise SecurityError(f"{secret_file}: not a ZeroMQ certificate ({e})") from None
        if not secret:
            raise SecurityError(f"{secret_file}: has no secret key")
        if not clients.is_dir() or not any(clients.glob("*.key")):
            raise SecurityError(f"{clients}: no allow-listed client public keys (*.key)")
        return cls(public, secret, clients)

    def allowed_clients(self) -> int:
        return sum(1 for _ in self.clients_dir.glob("*.key"))


def keygen(out: str | os.PathLike, client_name: str = "client") -> dict[str, Path]:
    """Create a server key pair, one client key pair and allow-list that client (idempotent: refuses
    to overwrite an existing server key)."""
    out = Path(out)
    if (out / f"{SERVER_NAME}.key_secret").exists():
        raise SecurityError(f"{out / (SERVER_NAME + '.key_secret')} already exists; not overwriting keys")
    for d in (out, out / CLIENTS_DIR, out / CLIENT_DIR):
        d.mkdir(parents=True, exist_ok=True)
    server_public, server_secret = zmq.auth.create_certificates(out, SERVER_NAME)
    client_public, client_secret = zmq.auth.create_certificates(out / CLIENT_DIR, client_name)
    allowed = out / CLIENTS_DIR / f"{client_name}.key"
    shutil.copyfile(client_public, allowed)
    for secret in (server_secret, client_secret):
        os.chmod(secret, 0o600)
    return {"server_public": Path(server_public), "server_secret": Path(server_secret),
            "client_public": Path(client_public), "client_secret": Path(client_secret), "allowed": allowed}


def start_authenticator(ctx: zmq.Context, cfg: CurveConfig) -> ThreadAuthenticator:
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("editgan.server.auth"))
    auth.start()
    auth.configure_curve(domain="*", location=str(cfg.clients_dir))
    return auth


def make_server_curve(sock: zmq.Socket, cfg: CurveConfig) -> None:
    sock.curve_secretkey = cfg.secret
    sock.curve_publickey = cfg.public
    sock.curve_server = True

