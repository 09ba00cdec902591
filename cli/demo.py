"""``edgediff demo``: the whole product on the shipped models, in a few minutes
(``edgediff.lab.demo`` does the work; this prints it)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from edgediff.fileio import atomic_folder


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
       mixture, the stochastic solvers) with the torch-free runtime;
    3. print speed, error against a high-accuracy solution and distance to the
       data, and write sample images, bench.csv/json and figures under OUT;
    4. sample the class-conditional digits model class by class at guidance
       scales 1 and 3;
    5. sample the consistency-distilled digits model at 1, 2 and 4 steps.

    \b
    Example:
      edgediff demo --num 256 --seed 0 -o out/demo
    """
    import torch  # noqa: F401  (export needs it: a missing extra says so before any work)

    from edgediff.lab.demo import Compared, Distilled, Exported, run_demo

    t_start = time.perf_counter()
    with atomic_folder(out) as folder:  # nothing lands unless the whole demo succeeds
        def shown(path: Path) -> Path:  # where a file will be once the demo has succeeded
            return out / path.relative_to(folder)

        def progress(label: str) -> None:
            click.echo(f"   running {label}", err=True)

        for step in run_demo(folder, num=num, seed=seed, threads=threads, progress=progress):
            if isinstance(step, Exported):
                click.echo(f"\n== {step.name}: export {step.source} -> {shown(step.path)}")
                click.echo(f"   ONNX Runtime vs torch {step.validation} ({step.seconds:.1f} s, "
                           f"{step.path.stat().st_size / 2**20:.2f} MiB)")
            elif isinstance(step, Compared):
                click.echo(f"== {step.name}: {step.runs} runs x {step.num} samples with the "
                           f"NumPy + ONNX Runtime solvers")
                _table(step.study)
            elif isinstance(step, Distilled):
                click.echo("== digits-cd: the digits model consistency-distilled, on its "
                           "presets cd-digits-1/2/4")
                for steps, fd, ms in step.rows:
                    click.echo(f"   {steps} step{'s' if steps > 1 else ' '}: {step.score.name} "
                               f"{fd:.4g}, {ms:.3f} ms/sample")
            else:
                click.echo(f"   guidance w = {step.scale:g}: {step.accuracy:.0%} of samples read "
                           f"as the digit asked for (shipped classifier)")
            if getattr(step, "written", None):
                click.echo("   wrote " + ", ".join(str(shown(p)) for p in step.written))
    click.echo(f"\ndemo done in {time.perf_counter() - t_start:.0f} s; outputs under {out}")


def _table(study) -> None:
    score = study.score
    click.echo(f"{'run':<15}{'NFE':>5}{'ms/sample':>11}{'ref RMS':>10}{score.name:>10}")
    for r in study.rows:
        rms = "-" if r.reference_rms is None else f"{r.reference_rms:.4g}"
        dist = "-" if r.distance is None else f"{r.distance:.4g}"
        click.echo(f"{r.label:<15}{r.nfe:>5}{r.ms_median:>11.3f}{rms:>10} {dist:>9}")
    click.echo(f"{score.name} floor ({score.floor_note}): {score.floor:.4f}")
