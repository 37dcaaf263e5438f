"""One compute worker thread fed by a fair queue.

* :class:`Scheduler` — per-client FIFO queues served round-robin across client identities (a client
  with ten queued jobs cannot starve one with a single job), per-client and global caps, cancellation
  of queued jobs (removed at once) and of the running one (a flag the engine polls every step).
* :class:`Worker` — the only thread that runs engine code. Its events leave through a *sink* created
  inside the worker thread (in the server: its own inproc PUSH socket, since ZeroMQ sockets are not
  thread-safe), so the socket loop never waits for compute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .protocol import ProtocolError, encode_event, error_frames

log = logging.getLogger("editgan.server")

# A job function gets a JobContext and returns (result fields, {name: uint8 array}).
JobFn = Callable[["JobContext"], tuple[dict, dict]]
# A sink sends one event: sink(client identity, frames).
Sink = Callable[[bytes, list], None]


@dataclass(eq=False)
class Job:
    client: bytes
    rid: str
    op: str
    fn: JobFn
    preview: bool = False
    nbytes: int = 0  # size of the request (its buffers stay referenced until the job ends)
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None


class JobContext:
    """Handed to a job function: progress reporting and the cancellation check."""

    min_interval = 0.05  # seconds between progress events (first and last step always sent)

    def __init__(self, job: Job, sink: Sink):
        self.job, self._sink, self._last = job, sink, 0.0

    def should_cancel(self) -> bool:
        return self.job.cancel.is_set()

    def progress(self, step: int, total: int, preview=None, stage: str | None = None) -> None:
        now = time.monotonic()
        if 1 < step < total and now - self._last < self.min_interval:
            return
        self._last = now
        fields = {"step": int(step), "total": int(total), "stage": stage or self.job.op}
        buffers = {}
        if self.job.preview and preview is not None:
            p = np.asarray(preview)
            if p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 and max(p.shape[:2]) <= 1024:
                buffers["preview"] = p
        self._sink(self.job.client, encode_event(self.job.rid, "progress", fields, buffers))


class Scheduler:
    def __init__(self, max_per_client: int = 8, max_total: int = 64, max_bytes: int = 1 << 30):
        self.max_per_client, self.max_total, self.max_bytes = max_per_client, max_total, max_bytes
        self._queues: OrderedDict[bytes, deque[Job]] = OrderedDict()  # rotation order
        self._cond = threading.Condition()
        self.running: Job | None = None
        self.closed = False

    def _order(self) -> list[Job]:
        """The queued jobs in the order they will start."""
        queues = [list(q) for q in self._queues.values()]
        order = []
        for i in range(max(map(len, queues), default=0)):
            order.extend(q[i] for q in queues if i < len(q))
        return order

    def submit(self, job: Job) -> int:
        """Queue a job; returns its position (queued jobs that start before it). Raises busy/shutting_down."""
        with self._cond:
            if self.closed:
                raise ProtocolError("busy", "the server is shutting down", job.rid)
            running = self.running is not None and self.running.client == job.client
            mine = len(self._queues.get(job.client, ())) + running
            if mine >= self.max_per_client:
                raise ProtocolError("busy", f"this client already has {mine} jobs queued or running "
                                    f"(limit {self.max_per_client})", job.rid)
            queued = [j for q in self._queues.values() for j in q]
            if len(queued) >= self.max_total:
                raise ProtocolError("busy", f"the server queue is full ({self.max_total} jobs)", job.rid)
            held = sum(j.nbytes for j in queued)
            if queued and held + job.nbytes > self.max_bytes:
                raise ProtocolError("busy", f"queued requests already hold {held} bytes (limit {self.max_bytes})",
                                    job.rid)
            self._queues.setdefault(job.client, deque()).append(job)
            self._cond.notify_all()
            return self._order().index(job)

    def take(self, timeout: float = 0.2) -> Job | None:
        """Next job, round-robin across clients (worker thread only); None on timeout or when closed."""
        with self._cond:
            if not self._queues and not self.closed:
                self._cond.wait(timeout)
            if self.closed or not self._queues:
                return None
            client, queue = next(iter(self._queues.items()))
            job = queue.popleft()
            del self._queues[client]
            if queue:
                self._queues[client] = queue  # re-inserted at the end: the next client goes first
            job.started = time.monotonic()
            self.running = job
            return job

    def finish(self, job: Job) -> None:
        with self._cond:
            if self.running is job:
                self.running = None
            self._cond.notify_all()

    def cancel(self, client: bytes, rid: str) -> tuple[str, Job] | None:
        """Cancel a job of ``client``: ("queued", job) removed from the queue, ("running", job) flagged,
        or None when no such job is queued or running."""
        with self._cond:
            queue = self._queues.get(client)
            for job in queue or ():
                if job.rid == rid:
                    queue.remove(job)
                    if not queue:
                        del self._queues[client]
                    job.cancel.set()
                    return "queued", job
            if self.running is not None and self.running.client == client and self.running.rid == rid:
                self.running.cancel.set()
                return "running", self.running
            return None

    def close(self) -> list[Job]:
        """Stop accepting jobs, flag the running one, return (and forget) every queued one."""
        with self._cond:
            self.closed = True
            dropped = [job for q in self._queues.values() for job in q]
            self._queues.clear()
            if self.running is not None:
                self.running.cancel.set()
            self._cond.notify_all()
            return dropped


class Worker(threading.Thread):
    """Runs jobs one at a time; survives any exception a job raises (→ ``internal`` error)."""

    def __init__(self, scheduler: Scheduler, sink_factory: Callable[[], tuple[Sink, Callable[[], None]]]):
        super().__init__(name="editgan-worker", daemon=True)
        self.scheduler, self._sink_factory = scheduler, sink_factory

    def run(self) -> None:
        sink, close = self._sink_factory()
        try:
            while True:
                job = self.scheduler.take()
                if job is None:
                    if self.scheduler.closed:
                        break
                    continue
                frames = None
                try:
                    frames = self._run(job, sink)
                finally:
                    # finished before the final event leaves: a cancel that races with it gets
                    # `cancelled: false` instead of a promise that can no longer be kept
                    self.scheduler.finish(job)
                    if frames is not None:
                        sink(job.client, frames)
        finally:
            close()

    def _run(self, job: Job, sink: Sink) -> list:
        """Run one job; returns the frames of its final event (result or error)."""
        ctx = JobContext(job, sink)
        try:
            if job.cancel.is_set():
                raise ProtocolError("cancelled", "cancelled before it started", job.rid)
            fields, buffers = job.fn(ctx)
            frames, outcome = encode_event(job.rid, "result", fields, buffers), "result"
        except ProtocolError as e:
            frames, outcome = error_frames(job.rid, e.code, e.message), e.code
        except Exception as e:  # the worker must survive anything a job does
            log.exception("op=%s id=%s: internal error", job.op, job.rid)
            frames, outcome = error_frames(job.rid, "internal", f"{type(e).__name__}: {e}"), "internal"
        now = time.monotonic()
        log.info("op=%s id=%s client=%s outcome=%s wait=%.3fs run=%.3fs", job.op, job.rid, job.client.hex(),
                 outcome, (job.started or now) - job.submitted, now - (job.started or now))
        return frames
