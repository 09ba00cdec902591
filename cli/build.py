"""``edgediff build``: a TensorRT engine from an exported ONNX file."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("build")
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The engine to write; its sidecar goes to OUT.json.")
@click.option("--fp16", is_flag=True, help="Allow fp16 kernels.")
@click.option("--tf32/--no-tf32", default=True, show_default=True, help="Allow TF32 kernels.")
@click.option("--min-batch", type=click.IntRange(1), default=1, show_default=True)
@click.option("--opt-batch", type=click.IntRange(1), default=1, show_default=True)
@click.option("--max-batch", type=click.IntRange(1), default=16, show_default=True)
@click.option("--workspace-mib", type=click.IntRange(16), default=1024, show_default=True,
              help="Builder workspace limit; keep it small on Jetson boards.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None,
              help="Timing cache file to read and update (speeds up rebuilds).")
@click.option("--metadata", "metadata_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON edgediff metadata (docs/artifact.md) for an ONNX file edgediff did "
                   "not export; it goes into the sidecar.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def command(onnx_file, out, fp16, tf32, min_batch, opt_batch, max_batch, workspace_mib,
            timing_cache, metadata_file, force):
    """Build a TensorRT engine from ONNX_FILE (an 'edgediff export' output).

    Needs TensorRT and CUDA (pip install "edgediff[trt]") on the machine that will
    run the engine: a plan runs only on the TensorRT version and GPU architecture
    that built it.

    \b
    Example:
      edgediff build digits.onnx -o digits.plan --fp16 --max-batch 16
    """
    from edgediff.export.tensorrt import BuildSettings, build_plan
    from edgediff.metadata import read_metadata_json

    settings = BuildSettings(min_batch, opt_batch, max_batch, fp16, tf32, workspace_mib,
                             timing_cache)
    sidecar, size = build_plan(onnx_file, out, settings, read_metadata_json(metadata_file),
                               force=force)
    click.echo(f"wrote {out} ({size / 2**20:.2f} MiB) and {out}.json: TensorRT "
               f"{sidecar['tensorrt_version']}, {sidecar['gpu_name']} "
               f"(sm {sidecar['compute_capability']}), {', '.join(sidecar['precision']) or 'fp32'}")
