"""``edgediff sample``: draw samples from an exported model with the NumPy runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from edgediff.cli._sampling import (
    backend_options,
    load_artifact,
    pass_knobs,
    resolve,
    solver_options,
)
from edgediff.fileio import atomic_folder, atomic_path


def _list_presets(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from edgediff.configs import presets

    for name, p in presets().items():
        click.echo(f"{name:<16} {p.get('description', '')}")
    ctx.exit()


def write_outputs(folder: Path, samples: np.ndarray, info, meta: dict) -> list[Path]:
    """samples.npz always; a PNG grid for images, a scatter plot for 2-D points."""
    from edgediff.images import grid, to_uint8, write_png
    from edgediff.plots import scatter_plot

    written = []
    npz = folder / "samples.npz"
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, samples=samples, meta=json.dumps(meta))
    written.append(npz)
    shape = info.sample_shape
    if len(shape) == 3 and shape[0] in (1, 3):
        png = folder / "samples.png"
        side = int(np.ceil(np.sqrt(min(len(samples), 256))))
        scale = max(1, 256 // (side * shape[2]))
        with atomic_path(png) as tmp:
            write_png(tmp, grid(to_uint8(samples[:256], info.data_range), columns=side,
                                scale=scale))
        written.append(png)
    elif shape == (2,):
        png = folder / "scatter.png"
        reference = None
        if (info.reference or {}).get("kind") == "gaussian_mixture":
            from edgediff.mixture import GaussianMixture

            mixture = GaussianMixture.from_dict(info.reference["mixture"])
            reference = mixture.sample(len(samples), np.random.default_rng(12_345))[0]
        with atomic_path(png) as tmp:
            scatter_plot(tmp, samples, reference,
                         title=f"{meta['solver']} {meta['steps']} steps (gray: exact)"
                         if reference is not None else f"{meta['solver']} {meta['steps']} steps")
        written.append(png)
    return written


@click.command("sample")
@click.argument("artifact", type=click.Path(path_type=Path))
@solver_options
@click.option("--num", type=click.IntRange(1), default=64, show_default=True,
              help="Number of samples.")
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True,
              help="Samples per denoiser call. Sample k is the same whatever the batch.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed: sample k draws from its own stream (seed, k).")
@backend_options
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/sample"), show_default=True, help="Output folder.")
@click.option("--list-presets", is_flag=True, is_eager=True, expose_value=False,
              callback=_list_presets, help="List the sampler presets and exit.")
@pass_knobs
def command(artifact, preset, solver, steps, num, batch, seed, provider, threads, cuda_graph,
            metadata_file, out, knobs):
    """Sample ARTIFACT (an exported .onnx file or a TensorRT .plan) with the
    torch-free runtime; write samples.npz and a PNG (image grid or 2-D scatter).

    The artifact's metadata sets the sample shape, σ range, schedule and default
    sampler; flags override the sampler.

    \b
    Examples:
      edgediff sample digits.onnx                       # the model's default sampler
      edgediff sample digits.onnx --preset dpmpp-2m-10 --num 256 -o out/fast
      edgediff sample digits.onnx --solver edm --steps 64 --s-churn 40 --seed 3
      edgediff sample digits.plan --batch 16 --cuda-graph
    """
    from edgediff.solvers import SamplerSettings

    solver, steps, options = resolve(preset, solver, steps, **knobs)
    D = load_artifact(artifact, provider, threads, cuda_graph, metadata_file, max_batch=batch)
    settings = SamplerSettings.resolve(D.info, solver, steps, options)
    from edgediff.runtime import sample

    total = -(-num // batch) * settings.steps
    label = f"{settings.solver}, {settings.steps} steps"
    with atomic_folder(out) as folder:  # nothing lands unless the whole run succeeds
        with click.progressbar(length=total, label=label, file=sys.stderr,
                               show_pos=True) as bar:
            samples = sample(D, num, seed=seed, batch=batch, solver=settings.solver,
                             steps=settings.steps, options=settings.options,
                             callback=lambda _step: bar.update(1))
        meta = {"artifact": str(artifact), "solver": settings.solver, "steps": settings.steps,
                "options": settings.options, "seed": seed, "num": num}
        written = [p.relative_to(folder) for p in write_outputs(folder, samples, D.info, meta)]
    for path in written:
        click.echo(f"wrote {out / path}")
