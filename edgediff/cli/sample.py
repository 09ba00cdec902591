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
from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_folder, atomic_path


def _list_presets(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from edgediff.configs import preset, presets
    from edgediff.solvers import nfe

    click.echo(f"{'preset':<22}{'NFE':>5}  description (aliases)")
    for name, p in presets().items():
        solver, steps, _ = preset(name)
        also = f" ({', '.join(p['aliases'])})" if p.get("aliases") else ""
        click.echo(f"{name:<22}{nfe(solver, steps):>5}  {p.get('description', '')}{also}")
    ctx.exit()


def parse_classes(text: str | None, info, num: int) -> np.ndarray | None:
    """--class: one id (every sample), a comma-separated list or ``all`` (then --num
    samples of each listed class, one grid row per class)."""
    if text is None:
        return None
    if not info.num_classes:
        raise EdgediffError("--class: this model is not class-conditional (edgediff info "
                            "shows a model's conditioning)")
    if text.strip() == "all":
        ids = list(range(info.num_classes))
    else:
        try:
            ids = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise EdgediffError(f"--class takes an id, a comma-separated list of ids or "
                                f"'all', got {text!r}") from None
        if not ids:
            raise EdgediffError("--class names no class")
    from edgediff.guidance import check_labels

    check_labels(info, ids, len(ids))
    return np.repeat(np.array(ids, np.int64), num) if len(ids) > 1 or text.strip() == "all" \
        else np.full(num, ids[0], np.int64)


def write_outputs(folder: Path, samples: np.ndarray, info, meta: dict,
                  labels: np.ndarray | None = None, columns: int | None = None) -> list[Path]:
    """samples.npz always (with the class labels, when given); a PNG grid for images
    (``columns`` per row: one row per class), a scatter plot for 2-D points."""
    from edgediff.images import grid, to_uint8, write_png
    from edgediff.plots import scatter_plot

    written = []
    npz = folder / "samples.npz"
    extra = {} if labels is None else {"labels": labels}
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, samples=samples, meta=json.dumps(meta), **extra)
    written.append(npz)
    shape = info.sample_shape
    if len(shape) == 3 and shape[0] in (1, 3):
        png = folder / "samples.png"
        side = columns or int(np.ceil(np.sqrt(min(len(samples), 256))))
        if columns:
            samples = samples[: 32 * columns]  # at most 32 rows
        scale = max(1, 256 // (side * shape[2]))
        with atomic_path(png) as tmp:
            write_png(tmp, grid(to_uint8(samples if columns else samples[:256],
                                         info.data_range), columns=side, scale=scale))
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
@click.option("--class", "classes", default=None, metavar="ID|A,B,…|all",
              help="Class-conditional models: the class of every sample, or a list (or all) "
                   "to draw --num samples of each, one grid row per class.")
@click.option("--guidance", type=click.FloatRange(0), default=None, metavar="W",
              help="Guidance scale w: D = D_u + w·(D_c − D_u). Classifier-free against the "
                   "null label (one launch on a graph exported with --guidance), or "
                   "autoguidance with --guide. 1: the conditional model alone.")
@click.option("--guide", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Autoguidance (Karras et al. 2024): a second, weaker artifact "
                                 "of the same shape, σ range and classes to guide against.")
@backend_options
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/sample"), show_default=True, help="Output folder.")
@click.option("--list-presets", is_flag=True, is_eager=True, expose_value=False,
              callback=_list_presets, help="List the sampler presets and exit.")
@pass_knobs
def command(artifact, preset, solver, steps, num, batch, seed, classes, guidance, guide,
            provider, threads, cuda_graph, metadata_file, out, knobs):
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
      edgediff sample digits-cond.onnx --class all --num 8 --guidance 2
      edgediff sample digits-cond.onnx --class 3 --guidance 2 --guide digits-small.onnx
    """
    from edgediff.solvers import SamplerSettings

    solver, steps, options = resolve(preset, solver, steps, **knobs)
    D = load_artifact(artifact, provider, threads, cuda_graph, metadata_file, max_batch=batch)
    settings = SamplerSettings.resolve(D.info, solver, steps, options)
    labels = parse_classes(classes, D.info, num)
    per_class = num if labels is not None and len(labels) > num else None
    num = num if labels is None else len(labels)
    guide_D = None
    if guide is not None:
        guide_D = load_artifact(guide, provider, threads, cuda_graph, max_batch=batch)
        from edgediff.runtime.guidance import check_guide

        check_guide(D.info, guide_D.info)
    from edgediff.runtime import sample

    total = -(-num // batch) * settings.steps
    label = f"{settings.solver}, {settings.steps} steps"
    with atomic_folder(out) as folder:  # nothing lands unless the whole run succeeds
        with click.progressbar(length=total, label=label, file=sys.stderr,
                               show_pos=True) as bar:
            samples = sample(D, num, seed=seed, batch=batch, solver=settings.solver,
                             steps=settings.steps, options=settings.options,
                             callback=lambda _step: bar.update(1), labels=labels,
                             guidance=guidance, guide=guide_D)
        meta = {"artifact": str(artifact), "solver": settings.solver, "steps": settings.steps,
                "options": settings.options, "seed": seed, "num": num, "guidance": guidance,
                "guide": None if guide is None else str(guide)}
        written = [p.relative_to(folder) for p in write_outputs(
            folder, samples, D.info, meta, labels, per_class)]
    for path in written:
        click.echo(f"wrote {out / path}")
