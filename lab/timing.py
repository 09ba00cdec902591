"""Timed sampling: the samples of one run and the wall time per sample of each
batch, the same way here and on a Ray worker (``edgediff.lab.cluster``)."""

from __future__ import annotations

import time
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
                          run=RunOptions(first=r.first + start, batch=n)))
        times.append((time.perf_counter() - t0) / n)
    return np.concatenate(out), times
