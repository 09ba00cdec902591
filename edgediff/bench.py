"""The solver lab: run solvers on one artifact, side by side, and measure
speed and quality the same way every time (DESIGN.md §6)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgediff.quality import Score, reference_rms
from edgediff.runtime import sample
from edgediff.runtime._call import Denoiser
from edgediff.solvers import nfe, spec

# a run: (label, solver, steps, options)
Run = tuple[str, str, int, dict[str, Any]]


@dataclass
class Row:
    label: str
    solver: str
    steps: int
    nfe: int
    ms_median: float          # wall time per sample, over batches
    ms_p90: float
    samples_per_s: float
    reference_rms: float | None  # deterministic solvers only
    distance: float | None       # the artifact's distribution score
    distance_name: str | None
    fid: float | None = None     # only with --fid and a usable torch-fidelity
    guidance: float | None = None        # the guidance scale of a --guidance sweep
    label_accuracy: float | None = None  # share of samples classified as asked

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_deterministic(solver: str, options: dict[str, Any]) -> bool:
    return spec(solver).deterministic(options)


def timed_sample(denoiser: Denoiser, num: int, batch: int, seed: int, solver: str, steps: int,
                 options: dict[str, Any], labels: np.ndarray | None = None,
                 guidance: float | None = None) -> tuple[np.ndarray, list[float]]:
    """Samples, and the wall time per sample of each batch (warm: the caller warms up)."""
    out, times = [], []
    for start in range(0, num, batch):
        n = min(batch, num - start)
        t0 = time.perf_counter()
        out.append(sample(denoiser, n, seed=seed, first=start, batch=n, solver=solver,
                          steps=steps, options=options, guidance=guidance,
                          labels=None if labels is None else labels[start:start + n]))
        times.append((time.perf_counter() - t0) / n)
    return np.concatenate(out), times


def run_bench(denoiser: Denoiser, runs: list[Run], *, num: int, batch: int, seed: int,
              score: Score | None, reference_steps: int = 100,
              progress: Callable[[str], None] | None = None,
              guidance: list[float] | None = None) -> list[Row]:
    """Every run on the same seeds (so the same x_T), one after another. With
    ``guidance`` (a class-conditional artifact), every run at every scale: samples
    in the data's class proportions, scored by label accuracy and distance."""
    sample(denoiser, min(batch, num), seed=seed, solver="euler", steps=2)  # warm-up
    if guidance:
        return _guidance_sweep(denoiser, runs, num, batch, seed, score, guidance, progress)
    reference = None
    rows = []
    for label, solver, steps, options in runs:
        if progress:
            progress(label)
        x, times = timed_sample(denoiser, num, batch, seed, solver, steps, options)
        rms = None
        if is_deterministic(solver, options):
            if reference is None:
                if progress:
                    progress(f"reference: heun, {reference_steps} steps")
                reference, _ = timed_sample(denoiser, num, batch, seed, "heun",
                                            reference_steps, {})
            rms = reference_rms(x, reference)
        ms = np.asarray(times) * 1e3
        rows.append(Row(label, solver, steps, nfe(solver, steps), float(np.median(ms)),
                        float(np.percentile(ms, 90)), float(1e3 / np.median(ms)), rms,
                        score(x) if score else None, score.name if score else None))
    return rows


def _guidance_sweep(denoiser, runs, num, batch, seed, score, scales, progress) -> list[Row]:
    from edgediff.quality import class_labels_for, label_accuracy_for

    info = denoiser.info
    labels = class_labels_for(info, num)
    accuracy = label_accuracy_for(info)
    rows = []
    for label, solver, steps, options in runs:
        for w in scales:
            if progress:
                progress(f"{label} w={w:g}")
            x, times = timed_sample(denoiser, num, batch, seed, solver, steps, options,
                                    labels, w)
            ms = np.asarray(times) * 1e3
            rows.append(Row(f"{label} w={w:g}", solver, steps, nfe(solver, steps),
                            float(np.median(ms)), float(np.percentile(ms, 90)),
                            float(1e3 / np.median(ms)), None,
                            score(x) if score else None, score.name if score else None,
                            guidance=w,
                            label_accuracy=accuracy(x, labels) if accuracy else None))
    return rows
