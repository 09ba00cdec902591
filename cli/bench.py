"""``edgediff bench``: solvers side by side on one artifact — speed and quality."""

from __future__ import annotations

from pathlib import Path

import click

from edgediff.cli._decoding import decoder_options, stage_options, tiling
from edgediff.cli._sampling import artifact_path, backend_options, ray_options
from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_folder


def _fmt(v, spec):
    return format("-", spec.replace("g", "").split(".")[0]) if v is None else format(v, spec)


@click.command("bench")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--suite", default=None, metavar="NAME",
              help="A bench suite from configs/bench.toml (quick, study, stochastic).")
@click.option("--solvers", default=None, metavar="A,B,…",
              help="Comma-separated solvers, each optionally with options as "
                   "name:option=value (unipc:order=2, deis:basis=log_rho:grid=lambda) "
                   "[default: euler,heun,dpmpp_2m].")
@click.option("--steps", default=None, metavar="N,M,…", help="Step counts to run each solver at.")
@click.option("--sigmas", default=None, metavar="S,S,…",
              help="Run each solver once on exactly these σ's, largest first (the final 0 is "
                   "implied): a distilled model's own. Recorded in bench.json.")
@click.option("--timesteps", default=None, metavar="T,T,…",
              help="Discrete-time models: run each solver once on these training timesteps, "
                   "largest first (e.g. 999,759,499,259), mapped through the model's σ table.")
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
@decoder_options
@ray_options
@click.option("--reference", "gate_reference", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An int8/fp16 ARTIFACT's fp32 export: the quality gate (edgediff check "
                   "--precision) runs once on the default solver and prints its verdict.")
@click.option("--teacher", default=None, type=click.Path(exists=True, path_type=Path),
              help="A distilled ARTIFACT's teacher (an .onnx of the same samples): its runs "
                   "follow in the same process, on the same seeds and score, and the "
                   "figures put both models on one set of axes: the quality each "
                   "millisecond buys.")
@click.option("--teacher-solvers", default="heun,ipndm", show_default=True, metavar="A,B,…",
              help="With --teacher: the teacher's solvers (as --solvers).")
@click.option("--teacher-nfe", default="5,9,19,35", show_default=True, metavar="N,M,…",
              help="With --teacher: the teacher's denoiser-call budgets.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/bench"), show_default=True, help="Output folder.")
def command(artifact, suite, solvers, steps, sigmas, timesteps, nfe_list, num, batch, seed,
            reference_steps, guidance_list, fid, provider, threads, cuda_graph, metadata_file,
            engine, precision, device, decoder_backend, decoder_precision, decoder_provider,
            decoder_threads, tile, tile_overlap, ray_address, workers, gate_reference, teacher,
            teacher_solvers, teacher_nfe, out):
    """Run solvers on ARTIFACT side by side and print speed and quality.

    Every run draws samples 0…num−1 of one seed, so all start from the same x_T.
    Speed: median and p90 wall ms per sample over batches, samples/s. Quality:
    RMS error against a high-accuracy Heun solution (deterministic solvers), and
    the artifact's distribution score (exact 2-D mixture: sliced W2; digits:
    Fréchet distance in the shipped feature space vs held-out digits), each
    printed with its real-data floor. Writes bench.csv, bench.json and figures
    of quality vs NFE and vs latency (needs the lab extra: matplotlib, Pillow).

    With --ray, every run's shards go out to Ray workers at once: the same
    samples, so the same quality columns; the times are the workers' own.

    ARTIFACT may also be an NVlabs EDM/EDM2 network snapshot: it is exported once
    into a cache named by its content ($EDGEDIFF_CACHE, else ~/.cache/edgediff),
    and the cached graph is benchmarked.

    \b
    Examples:
      edgediff bench digits.onnx --suite quick
      edgediff bench mixture.onnx --solvers heun,dpmpp_2m --nfe 5,9,19 --num 2000
      edgediff bench digits.onnx --solvers ddpm,ddim --steps 50,250 --threads 2
      edgediff bench digits.onnx --solvers unipc:order=2,ipndm:order=3,dpmpp_3m --nfe 5,10
      edgediff bench digits-cond.onnx --solvers heun --nfe 35 --guidance 0,1,2,3,4
      edgediff bench digits.onnx --suite study --ray=auto --workers 16
      edgediff bench network-snapshot.pkl --solvers heun,dpmpp_2m --nfe 9,19 --num 64
      edgediff bench bundle/ --num 8 --batch 4
      edgediff bench bundle/ --solvers dpmpp_2m --steps 10,20 --tile 32
      edgediff bench digits-cd.onnx --suite distilled --teacher digits.onnx --num 360

    ARTIFACT may be a bundle folder: then each run's time per image is split
    into its two stages, the denoiser (all the solver's calls) and the decoder,
    so you see where the time goes [--num default: 8]. Writes bench.json.
    """
    from edgediff import runtime
    from edgediff.lab.bench import BenchOptions, Teacher, run_study
    from edgediff.lab.cluster import RayOptions
    from edgediff.lab.runs import guidance_scales, plan_runs
    from edgediff.metadata import read_metadata_json

    runs, suite_num = plan_runs(suite, solvers, steps, nfe_list)
    if sigmas is not None or timesteps is not None:
        runs = exact_runs(runs, suite, steps, nfe_list, sigmas, timesteps)
    defaults = not (suite or solvers or steps or nfe_list or sigmas or timesteps)
    backend = runtime.BackendOptions(provider=provider, threads=threads, cuda_graph=cuda_graph,
                                     max_batch=batch, metadata=read_metadata_json(metadata_file),
                                     engine=engine, precision=precision, device=device)
    named, artifact = artifact, artifact_path(artifact)
    D = runtime.load(artifact, backend, decoder_options=stage_options(
        decoder_provider, decoder_threads, provider, threads, decoder_backend, decoder_precision))
    if hasattr(D, "decode"):  # a bundle: time the stages
        return _bench_bundle(D, named, None if defaults else runs, num or suite_num or 8,
                             batch, seed, tiling(tile, tile_overlap), out)
    num = num or suite_num or 256
    scales = guidance_scales(guidance_list, D.info)
    asked = BenchOptions(num, batch, seed, reference_steps,
                         guidance=None if scales is None else tuple(scales), fid=fid,
                         backend=backend,
                         ray=None if ray_address is None else RayOptions(ray_address, workers))
    mentor = None
    if teacher is not None:
        mentor = Teacher(runtime.load(teacher, backend), teacher,
                         plan_runs(None, teacher_solvers, None, teacher_nfe)[0])
    with atomic_folder(out) as folder:  # nothing lands unless the whole run succeeds
        study = run_study(D, artifact, folder, runs, asked, teacher=mentor,
                          progress=lambda label: click.echo(f"  running {label}", err=True))
        _print_table(study, named, scales)
        _gate(D, artifact, gate_reference, seed, batch, threads, folder)
        written = [p.relative_to(folder) for p in study.written]
    for path in written:
        click.echo(f"wrote {out / path}")


def exact_runs(runs, suite, steps, nfe_list, sigmas, timesteps):
    """One run per solver on the --sigmas/--timesteps list (it sets the step count)."""
    if suite or steps or nfe_list:
        raise EdgediffError("--sigmas/--timesteps set the steps; drop --suite, --steps and --nfe")
    key, value = ("sigmas", sigmas) if sigmas is not None else ("timesteps", timesteps)
    if sigmas is not None and timesteps is not None:
        raise EdgediffError("--sigmas and --timesteps both name the steps; give one")
    out, seen = [], set()
    for label, solver, _, options in runs:
        name = label.rsplit("-", 1)[0]
        if name not in seen:
            seen.add(name)
            out.append((f"{name}-{key}", solver, None, {**options, key: value}))
    return out


def _gate(D, artifact, reference, seed, batch, threads, folder) -> None:
    """A reduced precision (an int8/fp16 artifact, OpenVINO at bf16/f16): the quality
    gate's verdict beside the speed table, and in bench.json."""
    from edgediff.lab.gate import bench_gate, needs_gate, record_gate

    if not needs_gate(D):
        return
    click.echo("  running the quality gate against fp32", err=True)
    result, line = bench_gate(D, artifact, reference, seed=seed, batch=batch, threads=threads)
    click.echo(line)
    record_gate(folder, result, line)


def _print_table(study, artifact: Path, scales) -> None:
    rows, score, meta = study.rows, study.score, study.meta
    dist = rows[0].distance_name or "dist"
    click.echo(f"{artifact.name}: {meta['num']} samples per run, batch {meta['batch']}, "
               f"seed {meta['seed']}")
    last = f"{'label acc':>10}" if scales else ""
    width = max([len(r.label) for r in rows] + [18]) + 1
    if any(r.model for r in rows):
        width += max(len(r.model or "") for r in rows) + 2
        for r in rows:
            r.label = f"{r.model}: {r.label}"
    click.echo(f"{'run':<{width}}{'steps':>6}{'NFE':>5}{'ms/sample':>11}{'p90':>9}{'samples/s':>11}"
               f"{'ref RMS':>10}{dist:>10}{last}")
    for r in rows:
        acc = f" {_fmt(r.label_accuracy, '>9.3f')}" if scales else ""
        click.echo(f"{r.label:<{width}}{r.steps:>6}{r.nfe:>5}{r.ms_median:>11.3f}{r.ms_p90:>9.3f}"
                   f"{r.samples_per_s:>11.1f}{_fmt(r.reference_rms, '>10.4g')}"
                   f" {_fmt(r.distance, '>9.4g')}{acc}")
    if score is not None:
        click.echo(f"{dist} floor ({score.floor_note}): {score.floor:.4f}")
    for r in rows:
        if r.sigmas is not None:
            click.echo(f"{r.label}: σ's " + ", ".join(f"{s:.6g}" for s in r.sigmas[:-1]))
    for note in study.notes:
        click.echo(note)


def _bench_bundle(P, artifact: Path, runs, num, batch, seed, tile, out) -> None:
    import json

    from edgediff.fileio import atomic_path
    from edgediff.lab.decoded import time_stages

    if runs is None:  # the model's default solver
        d = dict(P.info.default_solver)
        solver, steps = d.pop("solver"), d.pop("steps")
        runs = [(f"{solver}-{steps}", solver, steps, d)]
    batch = min(batch, num)
    rows = time_stages(P, runs, num, batch, seed, tile,
                       progress=lambda label: click.echo(f"  running {label}", err=True))
    di, b = P.decoder_info, P.bundle
    click.echo(f"{artifact.name}: {num} samples per run, batch {batch}, seed {seed}; "
               f"ms per image; denoiser {b.denoiser.flops / 1e9:.3g} GFLOP per call, "
               f"decoder ({di.kind}, {di.precision}"
               f"{'' if tile is None else f', tiles of {tile.size}'}) "
               f"{di.flops / 1e9:.3g} GFLOP per image")
    click.echo(f"{'run':<18}{'NFE':>5}{'denoise':>10}{'p90':>9}{'per call':>10}{'decode':>10}"
               f"{'p90':>9}{'decode share':>14}")
    for r in rows:
        click.echo(f"{r.label:<18}{r.nfe:>5}{r.denoise_ms:>10.3f}{r.denoise_p90:>9.3f}"
                   f"{r.call_ms:>10.3f}{r.decode_ms:>10.3f}{r.decode_p90:>9.3f}"
                   f"{100 * r.decode_share:>13.1f}%")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump({"artifact": str(artifact), "num": num, "batch": batch, "seed": seed,
                   "tile": None if tile is None else [tile.size, tile.overlap],
                   "rows": [{**r.__dict__, "decode_share": r.decode_share} for r in rows]},
                  f, indent=1)
    click.echo(f"wrote {path}")
