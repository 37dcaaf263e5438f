"""Session store: opaque random id → engine ``Session``, least-recently-used eviction, thread-safe.

Ids are 128-bit random tokens generated per server process, so after a restart every old id is
unknown (the client re-embeds).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from typing import Any

log = logging.getLogger("editgan.server")


class SessionStore:
    def __init__(self, max_sessions: int = 8):
        if max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        self.max_sessions = max_sessions
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: Any) -> str:
        sid = "s-" + secrets.token_hex(16)
        with self._lock:
            self._items[sid] = session
            while len(self._items) > self.max_sessions:
                old, _ = self._items.popitem(last=False)
                log.info("session %s evicted (LRU, cap %d)", old, self.max_sessions)
        return sid

    def get(self, sid: str) -> Any | None:
        """The session (marked most recently used) or None when unknown/expired."""
        with self._lock:
            session = self._items.get(sid)
            if session is not None:
                self._items.move_to_end(sid)
            return session

    def close(self, sid: str) -> bool:
        with self._lock:
            return self._items.pop(sid, None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
