"""``edgediff generate``: many samples as resumable shards, here or on Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgediff.cli._sampling import (
    backend_options,
    conditioning_options,
    pass_knobs,
    ray_options,
    resolve,
    solver_options,
)


@click.command("generate")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@solver_options
@click.option("--num", type=click.IntRange(1), required=True,
              help="Number of samples (with --class all: per class).")
@click.option("--shard-size", type=click.IntRange(1), default=256, show_default=True,
              help="Samples per shard: the unit of work, of retry and of resume.")
@click.option("--batch", type=click.IntRange(1), default=64, show_default=True,
              help="Samples per denoiser call; batches start at each shard's first sample.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed: sample k draws from its own stream (seed, k).")
@conditioning_options
@backend_options
@click.option("--images", is_flag=True, help="Also write a PNG grid per shard (image models).")
@click.option("--resume", is_flag=True,
              help="Continue a run in OUT: keep the shards its manifest lists whose files "
                   "are intact, redo the rest. The settings must be the run's own.")
@ray_options
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder (created; must be new or empty unless --resume).")
@pass_knobs
def command(artifact, preset, solver, steps, num, shard_size, batch, seed, classes, guidance,
            guide, guidance_interval, provider, threads, cuda_graph, metadata_file, engine,
            precision, device, images, resume, ray_address, workers, out, knobs):
    """Generate NUM samples of ARTIFACT into OUT as fixed-size shards, with a
    manifest, feature moments for FD/FID, and resume after any interruption.

    Sample k of a seed is the same whoever makes it, so the files are identical
    whether the shards run here, one after another, or on any number of Ray
    workers, and whether or not the run was interrupted and resumed.

    \b
    Examples:
      edgediff generate digits.onnx --num 10000 -o out/gen
      edgediff generate digits.onnx --num 10000 -o out/gen --resume      # after Ctrl-C
      edgediff generate digits.onnx --num 50000 --preset dpmpp-2m-10 -o out/gen --ray=auto
      edgediff generate digits-cond.onnx --class all --num 1000 --guidance 2 -o out/cond
    """
    from edgediff import runtime
    from edgediff.lab.cluster import RayOptions
    from edgediff.lab.generate import GenerateOptions, generate_artifact
    from edgediff.lab.shards import ShardResult
    from edgediff.metadata import read_metadata_json

    solver, steps, options = resolve(preset, solver, steps, **knobs)
    backend = runtime.BackendOptions(provider=provider, threads=threads, cuda_graph=cuda_graph,
                                     metadata=read_metadata_json(metadata_file),
                                     engine=engine, precision=precision, device=device)
    asked = GenerateOptions(
        num, solver, steps, options, seed=seed, shard_size=shard_size, batch=batch,
        classes=classes, guidance=guidance, guide=guide, guidance_interval=guidance_interval,
        images=images, resume=resume,
        backend=backend, ray=None if ray_address is None else RayOptions(ray_address, workers))

    with click.progressbar(length=1, label="shards", file=sys.stderr, show_pos=True,
                           item_show_func=lambda s: s) as bar:
        def progress(item, done, total):
            bar.length = total
            kept = "" if isinstance(item, ShardResult) else " (kept)"
            who = f" on {item.worker}" if getattr(item, "worker", "") else ""
            shard = getattr(item, "shard", item)
            bar.update(done - bar.pos, f"{shard.start}-{shard.stop}{kept}{who}")

        manifest = generate_artifact(artifact, out, asked, progress=progress)
    job = manifest.job
    click.echo(f"wrote {len(manifest.shards)} shards of {job['shard_size']} ({job['num']} "
               f"samples, {job['solver']} {job['steps']} steps) and {out / 'manifest.json'}")
    if job.get("sigmas"):  # --sigmas/--timesteps, or a tuned grid from the artifact's sidecar
        click.echo("σ grid: " + ", ".join(f"{s:.6g}" for s in job["sigmas"][:-1]))
    features = manifest.features
    if features and "frechet_distance" in features:
        click.echo(f"FD ({features['space']} features, {features['n']} samples) vs "
                   f"{features['against']}: {features['frechet_distance']:.4f}")
