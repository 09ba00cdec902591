"""``edgediff check``: does an artifact compute what its source computes?"""

from __future__ import annotations

from pathlib import Path

import click

from edgediff.errors import EdgediffError


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
def command(artifact, source, onnx_path, atol, rtol, allow_pickle):
    """Compare ARTIFACT with what it was made from, on the export's validation
    inputs (σ_min, a log sweep, σ_max; batches 1, 3, 16).

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
    """
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
