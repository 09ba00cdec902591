"""The solver lab: run solvers on one artifact, side by side, and measure
speed and quality the same way every time (docs/design.md, "Measuring")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.catalogue import nfe, spec
from edgediff.errors import EdgediffError
from edgediff.grids import exact_grid
from edgediff.lab.cluster import RayOptions
from edgediff.lab.quality import Score, reference_rms
from edgediff.lab.runs import Run, check_runs
from edgediff.lab.timing import TimedRequest, timed_sample
from edgediff.runtime import RunOptions, sample
from edgediff.runtime._call import Denoiser
from edgediff.runtime.backends import BackendOptions


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
    sigmas: list[float] | None = None    # the σ's stepped on (None: the schedule's grid)
    model: str | None = None             # which artifact, when bench runs two (--teacher)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_deterministic(solver: str, options: dict[str, Any]) -> bool:
    return spec(solver).deterministic(options)


@dataclass(frozen=True)
class BenchOptions:
    """How ``bench`` runs, checked when made: ``num`` samples per run (0 … num−1 of
    ``seed``, so every run starts from the same x_T), ``batch`` at a time; ODE
    solvers scored against Heun at ``reference_steps``; ``guidance``, scales to run
    every solver at (class-conditional models); ``fid`` with torch-fidelity.
    ``backend`` is how the Ray workers open the artifact (``ray``: None runs here,
    on the denoiser the caller opened the same way); its ``max_batch`` is ``batch``."""

    num: int = 256
    batch: int = 32
    seed: int = 0
    reference_steps: int = 100
    guidance: tuple[float, ...] | None = None
    fid: bool = False
    backend: BackendOptions = field(default_factory=BackendOptions)
    ray: RayOptions | None = None

    def __post_init__(self):
        for name, low in (("num", 1), ("batch", 1), ("reference_steps", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise EdgediffError(f"{name} must be an integer ≥ {low}, got {value!r}")


@dataclass
class Work:
    """One thing to sample: a run (at a guidance scale) or the reference solution."""

    label: str
    solver: str
    steps: int
    options: dict[str, Any]
    guidance: float | None = None
    sigmas: list[float] | None = None  # an exact grid (--sigmas/--timesteps)

    def request(self, options: BenchOptions, labels, first: int = 0,
                num: int | None = None) -> TimedRequest:
        """Samples ``first … first+num−1`` of this work (all of ``options.num``)."""
        num = options.num if num is None else num
        return TimedRequest(self.solver, self.steps, num, options.batch, options.seed,
                            self.options, self.guidance, first,
                            None if labels is None else labels[first:first + num], self.sigmas)


def run_bench(denoiser: Denoiser, runs: list[Run], options: BenchOptions,
              score: Score | None, *, progress: Callable[[str], None] | None = None,
              pool=None) -> list[Row]:
    """Every run on the same seeds (so the same x_T). With ``options.guidance`` (a
    class-conditional artifact), every run at every scale: samples in the data's
    class proportions, scored by label accuracy and distance.

    Here, the runs go one after another after a warm-up; with a Ray ``pool``
    (``edgediff.lab.cluster``), every run's shards go out at once, each worker
    warmed up when it loads the artifact. The samples are the same either way,
    so is every quality column; the times are each worker's own."""
    from edgediff.lab.quality import class_labels_for, label_accuracy_for

    o, guidance = options, options.guidance
    labels = class_labels_for(denoiser.info, o.num) if guidance else None
    from edgediff.lab.tuned import tuned_sigmas
    from edgediff.settings import SolverSettings

    work = []
    for label, solver, steps, opts in runs:
        opts = dict(opts)
        exact = exact_grid(denoiser.info, opts)
        steps = steps if exact is None else len(exact) - 1
        if exact is None:  # a grid tuned for this run (edgediff tune-grid), if the sidecar has one
            exact, _ = tuned_sigmas(getattr(denoiser, "path", None), denoiser.info,
                                    SolverSettings.resolve(denoiser.info, solver, steps, opts),
                                    opts)
            label += "" if exact is None else " (tuned)"
        work += [Work(f"{label} w={w:g}" if guidance else label, solver, steps, opts, w, exact)
                 for w in (guidance or [None])]
    reference = None  # a consistency model's f is no ODE's D: no Heun solution of it
    few_step = denoiser.info.parameterization in ("consistency", "lcm")
    if not guidance and not few_step and any(is_deterministic(w.solver, w.options)
                                             for w in work):
        reference = Work(f"reference: heun, {o.reference_steps} steps", "heun",
                         o.reference_steps, {})
    todo = ([reference] if reference else []) + work
    if pool is None:
        sample(denoiser, min(o.batch, o.num), seed=o.seed, solver="euler", steps=2)  # warm-up
        results = []
        for w in todo:
            if progress:
                progress(w.label)
            results.append(timed_sample(denoiser, w.request(o, labels)))
    else:
        results = _on_pool(pool, todo, o, labels, progress)
    if reference is not None:
        reference_x, _ = results.pop(0)
    accuracy = label_accuracy_for(denoiser.info) if guidance else None
    rows = []
    for w, (x, times) in zip(work, results, strict=True):
        rms = None
        if reference is not None and is_deterministic(w.solver, w.options):
            rms = reference_rms(x, reference_x)
        ms = np.asarray(times) * 1e3
        rows.append(Row(w.label, w.solver, w.steps, nfe(w.solver, w.steps),
                        float(np.median(ms)), float(np.percentile(ms, 90)),
                        float(1e3 / np.median(ms)), rms, score(x) if score else None,
                        score.name if score else None, guidance=w.guidance,
                        label_accuracy=accuracy(x, labels) if accuracy else None,
                        sigmas=w.sigmas))
    return rows


def _on_pool(pool, todo: list[Work], options: BenchOptions, labels, progress):
    """Every (work, shard) request at once over the pool's workers; shards are whole
    batches, about two per worker per run, so the batches are the local run's."""
    num, batch = options.num, options.batch
    batches = -(-num // batch)
    per_shard = batch * -(-batches // (2 * len(pool.actors)))
    requests, owners = [], []
    for k, w in enumerate(todo):
        for first in range(0, num, per_shard):
            requests.append(w.request(options, labels, first, min(per_shard, num - first)))
            owners.append(k)
    if progress:
        progress(f"{len(requests)} shards of {len(todo)} runs on {len(pool.actors)} Ray workers")
    results: list[tuple[list, list]] = [([], []) for _ in todo]
    for k, (x, times) in zip(owners, pool.map_timed(requests), strict=True):
        results[k][0].append(x)
        results[k][1].extend(times)
    return [(np.concatenate(xs), times) for xs, times in results]


@dataclass
class Study:
    """A finished ``bench``: its rows, the distribution score and its floor, what
    FID said, and the files written."""

    rows: list[Row]
    score: Score | None
    meta: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Teacher:
    """A second artifact ``bench`` runs beside the first (``--teacher``): a distilled
    model's teacher, on its own runs, scored on the same seeds by the same score."""

    denoiser: Denoiser
    artifact: Path
    runs: list[Run]


def run_study(denoiser: Denoiser, artifact: Path, folder: Path, runs: list[Run],
              options: BenchOptions, *, teacher: Teacher | None = None,
              progress: Callable[[str], None] | None = None) -> Study:
    """``bench``: every run side by side on one artifact, scored, with FID where it is
    usable; bench.csv, bench.json and the figures written into ``folder``. With
    ``options.ray``, the runs and their shards go out to Ray actors, each opening
    the artifact with ``options.backend``. With a ``teacher``, its runs follow in the
    same process, each row naming its artifact, and the figures put both on one set
    of axes."""
    from edgediff.lab.outputs import require_figures, write_bench
    from edgediff.lab.quality import score_for

    o = options
    require_figures()  # before any work
    check_runs(denoiser.info, runs)
    score = score_for(denoiser.info, o.num, o.seed)
    if teacher is not None:
        _check_teacher(denoiser.info, teacher, o)
    pool = None
    if o.ray is not None:
        from edgediff.lab.cluster import RayPool

        pool = RayPool(artifact, replace(o.backend, max_batch=o.batch), o.ray)
    try:
        rows = run_bench(denoiser, runs, o, score, progress=progress, pool=pool)
        if teacher is not None:
            for r in rows:
                r.model = artifact.stem
            more = run_bench(teacher.denoiser, teacher.runs, o, score, progress=progress)
            for r in more:
                r.model = teacher.artifact.stem
            rows += more
    finally:
        if pool is not None:
            pool.close()
    meta = {"artifact": str(artifact), "artifact_name": artifact.stem, "num": o.num,
            "batch": o.batch, "seed": o.seed, "reference_steps": o.reference_steps,
            "distance_floor": score.floor if score else None,
            "distance_floor_note": score.floor_note if score else None}
    study = Study(rows, score, meta)
    if o.fid and o.guidance:
        study.notes.append("FID skipped: it is not computed per guidance scale")
    elif o.fid:
        from edgediff.lab.fid import fid as compute_fid

        for r, (label, solver, steps, opts) in zip(rows, runs, strict=True):
            x = sample(denoiser, o.num, seed=o.seed, solver=solver, steps=steps, options=opts,
                       run=RunOptions(batch=o.batch))
            value, how = compute_fid(x, denoiser.info)
            study.notes.append(f"{label}: {how}" + ("" if value is None else f": {value:.3f}"))
            if value is None:
                break  # the reason is the same for every run
            r.fid = value
    study.written = write_bench(folder, rows, meta)
    return study


def _check_teacher(info, teacher: Teacher, options: BenchOptions) -> None:
    """The teacher must make the same samples, scored the same way, on this machine."""
    t = teacher.denoiser.info
    if t.sample_shape != info.sample_shape or t.reference != info.reference:
        raise EdgediffError(f"--teacher {teacher.artifact.name} does not describe the same "
                            f"samples (shape {list(t.sample_shape)} vs "
                            f"{list(info.sample_shape)}, quality reference {t.reference} vs "
                            f"{info.reference}): nothing would compare")
    if options.ray is not None or options.guidance:
        raise EdgediffError("--teacher runs here, unguided: drop --ray and --guidance")
    check_runs(t, teacher.runs)
