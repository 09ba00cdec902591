"""Checkpoint → ONNX with the preconditioning folded in: one graph D(x, σ) → denoised.

Inputs ``x`` float32 [B, *sample_shape] (x̂, already divided by s) and ``sigma``
float32 [B]; output ``denoised``; dynamic batch; opset ≥ 17; the artifact
metadata of ``edgediff.artifact`` in ``metadata_props``. Every export is checked
(``onnx.checker`` full check) and, unless asked not to, validated against the
torch module with ONNX Runtime before it is moved into place: a failed or
interrupted export leaves nothing at the output path.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from edgediff.artifact import ArtifactInfo
from edgediff.compare import VALIDATION_BATCHES, Validation, compare
from edgediff.errors import EdgediffError, missing_extra
from edgediff.fileio import atomic_path
from edgediff.models.checkpoint import LoadedModel

log = logging.getLogger(__name__)


class _Graph(nn.Module):
    """The exported function: exactly the preconditioned denoiser, two inputs."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x, sigma):
        return self.denoiser(x, sigma)


def default_sampler(parameterization: str) -> dict:
    if parameterization in ("epsilon", "v_prediction", "sample"):
        return {"solver": "ddim", "steps": 50, "spacing": "trailing", "eta": 0.0}
    return {"solver": "heun", "steps": 18}


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files in name order (diffusers folders)."""
    p, h = Path(path), hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def artifact_info(model: LoadedModel, source_sha256: str, precision: str = "fp32"
                  ) -> ArtifactInfo:
    cfg = model.config
    par = cfg["parameterization"]["name"]
    return ArtifactInfo(par, model.schedule, cfg["sigma_min"], cfg["sigma_max"],
                        cfg.get("sigma_data", 0.5), tuple(cfg["sample_shape"]),
                        tuple(cfg.get("data_range", (-1.0, 1.0))), source_sha256,
                        default_sampler(par), precision, quality_reference(cfg))


def quality_reference(config: dict) -> dict | None:
    """What the solver lab scores samples against: the exact mixture, or the
    dataset a model was trained on (when edgediff ships reference statistics)."""
    arch = config.get("architecture", {})
    if arch.get("name") == "analytic.gaussian_mixture":
        return {"kind": "gaussian_mixture", "mixture": arch["args"]}
    dataset = config.get("provenance", {}).get("dataset")
    if dataset == "digits" and tuple(config["sample_shape"]) == (1, 8, 8):
        return {"kind": "dataset", "name": "digits"}
    return None


def export_onnx(model: LoadedModel, out: str | Path, *, source_sha256: str, opset: int = 17,
                force: bool = False, validate: bool = True, atol: float = 1e-4,
                rtol: float = 1e-4) -> Validation | None:
    """Export, check, validate, then move into place. Returns the validation figures."""
    try:
        import onnx
    except ImportError:
        raise missing_extra("onnx", "torch") from None
    out = Path(out)
    if opset < 17:
        raise EdgediffError(f"opset {opset} is too old; edgediff exports opset 17 or newer")
    if out.exists() and not force:
        raise EdgediffError(f"{out} exists; pass --force to overwrite it")
    info = artifact_info(model, source_sha256)
    graph = _Graph(model.denoiser.float().eval())
    shape = info.sample_shape
    with atomic_path(out) as tmp:
        example = (torch.zeros(2, *shape), torch.tensor([info.sigma_min, info.sigma_max]))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, example, tmp, input_names=["x", "sigma"],
                              output_names=["denoised"], opset_version=opset, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in ("x", "sigma", "denoised")})
        proto = onnx.load(tmp)
        del proto.metadata_props[:]
        for key, value in info.to_props().items():
            proto.metadata_props.add(key=key, value=value)
        proto.producer_name = "edgediff"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
        result = validate_onnx(tmp, graph, info, atol, rtol) if validate else None
        if result is not None:
            log.info("%s", result)
            if not result.ok:
                raise EdgediffError(f"export failed validation: {result}")
    return result


def validate_onnx(path, graph: nn.Module, info: ArtifactInfo, atol: float, rtol: float,
                  batches=VALIDATION_BATCHES) -> Validation:
    """ONNX Runtime (CPU) against the torch module on the validation inputs."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_extra("onnxruntime", "cpu") from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def got(x, sigma):
        return sess.run(None, {"x": x, "sigma": sigma})[0]

    def ref(x, sigma):
        with torch.no_grad():
            return graph(torch.from_numpy(x), torch.from_numpy(sigma)).numpy()

    return compare(got, ref, info, atol, rtol, batches)
