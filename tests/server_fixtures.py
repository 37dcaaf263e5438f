"""Pytest fixtures for server tests: a tiny random bundle (with a random segmenter), the REAL
``Editor`` on it, a real server on a free loopback port (in a thread, or as an ``editgan-server``
subprocess), and clients. Import with ``from tests.server_fixtures import *`` in a test module.

Every wait is bounded; every server, socket, context and process started here is stopped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from editgan.client import EditGANClient
from server.app import Server
from server.protocol import Limits

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 20.0  # seconds any single reply may take in tests


def make_tiny_bundle(path: Path) -> Path:
    from editgan.models import random_bundle
    return random_bundle(with_segmenter=True).save(path)


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def editor(tiny_bundle_dir):
    from editgan.bundle import Bundle
    from editgan.editor import Editor
    return Editor(Bundle.load(tiny_bundle_dir), device="cpu")


def start_server(editor, **kw) -> Server:
    kw.setdefault("join_timeout", 10.0)
    return Server(editor, kw.pop("bind", "tcp://127.0.0.1:*"), **kw).start_background()


@pytest.fixture
def server(editor):
    srv = start_server(editor)
    yield srv
    srv.close(timeout=15)


@pytest.fixture
def make_client():
    clients = []

    def make(endpoint, timeout=TIMEOUT, **kw) -> EditGANClient:
        c = EditGANClient(endpoint, timeout=timeout, **kw)
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()


@pytest.fixture
def client(server, make_client) -> EditGANClient:
    return make_client(server.endpoint)


def face(h: int, w: int, seed: int = 0, alpha: bool = True) -> np.ndarray:
    """A smooth random picture (any size) — content does not matter to a random-weight model."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.integers(40, 200, 3)
    img = np.clip(base + 60 * np.sin(6 * xx[..., None] + rng.random(3) * 6) * np.cos(4 * yy[..., None]), 0, 255)
    img = img.astype(np.uint8)
    if alpha:
        img = np.concatenate([img, np.full((h, w, 1), 255, np.uint8)], axis=2)
    return img


def paint_edit(segmentation: np.ndarray, palette: list, cls: int) -> np.ndarray:
    """An edited segmentation layer: a block of class ``cls`` with an anti-aliased (blended) rim,
    everything else transparent ("unchanged")."""
    h, w = segmentation.shape[:2]
    out = np.zeros((h, w, 4), np.uint8)
    y0, y1, x0, x1 = h // 4, h // 2, w // 4, (3 * w) // 4
    out[y0:y1, x0:x1, :3] = palette[cls]
    out[y0:y1, x0:x1, 3] = 255
    rim = (np.asarray(palette[cls]) * 0.8 + 0.2 * segmentation[y1, x0:x1, :3]).astype(np.uint8)
    out[y1, x0:x1, :3], out[y1, x0:x1, 3] = rim, 200
    return out


class ServerProcess:
    """``editgan-server`` as a subprocess (``python -m server.main``); parses the bound endpoint."""

    def __init__(self, *args: str, timeout: float = 60.0):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "server.main", *args], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.endpoint = None
        deadline = time.monotonic() + timeout
        while self.endpoint is None and time.monotonic() < deadline and self.proc.poll() is None:
            for line in list(self.lines):
                m = re.search(r"listening on (\S+)", line)
                if m:
                    self.endpoint = m.group(1)
            time.sleep(0.05)
        if self.endpoint is None:
            self.kill()
            raise RuntimeError("server process did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def log(self) -> str:
        return "".join(self.lines)

    def terminate(self, timeout: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


__all__ = ["tiny_bundle_dir", "editor", "server", "make_client", "client", "start_server", "face", "paint_edit",
           "ServerProcess", "TIMEOUT", "Limits", "make_tiny_bundle"]
