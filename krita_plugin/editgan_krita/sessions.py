"""Which server session belongs to which layer, and the re-embed-once rule.

A server session holds the embedded latent of one image crop. The plugin keys it by
(document, source layer uniqueId) and remembers the segmentation and result layers it created,
so *Apply edit* works whichever of those layers is active. Sessions die with the server (restart,
LRU expiry): an ``unknown_session`` error is answered by embedding the layer again and retrying
once, without bothering the user.
"""

import logging
from dataclasses import dataclass, field

from .image import Rect

log = logging.getLogger(__name__)


@dataclass
class Entry:
    document: str
    source: str                 # uniqueId of the analyzed layer
    region: Rect                # the crop that was embedded, in document pixels
    source_crc: int             # of the embedded pixels: a changed layer needs a new embedding
    session: str = None
    segmentation: str = None    # uniqueId of the current "EditGAN segmentation" layer
    outputs: list = field(default_factory=list)  # every layer made for this source, oldest first
    has_edit: bool = False      # the server session holds an edit that save_preset can store
    painted: bool = False       # …and it is a painted segmentation edit (a shared preset can learn from it)

    def layer_ids(self) -> set:
        return {self.source, self.segmentation, *self.outputs} - {None}


class SessionStore:
    def __init__(self):
        self._entries = {}

    def get(self, document: str, source: str):
        return self._entries.get((document, source))

    def put(self, entry: Entry) -> Entry:
        self._entries[(entry.document, entry.source)] = entry
        return entry

    def entries(self) -> list:
        return list(self._entries.values())

    def owner(self, document: str, layer: str):
        """The entry whose source, segmentation or result layer is ``layer`` (the source wins)."""
        direct = self.get(document, layer)
        if direct is not None:
            return direct
        return next((e for (d, _), e in self._entries.items() if d == document and layer in e.layer_ids()), None)

    def __len__(self):
        return len(self._entries)


class SessionRunner:
    """Runs one request that needs a session: embeds first when there is none, and once more after
    ``unknown_session``.

    ``request(op, fields, callback) -> request id`` sends; ``embed_fields()`` builds the embed
    request lazily (it reads the layer); ``on_event(op, event, msg)`` receives queued/progress and
    exactly one final ``result`` or ``error``. ``current`` is the id to cancel.
    """

    def __init__(self, request, entry: Entry, embed_fields, on_event, on_embedded=None):
        self._request, self._embed_fields = request, embed_fields
        self.entry, self.on_event, self.on_embedded = entry, on_event, on_embedded
        self.current = None
        self._op, self._fields, self._retried = None, None, False

    def run(self, op: str = None, fields: dict = None) -> None:
        """Send ``op`` with the session; ``op=None`` only (re-)embeds."""
        self._op, self._fields = op, fields or {}
        if op is None or not self.entry.session:
            self._embed()
        else:
            self._send()

    def _embed(self):
        self._call("embed", self._embed_fields, self._on_embed)

    def _send(self):
        self._call(self._op, lambda: {"session": self.entry.session, **self._fields}, self._on_op)

    def _call(self, op, make_fields, callback):
        try:
            self.current = self._request(op, make_fields(), callback)
        except Exception as e:  # not connected, layer gone…: a message for the user, not a traceback
            log.debug("request %s failed before sending", op, exc_info=True)
            self.on_event(op, "error", {"code": "client", "message": str(e)})

    def _on_embed(self, event, msg):
        if event != "result":
            self.on_event("embed", event, msg)
            return
        self.entry.session, self.entry.has_edit, self.entry.painted = msg["session"], False, False
        if self.on_embedded is not None:
            self.on_embedded(msg)
        if self._op is None:
            self.on_event("embed", "result", msg)
        else:
            self._send()

    def _on_op(self, event, msg):
        if event == "error" and msg.get("code") == "unknown_session" and not self._retried:
            log.info("session %s unknown to the server: embedding again", self.entry.session)
            self._retried, self.entry.session = True, None
            self._embed()
            return
        self.on_event(self._op, event, msg)
