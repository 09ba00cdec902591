"""The solver lab: run solvers on one artifact, side by side, and measure
speed and quality the same way every time (docs/design.md, "Measuring")."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.catalogue import SOLVER_NAMES, nfe, spec, steps_for_nfe
from edgediff.errors import EdgediffError
from edgediff.lab.quality import Score, reference_rms
from edgediff.runtime import sample
from edgediff.runtime._call import Denoiser

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
                 guidance: float | None = None, first: int = 0
                 ) -> tuple[np.ndarray, list[float]]:
    """Samples ``first … first+num−1``, and the wall time per sample of each batch
    (warm: the caller warms up)."""
    out, times = [], []
    for start in range(0, num, batch):
        n = min(batch, num - start)
        t0 = time.perf_counter()
        out.append(sample(denoiser, n, seed=seed, first=first + start, batch=n, solver=solver,
                          steps=steps, options=options, guidance=guidance,
                          labels=None if labels is None else labels[start:start + n]))
        times.append((time.perf_counter() - t0) / n)
    return np.concatenate(out), times


@dataclass
class Work:
    """One thing to sample: a run (at a guidance scale) or the reference solution."""

    label: str
    solver: str
    steps: int
    options: dict[str, Any]
    guidance: float | None = None


def run_bench(denoiser: Denoiser, runs: list[Run], *, num: int, batch: int, seed: int,
              score: Score | None, reference_steps: int = 100,
              progress: Callable[[str], None] | None = None,
              guidance: list[float] | None = None, pool=None) -> list[Row]:
    """Every run on the same seeds (so the same x_T). With ``guidance`` (a
    class-conditional artifact), every run at every scale: samples in the data's
    class proportions, scored by label accuracy and distance.

    Here, the runs go one after another after a warm-up; with a Ray ``pool``
    (``edgediff.lab.cluster``), every run's shards go out at once, each worker
    warmed up when it loads the artifact. The samples are the same either way,
    so is every quality column; the times are each worker's own."""
    from edgediff.lab.quality import class_labels_for, label_accuracy_for

    labels = class_labels_for(denoiser.info, num) if guidance else None
    work = [Work(f"{label} w={w:g}" if guidance else label, solver, steps, options, w)
            for label, solver, steps, options in runs for w in (guidance or [None])]
    reference = None
    if not guidance and any(is_deterministic(w.solver, w.options) for w in work):
        reference = Work(f"reference: heun, {reference_steps} steps", "heun",
                         reference_steps, {})
    todo = ([reference] if reference else []) + work
    if pool is None:
        sample(denoiser, min(batch, num), seed=seed, solver="euler", steps=2)  # warm-up
        results = []
        for w in todo:
            if progress:
                progress(w.label)
            results.append(timed_sample(denoiser, num, batch, seed, w.solver, w.steps,
                                        w.options, labels, w.guidance))
    else:
        results = _on_pool(pool, todo, num, batch, seed, labels, progress)
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
                        label_accuracy=accuracy(x, labels) if accuracy else None))
    return rows


def _on_pool(pool, todo: list[Work], num: int, batch: int, seed: int, labels, progress):
    """Every (work, shard) request at once over the pool's workers; shards are whole
    batches, about two per worker per run, so the batches are the local run's."""
    batches = -(-num // batch)
    per_shard = batch * -(-batches // (2 * len(pool.actors)))
    requests, owners = [], []
    for k, w in enumerate(todo):
        for first in range(0, num, per_shard):
            n = min(per_shard, num - first)
            requests.append(dict(num=n, batch=batch, seed=seed, solver=w.solver, steps=w.steps,
                                 options=w.options, guidance=w.guidance, first=first,
                                 labels=None if labels is None else labels[first:first + n]))
            owners.append(k)
    if progress:
        progress(f"{len(requests)} shards of {len(todo)} runs on {len(pool.actors)} Ray workers")
    results: list[tuple[list, list]] = [([], []) for _ in todo]
    for k, (x, times) in zip(owners, pool.map_timed(requests), strict=True):
        results[k][0].append(x)
        results[k][1].extend(times)
    return [(np.concatenate(xs), times) for xs, times in results]


# what to run: the study plan from a suite or from solvers × steps/NFE


def _ints(text: str | None, what: str) -> list[int]:
    if text is None:
        return []
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgediffError(f"{what} takes comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise EdgediffError(f"{what} must be integers ≥ 1, got {text!r}")
    return values


def _value(text: str):
    """An option value as TOML would read it: integer, float, true/false or a word."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_solver(text: str) -> tuple[str, dict]:
    """``name`` or ``name:option=value[:option=value…]`` (e.g. ``unipc:order=2``)."""
    name, *pairs = text.strip().split(":")
    if name not in SOLVER_NAMES:
        raise EdgediffError(f"unknown solver {name!r}; choose from {', '.join(SOLVER_NAMES)}")
    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise EdgediffError(f"--solvers: {text!r}: options go as name:option=value, e.g. "
                                f"unipc:order=2")
        options[key] = _value(value)
    return name, options


def plan_runs(suite, solvers, steps, nfe_list):
    """(runs, suite's sample count) from a suite or from --solvers × --steps/--nfe."""
    if suite:
        if solvers or steps or nfe_list:
            raise EdgediffError("give either --suite or --solvers with --steps/--nfe, not both")
        from edgediff.configs import suite_runs

        return suite_runs(suite)
    chosen = [parse_solver(s) for s in (solvers or "euler,heun,dpmpp_2m").split(",")
              if s.strip()]
    step_list, nfes = _ints(steps, "--steps"), _ints(nfe_list, "--nfe")
    if step_list and nfes:
        raise EdgediffError("give --steps or --nfe, not both")
    if not step_list and not nfes:
        nfes = [5, 9, 19, 35]
    runs = []
    for name, options in chosen:
        tag = "".join(f"({k}={v})" for k, v in options.items())
        for n in dict.fromkeys(step_list or [steps_for_nfe(name, n) for n in nfes]):
            runs.append((f"{name}{tag}-{n}", name, n, options))
    return runs, None


def check_runs(info, runs) -> None:
    """Every run's solver, steps, options and σ grid, checked before the first one
    starts: a bad value in the last run of a suite should not cost the others."""
    from edgediff.grids import settings_grid
    from edgediff.settings import SolverSettings

    for label, solver, steps, options in runs:
        try:
            settings_grid(info, SolverSettings.resolve(info, solver, steps, options))
        except EdgediffError as e:
            raise EdgediffError(f"run {label}: {e}") from None


def guidance_scales(text: str | None, info) -> list[float] | None:
    if text is None:
        return None
    if not info.num_classes:
        raise EdgediffError("--guidance sweeps classifier-free guidance, which needs a "
                            "class-conditional model")
    from edgediff.conditioning import check_guidance

    try:
        return [check_guidance(float(v)) for v in text.split(",") if v.strip()] or None
    except ValueError:
        raise EdgediffError(f"--guidance takes comma-separated scales, got {text!r}") from None




@dataclass
class Study:
    """A finished ``bench``: its rows, the distribution score and its floor, what
    FID said, and the files written."""

    rows: list[Row]
    score: Score | None
    meta: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def run_study(denoiser: Denoiser, artifact: Path, folder: Path, runs: list[Run], *, num: int,
              batch: int, seed: int, reference_steps: int = 100, fid: bool = False,
              guidance: list[float] | None = None,
              progress: Callable[[str], None] | None = None, ray_address: str | None = None,
              workers: int = 2, threads: int | None = None, provider: str = "cpu") -> Study:
    """``bench``: every run side by side on one artifact, scored, with FID where it is
    usable; bench.csv, bench.json and the figures written into ``folder``. With
    ``ray_address`` ("local" starts a cluster, "auto" joins one), the runs and their
    shards go out to ``workers`` Ray actors (``threads`` ONNX Runtime threads each)."""
    from edgediff.lab.outputs import require_figures, write_bench
    from edgediff.lab.quality import score_for

    require_figures()  # before any work
    check_runs(denoiser.info, runs)
    score = score_for(denoiser.info, num, seed)
    pool = None
    if ray_address is not None:
        from edgediff.lab.cluster import RayPool

        pool = RayPool(artifact, workers=workers, threads=threads or 1, max_batch=batch,
                       address=None if ray_address == "local" else ray_address,
                       provider=provider)
    try:
        rows = run_bench(denoiser, runs, num=num, batch=batch, seed=seed, score=score,
                         reference_steps=reference_steps, guidance=guidance,
                         progress=progress, pool=pool)
    finally:
        if pool is not None:
            pool.close()
    meta = {"artifact": str(artifact), "artifact_name": artifact.stem, "num": num,
            "batch": batch, "seed": seed, "reference_steps": reference_steps,
            "distance_floor": score.floor if score else None,
            "distance_floor_note": score.floor_note if score else None}
    study = Study(rows, score, meta)
    if fid and guidance:
        study.notes.append("FID skipped: it is not computed per guidance scale")
    elif fid:
        from edgediff.lab.fid import fid as compute_fid

        for r, (label, solver, steps, options) in zip(rows, runs, strict=True):
            x = sample(denoiser, num, seed=seed, batch=batch, solver=solver, steps=steps,
                       options=options)
            value, how = compute_fid(x, denoiser.info)
            study.notes.append(f"{label}: {how}" + ("" if value is None else f": {value:.3f}"))
            if value is None:
                break  # the reason is the same for every run
            r.fid = value
    study.written = write_bench(folder, rows, meta)
    return study
