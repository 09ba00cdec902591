"""``edgediff sample``: draw samples from an exported model with the NumPy runtime."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgediff.cli._sampling import (
    artifact_path,
    backend_options,
    cond_option,
    conditioning_options,
    load_artifact,
    pass_knobs,
    resolve,
    solver_options,
)
from edgediff.fileio import atomic_folder


def _list_presets(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from edgediff.catalogue import nfe
    from edgediff.configs import preset, presets

    click.echo(f"{'preset':<22}{'NFE':>5}  description (aliases)")
    for name, p in presets().items():
        solver, steps, _ = preset(name)
        also = f" ({', '.join(p['aliases'])})" if p.get("aliases") else ""
        click.echo(f"{name:<22}{nfe(solver, steps):>5}  {p.get('description', '')}{also}")
    ctx.exit()


@click.command("sample")
@click.argument("artifact", type=click.Path(path_type=Path))
@solver_options
@click.option("--num", type=click.IntRange(1), default=64, show_default=True,
              help="Number of samples.")
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True,
              help="Samples per denoiser call. Sample k is the same whatever the batch.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed: sample k draws from its own stream (seed, k).")
@conditioning_options
@cond_option
@backend_options
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/sample"), show_default=True, help="Output folder.")
@click.option("--list-presets", is_flag=True, is_eager=True, expose_value=False,
              callback=_list_presets, help="List the solver presets and exit.")
@pass_knobs
def command(artifact, preset, solver, steps, num, batch, seed, classes, guidance, guide, cond,
            provider, threads, cuda_graph, metadata_file, out, knobs):
    """Sample ARTIFACT (an exported .onnx file or a TensorRT .plan) with the
    torch-free runtime; write samples.npz and a PNG (image grid or 2-D scatter).

    The artifact's metadata sets the sample shape, σ range, schedule and default
    solver; flags override the solver.

    ARTIFACT (and --guide) may also be an NVlabs EDM/EDM2 network snapshot
    (network-snapshot-*.pkl): it is exported once into a cache named by its
    content ($EDGEDIFF_CACHE, else ~/.cache/edgediff) and the cached graph is
    used from then on.

    \b
    Examples:
      edgediff sample digits.onnx                       # the model's default solver
      edgediff sample digits.onnx --preset dpmpp-2m-10 --num 256 -o out/fast
      edgediff sample digits.onnx --solver edm --steps 64 --s-churn 40 --seed 3
      edgediff sample digits.plan --batch 16 --cuda-graph
      edgediff sample digits-cond.onnx --class all --num 8 --guidance 2
      edgediff sample digits-cond.onnx --class 3 --guidance 2 --guide digits-small.onnx
      edgediff sample network-snapshot.pkl --num 16 --steps 32 --class 3
      edgediff sample sd-unet.onnx --cond encoder_hidden_states=prompt.npy --guidance 7.5
    """
    from edgediff.conditioning import tensors_from_files
    from edgediff.lab.draw import DrawOptions, plan_draw
    from edgediff.lab.outputs import figures_missing

    solver, steps, options = resolve(preset, solver, steps, **knobs)
    D = load_artifact(artifact_path(artifact), provider, threads, cuda_graph, metadata_file,
                      max_batch=batch)
    guide_D = None if guide is None else load_artifact(artifact_path(guide), provider, threads,
                                                       cuda_graph, max_batch=batch)
    draw = plan_draw(D, DrawOptions(num, seed, batch, solver, steps, options, classes,
                                    guidance), guide_D)
    draw.tensors = tensors_from_files(cond, D.info, draw.num)
    missing = figures_missing()
    label = f"{draw.settings.solver}, {draw.settings.steps} steps"
    with atomic_folder(out) as folder:  # nothing lands unless the whole run succeeds
        with click.progressbar(length=draw.steps_total, label=label, file=sys.stderr,
                               show_pos=True) as bar:
            written = [p.relative_to(folder) for p in draw.run(
                folder, artifact, figures=missing is None, callback=lambda _: bar.update(1))]
    for path in written:
        click.echo(f"wrote {out / path}")
    if missing:
        click.echo(f"no figure: {missing}", err=True)
