"""``edgediff check``: does an artifact compute what its source computes?

An ONNX file is compared with its torch source, a TensorRT plan with its ONNX
file, both on the export's validation inputs and with its verdict
(``edgediff.export.validation``: polygraphy's comparator plus edgediff's figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgediff.errors import EdgediffError


@dataclass
class Check:
    """What was compared with what, the figures, and any warning worth printing."""

    artifact: Path
    against: str
    validation: object
    warning: str | None = None
    failure: str | None = None  # why it does not match, when it does not

    def __str__(self) -> str:
        return f"{self.artifact} vs {self.against}: {self.validation}"


def check_artifact(artifact: Path, source: str | None = None, *, onnx_path: Path | None = None,
                   atol: float = 1e-4, rtol: float = 1e-4, allow_pickle: bool = False) -> Check:
    """An .onnx file against its torch source (the shipped models are found by their
    hash), or a .plan against its ONNX file. A mismatch is a result (``failure``
    says what), not an error: the caller shows the figures first."""
    if artifact.suffix == ".onnx":
        return check_onnx(artifact, source, atol, rtol, allow_pickle)
    if artifact.suffix in (".plan", ".engine"):
        return check_plan(artifact, onnx_path, atol, rtol)
    raise EdgediffError(f"{artifact} is neither an .onnx file nor a TensorRT .plan")


def check_onnx(path: Path, source: str | None, atol: float, rtol: float,
               allow_pickle: bool = False) -> Check:
    from edgediff import runtime
    from edgediff.export.trace import export_graph
    from edgediff.export.validation import validate_onnx
    from edgediff.models.loader import find_shipped_source, resolve_source

    info = runtime.load(path).info
    if source is None:
        source = find_shipped_source(info.source_sha256)
        if source is None:
            raise EdgediffError(f"{path} was not exported from a model edgediff ships; name its "
                                f"source: edgediff check {path} SOURCE")
    model, digest = resolve_source(source, allow_pickle)
    if tuple(model.config["sample_shape"]) != info.sample_shape:
        raise EdgediffError(f"{source} makes samples of shape {tuple(model.config['sample_shape'])}"
                            f", {path} of {info.sample_shape}: they are different models")
    warning = None
    if digest != info.source_sha256:
        warning = (f"warning: {source} is not the file {path} was exported from (sha256 "
                   f"{digest[:12]}… vs {info.source_sha256[:12]}…)")
    if bool(model.config.get("num_classes")) != bool(info.num_classes):
        raise EdgediffError(f"{source} and {path} differ in conditioning: one is "
                            f"class-conditional, the other not")
    result = validate_onnx(path, export_graph(model.denoiser.float().eval(), info), info, atol,
                           rtol)
    return Check(path, f"{source} (torch)", result, warning, None if result.ok else
                 f"{path} does not match {source} within tolerance")


def check_plan(path: Path, onnx_path: Path | None, atol: float, rtol: float) -> Check:
    from edgediff import runtime
    from edgediff.export.validation import compare_backends
    from edgediff.runtime.backends.tensorrt import plan_info

    _, side = plan_info(path)
    onnx_path = onnx_path or path.with_name(side["onnx_file"])
    if not onnx_path.is_file():
        raise EdgediffError(f"the plan's ONNX file {onnx_path} is not there; pass --onnx PATH")
    result = compare_backends(runtime.load(path), runtime.load(onnx_path), atol, rtol)
    return Check(path, f"{onnx_path} (ONNX Runtime)", result, None, None if result.ok else
                 f"{path} does not match {onnx_path} within tolerance (an --fp16 plan needs "
                 f"looser --atol/--rtol)")
