"""``edgediff check``: does an artifact compute what its source computes?"""

from __future__ import annotations

from pathlib import Path

import click

from edgediff.errors import EdgediffError, missing_extra

AUTO_SOURCES = ("bundled", "bundled-cond", "mixture2d", "mixture2d-cond")


def _check_onnx(path: Path, source: str | None, allow_pickle: bool, atol: float,
                rtol: float) -> None:
    try:
        from edgediff.cli.export import resolve_source
        from edgediff.export.onnx import export_graph, validate_onnx
    except ImportError:
        raise missing_extra("torch", "torch") from None
    from edgediff import runtime

    info = runtime.load(path).info
    if source is None:  # the shipped models are found by their hash
        for name in AUTO_SOURCES:
            try:
                model, digest = resolve_source(name)
            except EdgediffError:  # not shipped with this install
                continue
            if digest == info.source_sha256:
                source = name
                break
        else:
            raise EdgediffError(f"{path} was not exported from a model edgediff ships; name its "
                                f"source: edgediff check {path} SOURCE")
    else:
        model, digest = resolve_source(source, allow_pickle)
    if tuple(model.config["sample_shape"]) != info.sample_shape:
        raise EdgediffError(f"{source} makes samples of shape {tuple(model.config['sample_shape'])}"
                            f", {path} of {info.sample_shape}: they are different models")
    if digest != info.source_sha256:
        click.echo(f"warning: {source} is not the file {path} was exported from (sha256 "
                   f"{digest[:12]}… vs {info.source_sha256[:12]}…)", err=True)
    if bool(model.config.get("num_classes")) != bool(info.num_classes):
        raise EdgediffError(f"{source} and {path} differ in conditioning: one is "
                            f"class-conditional, the other not")
    result = validate_onnx(path, export_graph(model.denoiser.float().eval(), info), info, atol,
                           rtol)
    click.echo(f"{path} vs {source} (torch): {result}")
    if not result.ok:
        raise EdgediffError(f"{path} does not match {source} within tolerance")


def _check_plan(path: Path, onnx_path: Path | None, atol: float, rtol: float) -> None:
    from edgediff.compare import compare_backends
    from edgediff.runtime.tensorrt import plan_info

    _, side = plan_info(path)
    onnx_path = onnx_path or path.with_name(side["onnx_file"])
    if not onnx_path.is_file():
        raise EdgediffError(f"the plan's ONNX file {onnx_path} is not there; pass --onnx PATH")
    from edgediff import runtime

    result = compare_backends(runtime.load(path), runtime.load(onnx_path), atol, rtol)
    click.echo(f"{path} (TensorRT) vs {onnx_path} (ONNX Runtime): {result}")
    if not result.ok:
        raise EdgediffError(f"{path} does not match {onnx_path} within tolerance (an --fp16 "
                            f"plan needs looser --atol/--rtol)")


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
    folder, 'bundled', 'bundled-cond', 'mixture2d' or 'mixture2d-cond'; the shipped
    models are found by their hash). A .plan is compared with its ONNX file (needs
    TensorRT and a GPU).

    \b
    Examples:
      edgediff check digits.onnx                 # exported from the bundled model
      edgediff check my-model.onnx my-model.safetensors --atol 1e-3
      edgediff check digits.plan --atol 2e-2 --rtol 2e-2
    """
    if artifact.suffix == ".onnx":
        return _check_onnx(artifact, source, allow_pickle, atol, rtol)
    if artifact.suffix in (".plan", ".engine"):
        return _check_plan(artifact, onnx_path, atol, rtol)
    raise EdgediffError(f"{artifact} is neither an .onnx file nor a TensorRT .plan")
