"""``editgan-server``: the ZeroMQ/msgpack door to :mod:`editgan.editor` (see docs/protocol.md).

Modules: :mod:`.protocol` (framing, validation, buffer codecs, palette snapping), :mod:`.jobs`
(one compute worker, per-client round-robin queue, cancellation), :mod:`.sessions` (LRU),
:mod:`.handlers` (op → engine calls), :mod:`.app` (socket loop), :mod:`.security` (CURVE),
:mod:`.main` (command line), :mod:`.bench` (latency benchmark).
"""

# The version lives in server.protocol so that nothing depends on this file being executed (a stale
# editable install can map ``server`` as a namespace package).
from .protocol import PROTOCOL_VERSION  # noqa: E402,F401  (re-exported)

__all__ = ["PROTOCOL_VERSION"]
