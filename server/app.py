"""The socket loop.

Threads and sockets (one socket per thread, as ZeroMQ requires)::

    loop thread   : ROUTER (clients, tcp)  +  PULL (inproc://editgan-events-N, bound)
    worker thread : PUSH  (connects to the PULL)  — runs engine code only
    [auth thread  : zmq.auth.ThreadAuthenticator's ZAP handler, only with CURVE]

The loop polls both sockets. Client messages are parsed and validated at once; cheap ops are
answered directly, compute ops become jobs on the :class:`~server.jobs.Scheduler` and get a
``queued`` event. Worker events arrive on the PULL socket with the client identity as first frame
and are forwarded to the ROUTER. So ``ping``/``hello``/``cancel`` are answered while a job runs.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

import zmq

from .handlers import IMMEDIATE_OPS, JOB_OPS, Handlers
from .jobs import Job, Scheduler, Worker
from .protocol import PROTOCOL_VERSION, Limits, ProtocolError, encode_event, error_frames, parse_request
from .security import CurveConfig, SecurityError, is_loopback, make_server_curve, start_authenticator
from .sessions import SessionStore

log = logging.getLogger("editgan.server")
_counter = itertools.count()


class Server:
    """``Server(editor, bind).run()`` serves until :meth:`stop` (thread-safe, signal-safe) is called."""

    def __init__(self, editor, bind: str = "tcp://127.0.0.1:5555", *, limits: Limits | None = None,
                 max_sessions: int = 8, curve: CurveConfig | None = None, insecure: bool = False,
                 join_timeout: float = 30.0, server_name: str | None = None):
        if not is_loopback(bind) and curve is None and not insecure:
            raise SecurityError(f"refusing to bind non-loopback address {bind}: configure CURVE keys "
                                "(--curve-dir, see `editgan-server keygen`) or pass --insecure")
        from editgan import __version__
        self.bind, self.curve, self.join_timeout = bind, curve, join_timeout
        self.limits = limits or Limits()
        self.sessions = SessionStore(max_sessions)
        self.scheduler = Scheduler(self.limits.max_queue_per_client, self.limits.max_queue_total,
                                   self.limits.max_queued_bytes)
        self.handlers = Handlers(editor, self.sessions, self.limits,
                                 server_name or f"editgan-server {__version__} (protocol {PROTOCOL_VERSION})")
        self.endpoint: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._events_addr = f"inproc://editgan-events-{next(_counter)}"

    # -- lifecycle ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Bind, serve until stopped, then cancel the running job, flush its last event and close."""
        ctx = zmq.Context()
        auth = None
        router = pull = None
        worker = None
        try:
            if self.curve is not None:
                auth = start_authenticator(ctx, self.curve)
            router = ctx.socket(zmq.ROUTER)
            router.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
            router.setsockopt(zmq.LINGER, 500)
            router.setsockopt(zmq.SNDHWM, 10000)
            router.setsockopt(zmq.RCVHWM, 1000)
            if self.curve is not None:
                make_server_curve(router, self.curve)
            router.bind(self.bind)
            self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            pull = ctx.socket(zmq.PULL)
            pull.bind(self._events_addr)
            worker = Worker(self.scheduler, lambda: self._make_sink(ctx))
            worker.start()
            log.info("listening on %s (%s)", self.endpoint, "CURVE" if self.curve else "no encryption")
            self._ready.set()
            self._loop(router, pull)
        except BaseException as e:
            self._error = e
            self._ready.set()
            raise
        finally:
            self._shutdown(ctx, router, pull, worker, auth)

    def _make_sink(self, ctx: zmq.Context):
        push = ctx.socket(zmq.PUSH)  # created in (and used only by) the worker thread
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(self._events_addr)
        return (lambda client, frames: push.send_multipart([client, *frames], copy=False)), push.close

    def start_background(self, timeout: float = 10.0) -> "Server":
        """Run in a daemon thread (tests, benchmark); returns once bound (or raises the bind error)."""
        self._thread = threading.Thread(target=self._run_quietly, name="editgan-server-loop", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("server did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run_quietly(self) -> None:
        try:
            self.run()
        except BaseException:
            pass  # reported by start_background through self._error

    def close(self, timeout: float = 30.0) -> None:
        """Stop a background server and wait for it."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("server thread did not stop")

    def __enter__(self):
        return self.start_background()

    def __exit__(self, *exc):
        self.close()

    # -- loop ---------------------------------------------------------------------------------------
    def _loop(self, router: zmq.Socket, pull: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(100))
            except zmq.ZMQError as e:
                if e.errno == zmq.EINTR:
                    continue
                raise
            if pull in ready:
                self._forward(pull, router)
            if router in ready:
                for _ in range(256):  # bounded batch, then give worker events a turn
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(router, frames)

    @staticmethod
    def _forward(pull: zmq.Socket, router: zmq.Socket) -> None:
        while True:
            try:
                frames = pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            router.send_multipart(frames, copy=False)

    def _handle(self, router: zmq.Socket, frames: list) -> None:
        t0 = time.perf_counter()
        client, body = frames[0].bytes, frames[1:]
        op, rid, outcome = "?", None, "result"
        try:
            req = parse_request(body, self.limits)
            op, rid = req.op, req.id
            if op == "cancel":
                reply = self._cancel(router, client, req)
            elif op in IMMEDIATE_OPS:
                reply = getattr(self.handlers, op)(req)
            elif op in JOB_OPS:
                fn = getattr(self.handlers, op)(req)
                job = Job(client, rid, op, fn, preview=req.boolean("preview"), nbytes=req.nbytes)
                position = self.scheduler.submit(job)
                router.send_multipart([client, *encode_event(rid, "queued", {"position": position})], copy=False)
                outcome = f"queued position={position}"
                return
            else:
                raise req.error("unknown_op", f"unknown op {op!r}")
            router.send_multipart([client, *encode_event(rid, "result", *reply)], copy=False)
        except ProtocolError as e:
            rid = e.rid if e.rid is not None else rid
            outcome = e.code
            router.send_multipart([client, *error_frames(rid, e.code, e.message)], copy=False)
        except Exception as e:  # never let one message kill the loop
            log.exception("op=%s id=%s: internal error in the socket loop", op, rid)
            outcome = "internal"
            router.send_multipart([client, *error_frames(rid, "internal", f"{type(e).__name__}: {e}")], copy=False)
        finally:
            log.info("op=%s id=%s client=%s outcome=%s dur=%.2fms", op, rid, client.hex(), outcome,
                     (time.perf_counter() - t0) * 1000)

    def _cancel(self, router: zmq.Socket, client: bytes, req):
        target = req.string("target", max_len=64)
        req.check_all_frames_used()
        found = self.scheduler.cancel(client, target)
        if found is not None and found[0] == "queued":
            router.send_multipart([client, *error_frames(target, "cancelled", "cancelled while queued")], copy=False)
        return {"target": target, "cancelled": found is not None,
                "state": None if found is None else found[0]}, {}

    # -- shutdown -----------------------------------------------------------------------------------
    def _shutdown(self, ctx, router, pull, worker, auth) -> None:
        dropped = self.scheduler.close()  # flags the running job: the engine stops at its next step
        for job in dropped:
            if router is not None:
                router.send_multipart([job.client, *error_frames(job.rid, "cancelled", "server shutting down")])
        if worker is not None:
            worker.join(self.join_timeout)
        if pull is not None and router is not None:
            self._forward(pull, router)  # the running job's final event
        for sock in (pull, router):
            if sock is not None:
                sock.close()
        if auth is not None:
            auth.stop()
        if worker is not None and worker.is_alive():
            log.error("the worker did not stop within %.0fs; leaving its context open", self.join_timeout)
        else:
            ctx.term()
        log.info("server stopped")
