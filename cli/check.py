"""``edgediff check``: does an artifact compute what its source computes?"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgediff.errors import EdgediffError

GATE_PRECISIONS = ("bf16", "f16", "int8", "fp16")


@click.command("check")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("source", required=False)
@click.option("--onnx", "onnx_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Plans: the ONNX file to compare with (default: the one the "
                                 "sidecar names, beside the plan).")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Absolute tolerance per element.")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Relative tolerance per element.")
@click.option("--allow-pickle", is_flag=True,
              help="Read a .pt/.pkl SOURCE with torch.load(weights_only=True). Pickles can run "
                   "code: use only for files you trust.")
@click.option("--precision", "gate", type=click.Choice(GATE_PRECISIONS), default=None,
              help="Quality gate: sample ARTIFACT (fp32) and its PRECISION version on the same "
                   "seeds and judge the difference (bf16/f16: ARTIFACT on OpenVINO; int8/fp16: "
                   "the --candidate export). No SOURCE then.")
@click.option("--candidate", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="With --precision int8|fp16: the export made with --int8 or "
                                 "--fp16 from ARTIFACT's model.")
@click.option("--num", type=click.IntRange(2), default=None,
              help="With --precision: samples on each side [default: 256].")
@click.option("--seed", type=click.IntRange(0), default=None,
              help="With --precision: samples 0…num−1 of this seed [default: 0].")
@click.option("--batch", type=click.IntRange(1), default=None,
              help="With --precision: samples per denoiser call [default: 32].")
@click.option("--solver", default=None, metavar="NAME",
              help="With --precision: the solver both sides sample with [default: the "
                   "model's default solver].")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="With --precision: its step count.")
@click.option("--sigmas", default=None, metavar="S,S,…",
              help="With --precision: sample on exactly these σ's, largest first (a "
                   "distilled model's own).")
@click.option("--timesteps", default=None, metavar="T,T,…",
              help="With --precision: discrete-time models' training timesteps, mapped "
                   "through the model's σ table.")
@click.option("--strict", is_flag=True,
              help="With --precision: exit 1 unless the verdict is pass.")
@click.option("--backend", "engine", type=click.Choice(("onnxruntime", "openvino")),
              default=None, help="With --precision: what runs the candidate [default: "
                                 "openvino for bf16/f16, onnxruntime for int8/fp16].")
@click.option("--device", default=None, metavar="CPU|GPU|NPU",
              help="With --precision: OpenVINO's device for the candidate [default: CPU].")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="With --precision: CPU threads per engine (default: its own choice).")
def command(artifact, source, onnx_path, atol, rtol, allow_pickle, gate, candidate, num, seed,
            batch, solver, steps, sigmas, timesteps, strict, engine, device, threads):
    """Compare ARTIFACT with what it was made from, on the export's validation
    inputs (σ_min, a log sweep, σ_max; batches 1, 3, 16); or, with --precision,
    judge a reduced-precision version of ARTIFACT against it.

    An .onnx file is compared with its torch SOURCE (a checkpoint, a diffusers
    folder, an NVlabs snapshot, 'bundled', 'bundled-cond', 'mixture2d',
    'mixture2d-cond' or 'mixture2d-flow'; the shipped models are found by their
    hash). A .plan is
    compared with its ONNX file (needs TensorRT and a GPU). An NVlabs EDM/EDM2
    snapshot as ARTIFACT is exported once into the cache ($EDGEDIFF_CACHE, else
    ~/.cache/edgediff), and the cached graph is compared with the snapshot.

    \b
    Examples:
      edgediff check digits.onnx                 # exported from the bundled model
      edgediff check my-model.onnx my-model.safetensors --atol 1e-3
      edgediff check digits.plan --atol 2e-2 --rtol 2e-2
      edgediff check network-snapshot.pkl        # its cached export vs itself

    With --precision, the quality gate (docs/lab.md, "Quality gate"): ARTIFACT,
    an fp32 export, runs on ONNX Runtime; the candidate draws the same seeds with
    the model's default solver. It prints RMS and max |Δ| against fp32, FD/SW2
    between the two sample sets, each side's distance to the data and the
    thresholds, then the verdict: pass, warn or fail. Anything but pass prints a
    WARNING; --strict turns it into exit status 1.

    \b
      edgediff check digits.onnx --precision int8 --candidate digits-int8.onnx
      edgediff check digits.onnx --precision bf16 --strict   # needs bf16 units
    """
    if gate is not None:
        run = {"solver": solver, "steps": steps, "sigmas": sigmas, "timesteps": timesteps}
        return _precision_gate(artifact, source, onnx_path, gate, candidate,
                               (num, seed, batch, run), strict, (engine, device, threads))
    given = [f for f, v in (("--candidate", candidate), ("--num", num), ("--seed", seed),
                            ("--batch", batch), ("--strict", strict), ("--backend", engine),
                            ("--device", device), ("--threads", threads), ("--solver", solver),
                            ("--steps", steps), ("--sigmas", sigmas),
                            ("--timesteps", timesteps)) if v]
    if given:
        raise EdgediffError(f"{', '.join(given)}: options of the quality gate; add --precision "
                            f"bf16|f16|int8|fp16, or drop them to check ARTIFACT against SOURCE")
    from edgediff.export.cache import cached_export, needs_export
    from edgediff.lab.compare import check_artifact

    if needs_export(artifact):  # a snapshot: its cached export, against the snapshot
        source = source or str(artifact)
        artifact = cached_export(artifact, progress=lambda line: click.echo(line, err=True))
    check = check_artifact(artifact, source, onnx_path=onnx_path, atol=atol, rtol=rtol,
                           allow_pickle=allow_pickle)
    if check.warning:
        click.echo(check.warning, err=True)
    click.echo(str(check))
    if check.failure:
        raise EdgediffError(check.failure)


def _precision_gate(artifact, source, onnx_path, precision, candidate, sampling, strict, where):
    """``check --precision``: the quality gate of ``edgediff.lab.gate``. ``sampling`` is
    (num, seed, batch, the run's solver/steps/sigmas/timesteps), ``where`` (engine,
    device, threads)."""
    from edgediff import runtime
    from edgediff.cli._sampling import artifact_path
    from edgediff.grids import exact_grid
    from edgediff.lab.gate import GateOptions, check_same_model, precision_gate

    (num, seed, batch, run), (engine, device, threads) = sampling, where
    if source is not None or onnx_path is not None:
        raise EdgediffError("--precision compares ARTIFACT with a reduced-precision version "
                            "of itself; drop SOURCE/--onnx (they are for export validation)")
    artifact = artifact_path(artifact)
    grid = exact_grid(runtime.load(artifact).info,
                      {k: run[k] for k in ("sigmas", "timesteps") if run[k] is not None},
                      run["steps"] if run["sigmas"] or run["timesteps"] else None)
    options = GateOptions(num=num or 256, seed=seed or 0, batch=batch or 32,
                          solver=run["solver"], steps=None if grid else run["steps"],
                          sigmas=grid)
    if precision in ("bf16", "f16"):
        if candidate is not None:
            raise EdgediffError(f"--precision {precision} runs ARTIFACT itself on OpenVINO; "
                                f"drop --candidate (it is for int8/fp16 exports)")
        path, engine, ov_precision = artifact, engine or "openvino", precision
    else:
        if candidate is None:
            raise EdgediffError(f"--precision {precision} needs the {precision} export: "
                                f"--candidate FILE (edgediff export MODEL --{precision} -o FILE)")
        path, engine, ov_precision = candidate, engine or "onnxruntime", None
    reference = runtime.load(artifact, threads=threads, max_batch=options.batch)
    other = runtime.load(path, engine=engine, precision=ov_precision, device=device or "CPU",
                         threads=threads, max_batch=options.batch)
    check_same_model(reference.info, other.info)
    if precision in ("int8", "fp16") and other.info.precision != precision:
        raise EdgediffError(f"{path}'s precision is {other.info.precision}, not {precision}; "
                            f"pass the export made with --{precision}")
    with click.progressbar(length=2 * options.num, label=f"sampling fp32 and {precision}",
                           file=sys.stderr) as bar:
        result = precision_gate(reference, other, options, progress=bar.update)
    click.echo("\n".join(result.lines()))
    if result.verdict.level != "pass":
        click.echo(f"WARNING: {precision} is past the quality gate ({result.verdict.level}): "
                   f"{'; '.join(result.verdict.reasons)}", err=True)
        if strict:
            raise EdgediffError(f"--strict: {precision} {result.verdict.level}s the quality gate")
