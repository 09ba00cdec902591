"""What the scheduler hands out and takes in: a ``Ticket`` per accepted request, the
errors a request can end with, and ``pack``, the pure rule that splits one tick's rows
into denoiser calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.runtime._call import Denoiser

Job = Callable[[Denoiser], np.ndarray]  # a request's work, run against its lane


class RejectedError(EdgediffError):
    """The scheduler did not accept a request: ``reason`` is ``queue_full`` (retry
    later) or ``draining`` (the server is shutting down)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class RequestCancelledError(Exception):
    """A request left the batch before its end: ``reason`` is ``deadline``,
    ``disconnected`` (its client went away) or ``shutdown``."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or f"the request was cancelled ({reason})")
        self.reason = reason


class DenoiserCallError(Exception):
    """The packed denoiser call that held some of a request's rows raised."""


class Ticket:
    """One accepted request: its ``job``, the most ``rows`` it submits to one call, its
    ``deadline`` (a ``time.monotonic()`` instant, or None) and, once done, its samples
    or its error. ``result()`` blocks for them; ``add_done_callback`` is for event loops
    (it runs in the thread that settles the ticket, so it must be quick)."""

    def __init__(self, job: Job, rows: int, deadline: float | None, seq: int):
        self.job, self.rows, self.deadline, self.seq = job, rows, deadline, seq
        self.arrived = time.monotonic()
        self.state = "waiting"  # → running → done
        self.samples: np.ndarray | None = None
        self.error: BaseException | None = None
        self.lane = None  # the request's Lane, once it runs
        self.submission = None  # its rows in the scheduler's hands, if any
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Ticket], None]] = []

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def calls(self) -> int:
        """How many times its solver has called the denoiser so far."""
        return 0 if self.lane is None else self.lane.calls

    def late(self) -> str:
        """Why a deadline cancelled it, and how far it got."""
        budget = "" if self.deadline is None else f" of {self.deadline - self.arrived:.3g} s"
        return (f"the request's deadline{budget} passed after {self.calls} denoiser calls; "
                f"ask for fewer samples or steps, or a longer deadline")

    def result(self, timeout: float | None = None) -> np.ndarray:
        """The samples, or the request's error raised here."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"request {self.seq} is still {self.state}")
        if self.error is not None:
            raise self.error
        return self.samples

    def add_done_callback(self, fn: Callable[[Ticket], None]) -> None:
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def settle(self, samples: np.ndarray | None, error: BaseException | None) -> bool:
        """Set the outcome once; False when it was already set (every request gets
        exactly one)."""
        with self._lock:
            if self._done.is_set():
                return False
            self.samples, self.error, self.state = samples, error, "done"
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)
        return True


class Submission:
    """Rows one request handed over for one call (float32 ``x`` [rows, *shape], ``sigma``
    [rows], ``feeds`` by input name), and where their results go."""

    def __init__(self, ticket: Ticket, x: np.ndarray, sigma: np.ndarray, feeds: dict):
        self.ticket, self.x, self.sigma, self.feeds = ticket, x, sigma, feeds
        self.rows = len(x)
        self.out = np.empty(x.shape, np.float32)
        self.left = self.rows
        self.at = time.monotonic()
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def fill(self, a: int, b: int, denoised: np.ndarray) -> None:
        np.copyto(self.out[a:b], denoised)
        self.left -= b - a
        if self.left == 0:
            self.finished.set()

    def fail(self, error: BaseException) -> None:
        if not self.finished.is_set():
            self.error = error
            self.finished.set()


def pack(sizes: Sequence[int], max_batch: int) -> list[list[tuple[int, int, int]]]:
    """One tick's denoiser calls for submissions of ``sizes`` rows, in their order (FIFO):
    each call a list of (submission index, first row, end row), at most ``max_batch``
    rows. A submission that fits in no open call starts the next one; only one wider
    than ``max_batch`` itself is split, filling the open call first."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
    calls: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    used = 0
    for k, size in enumerate(sizes):
        if size <= max_batch and used + size > max_batch:
            calls.append(current)
            current, used = [], 0
        start = 0
        while start < size:
            take = min(size - start, max_batch - used)
            current.append((k, start, start + take))
            used += take
            start += take
            if used == max_batch:
                calls.append(current)
                current, used = [], 0
    if current:
        calls.append(current)
    return calls
