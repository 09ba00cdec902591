"""``edgediff sample``: draw samples from an exported model with the NumPy runtime."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgediff.cli._decoding import decoder_options, stage_options, tiling
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
from edgediff.errors import EdgediffError
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
@decoder_options
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("out/sample"), show_default=True, help="Output folder.")
@click.option("--list-presets", is_flag=True, is_eager=True, expose_value=False,
              callback=_list_presets, help="List the solver presets and exit.")
@pass_knobs
def command(artifact, preset, solver, steps, num, batch, seed, classes, guidance, guide,
            guidance_interval, cond,
            provider, threads, cuda_graph, metadata_file, engine, precision, device,
            decoder_backend, decoder_precision, decoder_provider, decoder_threads, tile,
            tile_overlap, out, knobs):
    """Sample ARTIFACT (an exported .onnx file or a TensorRT .plan) with the
    torch-free runtime; write samples.npz and a PNG (image grid or 2-D scatter).

    ARTIFACT may be a bundle folder (a latent model and its VAE decoder, from
    'edgediff export MODEL --decoder VAE -o BUNDLE/'): its latents are decoded, and
    samples.npz holds the images, latents.npz the latents, samples.png their grid
    and images/ one PNG each. --tile decodes large images in overlapping tiles.

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
      edgediff sample digits-cond.onnx --class all --guidance 3 --guidance-interval 0.3 3
      edgediff sample network-snapshot.pkl --num 16 --steps 32 --class 3
      edgediff sample sd-unet.onnx --cond encoder_hidden_states=prompt.npy --guidance 7.5
      edgediff sample bundle/ --num 16 --steps 32 --decoder-threads 4
      edgediff sample bundle/ --num 4 --tile 32 --tile-overlap 8
    """
    from edgediff.conditioning import tensors_from_files
    from edgediff.lab.draw import DrawOptions, plan_draw
    from edgediff.lab.outputs import figures_missing

    solver, steps, options = resolve(preset, solver, steps, **knobs)
    chosen = {"engine": engine, "precision": precision, "device": device}
    decoding = stage_options(decoder_provider, decoder_threads, provider, threads,
                             decoder_backend, decoder_precision)
    D = load_artifact(artifact_path(artifact), provider, threads, cuda_graph, metadata_file,
                      max_batch=batch, decoder_options=decoding, **chosen)
    if hasattr(D, "decode"):  # a bundle: sample latents, decode them into images
        return _sample_bundle(D, artifact, guide_D=None if guide is None else load_artifact(
            artifact_path(guide), provider, threads, cuda_graph, max_batch=batch, **chosen),
            asked=DrawOptions(num, seed, batch, solver, steps, options, classes, guidance,
                              guidance_interval),
            cond=cond, tile=tiling(tile, tile_overlap), out=out)
    if tile is not None or decoding is not None:
        raise EdgediffError("--tile and --decoder-* are for bundles (a latent model with its "
                            "decoder); this artifact's samples are not decoded")
    guide_D = None if guide is None else load_artifact(artifact_path(guide), provider, threads,
                                                       cuda_graph, max_batch=batch, **chosen)
    draw = plan_draw(D, DrawOptions(num, seed, batch, solver, steps, options, classes,
                                    guidance, guidance_interval), guide_D)
    draw.tensors = tensors_from_files(cond, D.info, draw.num)
    if draw.grid_note:  # a tuned grid from the artifact's sidecar (edgediff tune-grid)
        click.echo(draw.grid_note)
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


def _sample_bundle(P, artifact, *, guide_D, asked, cond, tile, out):
    """``edgediff sample BUNDLE/``: latents with the denoiser, then images."""
    from edgediff.conditioning import tensors_from_files
    from edgediff.lab.decoded import draw_images
    from edgediff.lab.draw import plan_draw
    from edgediff.lab.outputs import figures_missing

    guide = getattr(guide_D, "denoiser", guide_D)  # a bundle guides with its denoiser
    draw = plan_draw(P.denoiser, asked, guide)
    draw.tensors = tensors_from_files(cond, P.info, draw.num)
    missing = figures_missing()
    label = f"{draw.settings.solver}, {draw.settings.steps} steps"
    with atomic_folder(out) as folder:
        with click.progressbar(length=draw.steps_total, label=label, file=sys.stderr,
                               show_pos=True) as bar:
            decoded = click.progressbar(length=draw.num, label="decoding", file=sys.stderr,
                                        show_pos=True)
            written = [p.relative_to(folder) for p in draw_images(
                P, draw, folder, artifact, tile=tile, figures=missing is None,
                callback=lambda _: bar.update(1),
                on_decoded=lambda done, _n: decoded.update(done - decoded.pos))]
            decoded.render_finish()
    images = [p for p in written if p.parts[0] == "images"]
    for path in written:
        if path.parts[0] != "images":
            click.echo(f"wrote {out / path}")
    if images:
        click.echo(f"wrote {out / 'images'}/ ({len(images)} PNGs, "
                   f"{' × '.join(map(str, P.image_shape))} each)")
    if missing:
        click.echo(f"no figure: {missing}", err=True)
