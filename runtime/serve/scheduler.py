"""Step-level continuous batching (docs/serve.md, "How requests share the denoiser").

One thread owns the denoiser. Every running request samples in a worker thread of its
own, with the runtime's unchanged step loops, against a ``Lane``
(``edgediff.runtime.serve.lanes``); a lane call submits the request's rows and waits.
Each *tick* the scheduler waits until every running request has submitted (or
``gather_s`` has passed since the first did), packs the rows in arrival order into
calls of at most ``max_batch`` rows (``pack``), calls the denoiser once per pack —
each row at its own σ, from its own solver and step — and hands every request its
rows. Requests join and leave between ticks, so a call holds whoever is running.

A request's samples depend only on its own seed and settings: its noise streams are
its own (``edgediff.streams``), and a row's D depends on the batch only through the
float32 kernels' rounding, which ``edgediff.tolerance`` bounds.

Admission (``mode``): ``step`` starts a waiting request as soon as the running ones
leave room for its rows; ``request`` starts a group only when the previous group has
finished; ``single`` runs one request at a time. The mode may be changed while
running (a load test compares the three).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter, deque
from functools import partial

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.runtime._call import Denoiser
from edgediff.runtime.serve.lanes import Lane, merge_feeds
from edgediff.runtime.serve.serve_options import MODES
from edgediff.runtime.serve.tickets import (
    DenoiserCallError,
    Job,
    RejectedError,
    RequestCancelledError,
    Submission,
    Ticket,
    pack,
)

log = logging.getLogger(__name__)


class _Quiet:
    def called(self, rows: int, seconds: float) -> None:
        pass


class Scheduler:
    """Owns ``denoiser``; ``submit`` jobs, ``cancel`` them, ``close`` to drain. A context
    manager: ``with Scheduler(D) as s: s.submit(job, rows).result()``. ``observer``
    (optional) hears of every call: ``called(rows, seconds)``."""

    def __init__(self, denoiser: Denoiser, max_batch: int = 16, queue: int = 256,
                 mode: str = "step", gather_s: float = 0.002, observer=None):
        self.denoiser, self.info = denoiser, denoiser.info
        self.max_batch, self.queue, self.gather_s = max_batch, queue, gather_s
        self.mode = mode
        self.observer = observer or _Quiet()
        self._cond = threading.Condition()  # guards everything below (re-entrant)
        self._waiting: deque[Ticket] = deque()
        self._running: list[Ticket] = []
        self._pending: dict[Ticket, Submission] = {}
        self._rows = 0  # rows per call the running requests may submit
        self._accepting, self._closing = True, False
        self._seq = itertools.count()
        self.counts: Counter = Counter()  # calls, rows, max_rows, dropped, completed, failed
        self.cancelled: Counter = Counter()  # by reason
        self._thread = threading.Thread(target=self._loop, name="edgediff-scheduler",
                                        daemon=True)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise EdgediffError(f"unknown batching mode {mode!r}; choose one of "
                                f"{', '.join(MODES)}")
        self._mode = mode

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def accepting(self) -> bool:
        return self._accepting

    def submit(self, job: Job, rows: int, deadline: float | None = None) -> Ticket:
        """Accept a job that submits at most ``rows`` rows per call; ``deadline``: a
        ``time.monotonic()`` instant. Raises ``RejectedError`` when the queue is full or the
        scheduler is draining."""
        if rows < 1:
            raise ValueError(f"rows must be ≥ 1, got {rows}")
        with self._cond:
            if not self._accepting:
                raise RejectedError("draining", "the server is shutting down and takes no "
                                                "new requests")
            if len(self._waiting) >= self.queue:
                raise RejectedError("queue_full", f"{len(self._waiting)} requests are waiting "
                                                  f"already (the queue holds {self.queue}); "
                                                  f"retry later")
            ticket = Ticket(job, rows, deadline, next(self._seq))
            self._waiting.append(ticket)
            self._cond.notify_all()
        return ticket

    def cancel(self, ticket: Ticket, reason: str, message: str = "") -> bool:
        """Take a request out (its rows leave the batch at once) and settle it with
        ``RequestCancelledError(reason)``; False if it had already ended."""
        with self._cond:
            if ticket.done:
                return False
            self.cancelled[reason] += 1
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            sub = ticket.submission
            if sub is not None and not sub.finished.is_set():
                self.counts["dropped"] += 1
                sub.fail(RequestCancelledError(reason, message))
            self._leave(ticket)
            return ticket.settle(None, RequestCancelledError(reason, message))

    def stop_admitting(self) -> tuple[int, int]:
        """Draining begins: new requests are refused; (running, waiting) will finish."""
        with self._cond:
            self._accepting = False
            return len(self._running), len(self._waiting)

    def close(self, drain: bool = True) -> None:
        """Refuse new requests, finish (``drain``) or cancel the accepted ones, stop."""
        with self._cond:
            self._accepting = False
            if not drain:
                for ticket in [*self._waiting, *self._running]:
                    self.cancel(ticket, "shutdown", "the server shut down")
            while self._thread.is_alive() and (self._waiting or self._running):
                self._cond.wait(0.1)
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def stats(self) -> dict:
        with self._cond:
            return {"mode": self._mode, "max_batch": self.max_batch,
                    "waiting": len(self._waiting), "running": len(self._running),
                    "pending": len(self._pending), **self.counts,
                    "cancelled": dict(self.cancelled)}

    # --- the request threads ---------------------------------------------------------

    def _start(self, ticket: Ticket) -> None:
        ticket.state = "running"
        ticket.lane = Lane(self.info, partial(self._submit_rows, ticket))
        self._running.append(ticket)
        self._rows += ticket.rows
        threading.Thread(target=self._work, args=(ticket,), daemon=True,
                         name=f"edgediff-request-{ticket.seq}").start()

    def _work(self, ticket: Ticket) -> None:
        samples, error = None, None
        try:
            samples = ticket.job(ticket.lane)
        except RequestCancelledError as e:
            error = e  # settled already by cancel()
        except BaseException as e:  # its own failure: NaN/Inf, a failed call, a bug
            error = e
        with self._cond:
            self._leave(ticket)
            if ticket.settle(samples, error):
                self.counts["completed" if error is None else "failed"] += 1
            if error is not None and not isinstance(
                    error, RequestCancelledError | DenoiserCallError | EdgediffError):
                log.error("request %d failed", ticket.seq, exc_info=error)

    def _leave(self, ticket: Ticket) -> None:
        if ticket in self._running:
            self._running.remove(ticket)
            self._rows -= ticket.rows
        self._pending.pop(ticket, None)
        self._cond.notify_all()

    def _submit_rows(self, ticket: Ticket, x: np.ndarray, sigma: np.ndarray,
                     feeds: dict) -> np.ndarray:
        """A lane's call, in the request's thread: hand the rows over, wait for them."""
        sub = Submission(ticket, x, sigma, feeds)
        with self._cond:
            if ticket.done:
                raise RequestCancelledError("gone", "the request has ended")
            ticket.submission = sub
            self._pending[ticket] = sub
            self._cond.notify_all()
        sub.finished.wait()
        if sub.error is not None:
            raise sub.error
        return sub.out

    # --- the scheduler thread --------------------------------------------------------

    def _admit(self) -> None:
        fresh = not self._running  # a new group may start
        while self._waiting:
            ticket = self._waiting[0]
            if self._running and (self._mode == "single" or (self._mode == "request"
                                                              and not fresh)
                                  or self._rows + ticket.rows > self.max_batch):
                break
            self._start(self._waiting.popleft())

    def _next_tick(self) -> list[Submission] | None:
        with self._cond:
            while True:
                now = time.monotonic()
                for ticket in [*self._waiting, *self._running]:
                    if ticket.deadline is not None and ticket.deadline <= now:
                        self.cancel(ticket, "deadline", ticket.late())
                self._admit()
                if self._closing and not self._running and not self._waiting:
                    return None
                wait = 0.5
                if self._pending:
                    first = min(s.at for s in self._pending.values())
                    if all(t in self._pending for t in self._running) \
                            or now >= first + self.gather_s:
                        subs = sorted(self._pending.values(), key=lambda s: s.ticket.seq)
                        self._pending.clear()
                        return subs
                    wait = first + self.gather_s - now
                deadlines = [t.deadline for t in (*self._waiting, *self._running)
                             if t.deadline is not None]
                if deadlines:
                    wait = min(wait, max(min(deadlines) - now, 0.0) + 1e-3)
                self._cond.wait(wait)

    def _loop(self) -> None:
        while (subs := self._next_tick()) is not None:
            for call in pack([s.rows for s in subs], self.max_batch):
                self._run([(subs[k], a, b) for k, a, b in call])

    def _run(self, pieces: list[tuple[Submission, int, int]]) -> None:
        """One denoiser call on the live pieces' rows, results handed back."""
        pieces = [p for p in pieces if not p[0].finished.is_set()]
        if not pieces:
            return
        began = time.perf_counter()
        try:
            x = np.concatenate([s.x[a:b] for s, a, b in pieces])
            sigma = np.concatenate([s.sigma[a:b] for s, a, b in pieces])
            feeds = merge_feeds(self.info, [(b - a, {k: v[a:b] for k, v in s.feeds.items()})
                                            for s, a, b in pieces])
            denoised = self.denoiser(x, sigma, **feeds)
        except Exception as e:  # the whole call failed: so did every request in it
            log.exception("a denoiser call of %d rows failed", sum(b - a for _, a, b in pieces))
            with self._cond:
                for s, _, _ in pieces:
                    s.fail(DenoiserCallError(f"the denoiser call failed: {type(e).__name__}: {e}"))
            return
        seconds = time.perf_counter() - began
        with self._cond:
            self.counts["calls"] += 1
            self.counts["rows"] += len(x)
            self.counts["max_rows"] = max(self.counts["max_rows"], len(x))
            at = 0
            for s, a, b in pieces:
                if not s.finished.is_set():  # else cancelled during the call: dropped
                    s.fill(a, b, denoised[at:at + b - a])
                at += b - a
        self.observer.called(len(x), seconds)

