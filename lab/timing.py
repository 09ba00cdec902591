"""Timed sampling: the samples of one run and the wall time per sample of each
batch, the same way here and on a Ray worker (``edgediff.lab.cluster``); and
calls timed side by side (``interleaved``), as the benchmarks compare them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgediff.runtime import Condition, RunOptions, sample
from edgediff.runtime._call import Denoiser


@dataclass(frozen=True)
class TimedRequest:
    """Samples ``first … first+num−1`` of ``seed`` with one solver, ``batch`` at a
    time, with ``labels`` (one per sample) at guidance scale ``guidance``."""

    solver: str
    steps: int
    num: int
    batch: int
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    guidance: float | None = None
    first: int = 0
    labels: np.ndarray | None = None
    sigmas: list[float] | None = None  # an exact grid; then steps is its length − 1


def timed_sample(denoiser: Denoiser, request: TimedRequest) -> tuple[np.ndarray, list[float]]:
    """The request's samples, and the wall time per sample of each batch (warm: the
    caller warms up)."""
    r = request
    out, times = [], []
    for start in range(0, r.num, r.batch):
        n = min(r.batch, r.num - start)
        labels = None if r.labels is None else r.labels[start:start + n]
        t0 = time.perf_counter()
        out.append(sample(denoiser, n, seed=r.seed, solver=r.solver, steps=r.steps,
                          options=r.options,
                          condition=Condition(labels=labels, guidance=r.guidance),
                          run=RunOptions(first=r.first + start, batch=n, sigmas=r.sigmas)))
        times.append((time.perf_counter() - t0) / n)
    return np.concatenate(out), times


def interleaved(calls: dict[str, Callable[[], Any]], reps: int, warmup: int = 1
                ) -> dict[str, np.ndarray]:
    """Milliseconds per call of each of ``calls``, ``reps`` rounds of one call each in
    turn (so drift in the machine's speed hits all alike), after ``warmup`` calls each."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(reps):
        for k, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            out[k].append((time.perf_counter() - t0) * 1e3)
    return {k: np.asarray(v) for k, v in out.items()}
