"""``edgediff bench``: solvers side by side on one artifact — speed and quality."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click

from edgediff.cli._sampling import backend_options, load_artifact
from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_folder, atomic_path
from edgediff.solvers import SOLVER_NAMES, steps_for_nfe


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
    from edgediff.solvers import SamplerSettings

    for label, solver, steps, options in runs:
        try:
            settings_grid(info, SamplerSettings.resolve(info, solver, steps, options))
        except EdgediffError as e:
            raise EdgediffError(f"run {label}: {e}") from None


def _fmt(v, spec):
    return format("-", spec.replace("g", "").split(".")[0]) if v is None else format(v, spec)


def _write(folder: Path, rows, meta) -> list[Path]:
    from edgediff.plots import line_plot

    written = []
    buf = io.StringIO()
    fields = list(rows[0].as_dict())
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow(r.as_dict())
    for name, text in (("bench.csv", buf.getvalue()),
                       ("bench.json", json.dumps({**meta, "rows": [r.as_dict() for r in rows]},
                                                 indent=1) + "\n")):
        with atomic_path(folder / name) as tmp:
            Path(tmp).write_text(text)
        written.append(folder / name)
    metrics = [("reference_rms", "rms error vs reference solution")]
    if rows[0].distance_name:
        metrics.append(("distance", f"{rows[0].distance_name.lower()} to the data"))
    axes = [("nfe", "nfe"), ("ms_median", "ms per sample")]
    if rows[0].guidance is not None:  # a guidance sweep: quality against w
        metrics.append(("label_accuracy", "label accuracy"))
        axes = [("guidance", "guidance scale w")]
    for key, label in metrics:
        for axis, xlabel in axes:
            series = {}
            for r in rows:
                if getattr(r, key) is not None:
                    run = r.label.split(" w=")[0] if axis == "guidance" else (
                        r.solver if r.label.startswith(r.solver) else r.label)
                    xs, ys = series.setdefault(run, ([], []))
                    xs.append(getattr(r, axis))
                    ys.append(getattr(r, key))
            if not series:
                continue
            name = {"nfe": "nfe", "ms_median": "latency", "guidance": "guidance"}[axis]
            path = folder / f"{key}_vs_{name}.png"
            with atomic_path(path) as tmp:
                line_plot(tmp, series, xlabel=xlabel, ylabel=label,
                          title=f"{meta['artifact_name']}: {label} vs {xlabel}")
            written.append(path)
    return written


@click.command("bench")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--suite", default=None, metavar="NAME",
              help="A bench suite from configs/bench.toml (quick, study, stochastic).")
@click.option("--solvers", default=None, metavar="A,B,…",
              help="Comma-separated solvers, each optionally with options as "
                   "name:option=value (unipc:order=2, deis:basis=log_rho:grid=lambda) "
                   "[default: euler,heun,dpmpp_2m].")
@click.option("--steps", default=None, metavar="N,M,…", help="Step counts to run each solver at.")
@click.option("--nfe", "nfe_list", default=None, metavar="N,M,…",
              help="Denoiser-call budgets instead of steps (equal-cost comparisons) "
                   "[default: 5,9,19,35].")
@click.option("--num", type=click.IntRange(2), default=None,
              help="Samples per run [default: the suite's, else 256].")
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Every run starts from the same x_T (samples 0…num−1 of this seed).")
@click.option("--reference-steps", type=click.IntRange(2), default=100, show_default=True,
              help="Heun steps of the high-accuracy solution that ODE solvers are scored "
                   "against.")
@click.option("--guidance", "guidance_list", default=None, metavar="W,W,…",
              help="Class-conditional models: run every solver at each guidance scale, "
                   "with labels in the data's class proportions; prints label accuracy and "
                   "the distance to the data per scale, and plots both against w.")
@click.option("--fid", is_flag=True,
              help="Also compute FID with a locally installed torch-fidelity and cached "
                   "Inception weights (skipped, with a message, when absent).")
@backend_options
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/bench"), show_default=True, help="Output folder.")
def command(artifact, suite, solvers, steps, nfe_list, num, batch, seed, reference_steps,
            guidance_list, fid, provider, threads, cuda_graph, metadata_file, out):
    """Run solvers on ARTIFACT side by side and print speed and quality.

    Every run draws samples 0…num−1 of one seed, so all start from the same x_T.
    Speed: median and p90 wall ms per sample over batches, samples/s. Quality:
    RMS error against a high-accuracy Heun solution (deterministic solvers), and
    the artifact's distribution score (exact 2-D mixture: sliced W2; digits:
    Fréchet distance in the shipped feature space vs held-out digits), each
    printed with its real-data floor. Writes bench.csv, bench.json and PNG plots
    of quality vs NFE and vs latency.

    \b
    Examples:
      edgediff bench digits.onnx --suite quick
      edgediff bench mixture.onnx --solvers heun,dpmpp_2m --nfe 5,9,19 --num 2000
      edgediff bench digits.onnx --solvers ddpm,ddim --steps 50,250 --threads 2
      edgediff bench digits.onnx --solvers unipc:order=2,ipndm:order=3,dpmpp_3m --nfe 5,10
      edgediff bench digits-cond.onnx --solvers heun --nfe 35 --guidance 0,1,2,3,4
    """
    runs, suite_num = plan_runs(suite, solvers, steps, nfe_list)
    num = num or suite_num or 256
    D = load_artifact(artifact, provider, threads, cuda_graph, metadata_file, max_batch=batch)
    check_runs(D.info, runs)
    scales = _guidance_scales(guidance_list, D.info)
    with atomic_folder(out) as folder:  # nothing lands unless the whole run succeeds
        written = _run_and_write(D, folder, artifact, runs, num, batch, seed, reference_steps,
                                 fid, scales)
    for path in written:
        click.echo(f"wrote {out / path.relative_to(folder)}")


def _guidance_scales(text: str | None, info) -> list[float] | None:
    if text is None:
        return None
    if not info.num_classes:
        raise EdgediffError("--guidance sweeps classifier-free guidance, which needs a "
                            "class-conditional model")
    from edgediff.guidance import check_guidance

    try:
        return [check_guidance(float(v)) for v in text.split(",") if v.strip()] or None
    except ValueError:
        raise EdgediffError(f"--guidance takes comma-separated scales, got {text!r}") from None


def _run_and_write(D, folder, artifact, runs, num, batch, seed, reference_steps, fid,
                   scales=None):
    from edgediff.bench import run_bench
    from edgediff.quality import score_for

    score = score_for(D.info, num, seed)
    rows = run_bench(D, runs, num=num, batch=batch, seed=seed, score=score,
                     reference_steps=reference_steps, guidance=scales,
                     progress=lambda label: click.echo(f"  running {label}", err=True))
    dist = rows[0].distance_name or "dist"
    click.echo(f"{artifact.name}: {num} samples per run, batch {batch}, seed {seed}")
    last = f"{'label acc':>10}" if scales else ""
    click.echo(f"{'run':<18}{'steps':>6}{'NFE':>5}{'ms/sample':>11}{'p90':>9}{'samples/s':>11}"
               f"{'ref RMS':>10}{dist:>10}{last}")
    for r in rows:
        acc = f" {_fmt(r.label_accuracy, '>9.3f')}" if scales else ""
        click.echo(f"{r.label:<18}{r.steps:>6}{r.nfe:>5}{r.ms_median:>11.3f}{r.ms_p90:>9.3f}"
                   f"{r.samples_per_s:>11.1f}{_fmt(r.reference_rms, '>10.4g')}"
                   f" {_fmt(r.distance, '>9.4g')}{acc}")
    if score is not None:
        click.echo(f"{dist} floor ({score.floor_note}): {score.floor:.4f}")
    meta = {"artifact": str(artifact), "artifact_name": artifact.stem, "num": num,
            "batch": batch, "seed": seed, "reference_steps": reference_steps,
            "distance_floor": score.floor if score else None}
    if fid and scales:
        click.echo("FID skipped: it is not computed per guidance scale")
    elif fid:
        from edgediff.fid import fid as compute_fid
        from edgediff.runtime import sample

        for r, (label, solver, steps, options) in zip(rows, runs, strict=True):
            x = sample(D, num, seed=seed, batch=batch, solver=solver, steps=steps,
                       options=options)
            value, how = compute_fid(x, D.info)
            click.echo(f"{label}: {how}" + ("" if value is None else f": {value:.3f}"))
            if value is None:
                break  # the reason is the same for every run
            r.fid = value
    return _write(folder, rows, meta)

