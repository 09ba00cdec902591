"""The whole product on the shipped models, in a few minutes (``edgediff demo``).

Export the bundled digits model and the exact 2-D Gaussian mixture to ONNX
(validated against torch), compare solvers on each with the torch-free runtime,
sample the class-conditional digits model at two guidance scales, and the
consistency-distilled digits model at 1, 2 and 4 steps. Each step
is yielded as it finishes, so the caller reports progress; every file goes into
the folder it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgediff.errors import EdgediffError

# (label, solver, steps, options): ODE solvers at equal NFE, plus stochastic solvers
MIXTURE_RUNS = [
    *[(f"{s}-{n}", s, n, {}) for s in ("euler", "dpmpp_2m") for n in (5, 9, 19, 35)],
    *[(f"heun-{n}", "heun", n, {}) for n in (3, 5, 10, 18)],
    ("ddim-50-eta1", "ddim", 50, {"eta": 1.0}),
    ("edm-64-churn", "edm", 64, {"S_churn": 40.0, "S_tmin": 0.05, "S_tmax": 50.0,
                                 "S_noise": 1.003}),
    ("em-500", "euler_maruyama", 500, {}),
    ("ddpm-1000", "ddpm", 1000, {}),
]
DIGITS_RUNS = [
    *[(f"{s}-{n}", s, n, {}) for s in ("euler", "dpmpp_2m") for n in (5, 9, 19, 35)],
    *[(f"heun-{n}", "heun", n, {}) for n in (3, 5, 10, 18)],
]
GUIDANCE_SCALES = (1.0, 3.0)


@dataclass
class Exported:
    """One model exported: where, and the validation against torch."""

    name: str
    source: str
    path: Path
    validation: object
    seconds: float


@dataclass
class Compared:
    """One model's solver comparison (a finished ``bench``)."""

    name: str
    runs: int
    num: int
    study: object
    written: list[Path] = field(default_factory=list)


@dataclass
class Distilled:
    """The consistency-distilled digits model on its presets: (steps, FD, ms per
    sample) per preset, and the grid of its 2-step samples."""

    rows: list[tuple[int, float, float]]
    score: object
    written: list[Path] = field(default_factory=list)


@dataclass
class Guided:
    """The class-conditional model at one guidance scale."""

    scale: float
    accuracy: float
    written: list[Path] = field(default_factory=list)


def run_demo(folder: Path, *, num: int = 256, seed: int = 0, threads: int | None = None,
             progress: Callable[[str], None] | None = None
             ) -> Iterator[Exported | Compared | Guided]:
    """Both shipped models, then the class grids; ``num`` digits samples per run (the
    mixture gets 8× as many)."""
    for name, source, runs, n in (("mixture", "mixture2d", MIXTURE_RUNS, 8 * num),
                                  ("digits", "bundled", DIGITS_RUNS, num)):
        yield from _one_model(folder, name, source, runs, n, seed, threads, progress)
    yield from _class_grids(folder, seed, threads)
    yield from _distilled(folder, num, seed, threads)


def _one_model(folder, name, source, runs, n, seed, threads, progress):
    from edgediff import runtime
    from edgediff.export.onnx import ExportOptions, export_source
    from edgediff.lab.bench import BenchOptions, run_study
    from edgediff.lab.outputs import write_samples

    sub = folder / name
    sub.mkdir()
    onnx_path = sub / f"{name}.onnx"
    t0 = time.perf_counter()
    _, check = export_source(source, onnx_path, ExportOptions(force=True))
    yield Exported(name, source, onnx_path, check, time.perf_counter() - t0)
    D = runtime.load(onnx_path, threads=threads)
    study = run_study(D, onnx_path, sub, runs, BenchOptions(num=n, batch=min(n, 256), seed=seed),
                      progress=progress)
    x = runtime.sample(D, n, seed=seed, run=runtime.RunOptions(batch=min(n, 256)))
    meta = {"artifact": onnx_path.name, **D.info.default_solver, "seed": seed, "num": n}
    written = study.written + write_samples(sub, x, D.info, meta)
    yield Compared(name, len(runs), n, study, written)


def _class_grids(folder, seed, threads):
    """The class-conditional digits model, exported with --guidance (one launch per
    step), sampled class by class at two guidance scales: a grid per scale with one
    row per digit, and the share the shipped classifier reads as asked."""
    from edgediff import runtime
    from edgediff.export.onnx import ExportOptions, export_source
    from edgediff.lab.outputs import write_samples
    from edgediff.lab.quality import label_accuracy_for
    from edgediff.models.bundled import CONDITIONAL, bundled_path

    try:
        bundled_path(CONDITIONAL)
    except EdgediffError:  # an install without the conditional model
        return
    sub = folder / "digits-cond"
    sub.mkdir()
    onnx_path = sub / "digits-cond.onnx"
    t0 = time.perf_counter()
    _, check = export_source("bundled-cond", onnx_path, ExportOptions(guidance=True))
    yield Exported("digits-cond", "bundled-cond --guidance", onnx_path, check,
                   time.perf_counter() - t0)
    D = runtime.load(onnx_path, threads=threads)
    accuracy = label_accuracy_for(D.info)
    labels = np.repeat(np.arange(D.info.num_classes), 10)
    for w in GUIDANCE_SCALES:
        x = runtime.sample(D, len(labels), seed=seed, condition=runtime.Condition(labels, w),
                           run=runtime.RunOptions(batch=len(labels)))
        sub_w = sub / f"w{w:g}"
        sub_w.mkdir()
        yield Guided(w, accuracy(x, labels),
                     write_samples(sub_w, x, D.info, {"guidance": w, "seed": seed}, labels, 10))


def _distilled(folder, num, seed, threads):
    """The consistency-distilled digits model (bundled-cd) on the cd-digits presets:
    FD to the held-out digits and wall time per sample at 1, 2 and 4 calls, and a
    grid of its 2-step samples."""
    from edgediff import runtime
    from edgediff.configs import preset
    from edgediff.export.onnx import ExportOptions, export_source
    from edgediff.lab.outputs import write_samples
    from edgediff.lab.quality import score_for
    from edgediff.lab.timing import TimedRequest, timed_sample
    from edgediff.models.bundled import CONSISTENCY, bundled_path

    try:
        bundled_path(CONSISTENCY)
    except EdgediffError:  # an install without the distilled model
        return
    sub = folder / "digits-cd"
    sub.mkdir()
    onnx_path = sub / "digits-cd.onnx"
    t0 = time.perf_counter()
    _, check = export_source("bundled-cd", onnx_path, ExportOptions())
    yield Exported("digits-cd", "bundled-cd", onnx_path, check, time.perf_counter() - t0)
    D = runtime.load(onnx_path, threads=threads)
    score, batch = score_for(D.info, num, seed), min(num, 256)
    runtime.sample(D, batch, seed=seed, steps=1)  # warm-up
    rows, grid = [], None
    for steps in (1, 2, 4):
        solver, _, options = preset(f"cd-digits-{steps}")
        sigmas = [*options.pop("sigmas"), 0.0]
        x, times = timed_sample(D, TimedRequest(solver, steps, num, batch, seed, options,
                                                sigmas=sigmas))
        rows.append((steps, score(x), 1e3 * float(np.median(times))))
        grid = x if steps == 2 else grid
    meta = {"artifact": onnx_path.name, "preset": "cd-digits-2", "seed": seed, "num": num}
    yield Distilled(rows, score, write_samples(sub, grid, D.info, meta))
