"""``edgediff demo``: the whole product on the shipped models, in a few minutes.

Export the bundled digits model and the exact 2-D Gaussian mixture to ONNX
(validated against torch), then, with the torch-free runtime, run a solver
comparison on each — speed, reference-solution error and distance to the
data — and write sample images, tables and plots.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

from edgediff.errors import missing_extra
from edgediff.fileio import atomic_folder

# (label, solver, steps, options): ODE solvers at equal NFE, plus stochastic samplers
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


def _table(rows, floor, name, note) -> None:
    click.echo(f"{'run':<15}{'NFE':>5}{'ms/sample':>11}{'ref RMS':>10}{name:>10}")
    for r in rows:
        rms = "-" if r.reference_rms is None else f"{r.reference_rms:.4g}"
        dist = "-" if r.distance is None else f"{r.distance:.4g}"
        click.echo(f"{r.label:<15}{r.nfe:>5}{r.ms_median:>11.3f}{rms:>10} {dist:>9}")
    click.echo(f"{name} floor ({note}): {floor:.4f}")


@click.command("demo")
@click.option("--num", type=click.IntRange(16), default=256, show_default=True,
              help="Digits samples per run (the mixture gets 8× as many).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed: every run starts from the same x_T.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="ONNX Runtime CPU threads (default: its own choice).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/demo"), show_default=True, help="Output folder.")
def command(num: int, seed: int, threads: int | None, out: Path) -> None:
    """Export the shipped models, then compare solvers on them with the runtime.

    \b
    1. export the bundled digits model and the exact 2-D mixture to ONNX,
       validated against torch with ONNX Runtime;
    2. on each, run Euler, Heun and DPM-Solver++(2M) at equal NFE (and, on the
       mixture, the stochastic samplers) with the torch-free runtime;
    3. print speed, error against a high-accuracy solution and distance to the
       data, and write sample images, bench.csv/json and plots under OUT.

    \b
    Example:
      edgediff demo --num 256 --seed 0 -o out/demo
    """
    try:
        import torch  # noqa: F401  (export needs it)
    except ImportError:
        raise missing_extra("torch", "torch") from None
    t_start = time.perf_counter()
    with atomic_folder(out) as folder:  # nothing lands unless the whole demo succeeds
        for name, source, runs, n in (("mixture", "mixture2d", MIXTURE_RUNS, 8 * num),
                                      ("digits", "bundled", DIGITS_RUNS, num)):
            _one_model(folder, out, name, source, runs, n, seed, threads)
        _class_grids(folder, out, seed, threads)
    click.echo(f"\ndemo done in {time.perf_counter() - t_start:.0f} s; outputs under {out}")


def _one_model(folder: Path, out: Path, name: str, source: str, runs, n: int, seed: int,
               threads: int | None) -> None:
    """Export one model into ``folder``/name, compare its solvers, write what it shows.
    Paths are printed as they will be once the run has succeeded (under ``out``)."""
    from edgediff import runtime
    from edgediff.bench import run_bench
    from edgediff.cli.bench import _write
    from edgediff.cli.export import resolve_source
    from edgediff.cli.sample import write_outputs
    from edgediff.export.onnx import export_onnx
    from edgediff.quality import score_for

    sub = folder / name
    sub.mkdir()
    onnx_path = sub / f"{name}.onnx"
    click.echo(f"\n== {name}: export {source} -> {out / name / onnx_path.name}")
    model, digest = resolve_source(source)
    t0 = time.perf_counter()
    check = export_onnx(model, onnx_path, source_sha256=digest, force=True)
    click.echo(f"   ONNX Runtime vs torch {check} ({time.perf_counter() - t0:.1f} s, "
               f"{onnx_path.stat().st_size / 2**20:.2f} MiB)")
    D = runtime.load(onnx_path, threads=threads)
    score = score_for(D.info, n, seed)
    click.echo(f"== {name}: {len(runs)} runs x {n} samples with the NumPy + ONNX Runtime "
               f"sampler")
    with click.progressbar(length=len(runs) + 1, label="   sampling", show_eta=False,
                           file=sys.stderr) as bar:
        rows = run_bench(D, runs, num=n, batch=min(n, 256), seed=seed, score=score,
                         progress=lambda _label: bar.update(1))
    _table(rows, score.floor, score.name, score.floor_note)
    meta = {"artifact": str(out / name / onnx_path.name), "artifact_name": name, "num": n,
            "batch": min(n, 256), "seed": seed, "reference_steps": 100,
            "distance_floor": score.floor}
    written = _write(sub, rows, meta)
    default = D.info.default_sampler
    x = runtime.sample(D, n, seed=seed, batch=min(n, 256))
    written += write_outputs(sub, x, D.info, {**default, "seed": seed, "num": n})
    click.echo("   wrote " + ", ".join(str(out / p.relative_to(folder)) for p in written))


GUIDANCE_SCALES = (1.0, 3.0)


def _class_grids(folder: Path, out: Path, seed: int, threads: int | None) -> None:
    """The class-conditional digits model, exported with --guidance (one launch per
    step), sampled class by class at two guidance scales: a grid per scale with one
    row per digit, and the share the shipped classifier reads as asked."""
    from edgediff import runtime
    from edgediff.cli.export import resolve_source
    from edgediff.cli.sample import write_outputs
    from edgediff.errors import EdgediffError
    from edgediff.export.onnx import export_onnx
    from edgediff.quality import label_accuracy_for

    try:
        model, digest = resolve_source("bundled-cond")
    except EdgediffError:
        return  # an install without the conditional model
    sub = folder / "digits-cond"
    sub.mkdir()
    onnx_path = sub / "digits-cond.onnx"
    click.echo(f"\n== digits, class-conditional: export bundled-cond --guidance -> "
               f"{out / 'digits-cond' / onnx_path.name}")
    export_onnx(model, onnx_path, source_sha256=digest, guidance=True)
    D = runtime.load(onnx_path, threads=threads)
    accuracy = label_accuracy_for(D.info)
    labels = np.repeat(np.arange(D.info.num_classes), 10)
    written = []
    for w in GUIDANCE_SCALES:
        x = runtime.sample(D, len(labels), seed=seed, batch=len(labels), labels=labels,
                           guidance=w)
        click.echo(f"   guidance w = {w:g}: {accuracy(x, labels):.0%} of samples read as the "
                   f"digit asked for (shipped classifier)")
        sub_w = sub / f"w{w:g}"
        sub_w.mkdir()
        written += write_outputs(sub_w, x, D.info, {"guidance": w, "seed": seed}, labels, 10)
    click.echo("   wrote " + ", ".join(str(out / p.relative_to(folder)) for p in written))
