"""``edgediff tune-grid``: tune a deterministic solver's σ grid for one artifact."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgediff.cli._sampling import pass_knobs, resolve, solver_options


@click.command("tune-grid")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@solver_options
@click.option("--calibration", type=click.IntRange(1), default=64, show_default=True,
              help="Calibration samples: the x_T the grid is tuned on.")
@click.option("--seed", type=click.IntRange(0), default=1000, show_default=True,
              help="Seed of the calibration noise. Judge the grid on other seeds (sample "
                   "uses seed 0 by default), so that what you see is not what was fitted.")
@click.option("--reference-steps", type=click.IntRange(2), default=100, show_default=True,
              help="Heun steps of the high-accuracy solution the grid is tuned towards.")
@click.option("--evaluations", type=click.IntRange(1), default=None,
              help="Most runs of the solver the search may spend [default: 25·(steps+1)].")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for ONNX Runtime (default: its own choice).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the plot [default: beside the artifact and its sidecar].")
@pass_knobs
def command(artifact, preset, solver, steps, calibration, seed, reference_steps, evaluations,
            threads, out, knobs):
    """Tune the σ grid of a deterministic solver for ARTIFACT and store it in the
    sidecar ARTIFACT.grids.json, where sample finds it.

    The search moves the K step σ's (σ_max stays; the last σ before 0 may rise
    above σ_min) to minimise the mean squared error of the solver's samples
    against a Heun solution with --reference-steps steps from the same x_T, on
    --calibration samples of --seed. It runs the torch-free runtime, so it
    costs about (--evaluations) × (--calibration) samples of the solver.

    sample then uses the tuned grid whenever the solver, the steps and the
    solver options match and no grid option is given, and says so;
    '--grid default' samples on the schedule's own grid instead. The sidecar
    records the artifact's sha256, so a re-exported model ignores it (with a
    warning) until it is tuned again. Stochastic solvers are refused: their
    samples are no fixed function of x_T, so there is nothing to tune against.

    Writes a plot of both grids (σ against step index, log axis) beside the
    sidecar, or into -o.

    \b
    Examples:
      edgediff tune-grid digits.onnx --solver dpmpp_2m --steps 5
      edgediff tune-grid digits.onnx --solver dpmpp_3m --weights published --steps 5
      edgediff sample digits.onnx --solver dpmpp_2m --steps 5      # uses the tuned grid
      edgediff sample digits.onnx --solver dpmpp_2m --steps 5 --grid default
    """
    from edgediff import runtime
    from edgediff.gridfile import write_grid
    from edgediff.lab.outputs import figures_missing
    from edgediff.lab.tune import TuneOptions, tune_grid

    solver, steps, options = resolve(preset, solver, steps, **knobs)
    D = runtime.load(artifact, threads=threads)
    tune = TuneOptions(calibration=calibration, seed=seed, reference_steps=reference_steps,
                       evaluations=evaluations, batch=min(calibration, 64))
    with click.progressbar(length=1, label="tuning", file=sys.stderr, show_pos=True,
                           item_show_func=lambda s: s) as bar:
        def progress(done, total, best):
            bar.length = total
            bar.update(done - bar.pos, None if best is None else f"MSE {best:.4g}")

        entry = tune_grid(D, solver, steps, options, tune, progress=progress)
    sidecar = write_grid(artifact, entry)
    missing, plot = figures_missing(), None
    if missing is None:  # the plot needs the lab extra; the grid itself does not
        from edgediff.lab.plots import line_plot

        folder = out or artifact.parent
        folder.mkdir(parents=True, exist_ok=True)
        plot = folder / f"{artifact.name}.grid-{entry.solver}-{entry.steps}.png"
        line_plot(plot, {name: (list(range(entry.steps)), s[:-1]) for name, s in (
            ("default grid", entry.default_sigmas), ("tuned grid", entry.sigmas))},
            xlabel="step index i", ylabel="σ_i",
            title=f"{artifact.name}: {entry.solver}, {entry.steps} steps")
    click.echo(f"{entry.solver}, {entry.steps} steps, {calibration} calibration samples of "
               f"seed {seed}: MSE vs Heun-{reference_steps} {entry.objective_before:.4g} → "
               f"{entry.objective_after:.4g} ({entry.evaluations} runs)")
    click.echo("default σ: " + " ".join(f"{s:.4g}" for s in entry.default_sigmas))
    click.echo("tuned σ:   " + " ".join(f"{s:.4g}" for s in entry.sigmas))
    click.echo(f"wrote {sidecar}")
    click.echo(f"wrote {plot}" if plot else f"no plot: {missing}")
