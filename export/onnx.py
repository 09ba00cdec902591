"""Checkpoint → ONNX with the preconditioning folded in: one graph D(x, σ) → denoised.

Inputs ``x`` float32 [B, *sample_shape] (x̂, already divided by s) and ``sigma``
float32 [B] (and a conditional graph's ``class_labels``, ``guidance``:
``edgediff.graph``); output ``denoised``; dynamic batch; opset ≥ 17; the artifact
metadata of ``edgediff.artifact`` in ``metadata_props``. Every export is traced
(``export.trace``), described and checked (``onnx.checker`` full check,
``export.describe``) and, unless asked not to, validated against the torch module
with ONNX Runtime (``export.validation``) before it is moved into place: a failed
or interrupted export leaves nothing at the output path. ``--int8`` then swaps in
the calibrated QDQ graph (``export.int8``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.errors import EdgediffError, missing_extra
from edgediff.export.describe import artifact_info, stamp
from edgediff.export.int8 import Int8Options, Int8Validation, check_quantizable, quantize_in_place
from edgediff.export.trace import export_graph, half_network, trace
from edgediff.export.validation import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    Validation,
    sampling_check,
    validate_onnx,
)
from edgediff.fileio import atomic_path
from edgediff.models.checkpoint import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOptions:
    """How to export, checked once, here: the ``opset`` (≥ 17); overwrite an existing
    file (``force``); validate against torch (``validate``) within ``atol`` and
    ``rtol`` per element (None: 1e-4, or 1e-2 with ``fp16``); run the network in
    float16 (``fp16``); take a guidance scale per sample (``guidance``); or write a
    calibrated QDQ graph (``int8``: its calibration and limits)."""

    opset: int = 17
    force: bool = False
    validate: bool = True
    atol: float | None = None
    rtol: float | None = None
    fp16: bool = False
    guidance: bool = False
    int8: Int8Options | None = None

    def __post_init__(self) -> None:
        if self.opset < 17:
            raise EdgediffError(f"opset {self.opset} is too old; edgediff exports opset 17 or "
                                f"newer")
        if self.int8 is not None and not isinstance(self.int8, Int8Options):
            raise TypeError(f"int8 takes Int8Options or None, not {self.int8!r}")
        if self.fp16 and self.int8:
            raise EdgediffError("--int8 and --fp16 are two precisions for one graph; choose one")
        default = FP16_TOLERANCE if self.fp16 else FP32_TOLERANCE
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            elif not (value >= 0 and np.isfinite(value)):
                raise EdgediffError(f"--{name} must be a number ≥ 0, got {value!r}")

    @property
    def precision(self) -> str:
        """The float graph's precision, as the artifact metadata names it."""
        return "fp16" if self.fp16 else "fp32"


def export_source(source: str, out: str | Path, options: ExportOptions = ExportOptions(), *,
                  allow_pickle: bool = False, null_label: int | None = None
                  ) -> tuple[LoadedModel, Validation | Int8Validation | None]:
    """``export_onnx`` for a source the user names (``resolve_source``): (the model,
    the validation figures). ``null_label`` overrides the class id a conditional
    checkpoint trained as "no label"."""
    from edgediff.models.loader import resolve_source

    model, digest = resolve_source(source, allow_pickle)
    if null_label is not None:
        if not model.config.get("num_classes"):
            raise EdgediffError("--null-label: this model is not class-conditional")
        model.config["null_label"] = null_label
    return model, export_onnx(model, out, options, source_sha256=digest)


def export_onnx(model: LoadedModel, out: str | Path, options: ExportOptions = ExportOptions(),
                *, source_sha256: str) -> Validation | Int8Validation | None:
    """Export, check, validate, then move into place. Returns the validation figures
    (None when ``options.validate`` is off and there is no int8 check).

    ``fp16`` runs the network in half precision while the preconditioning
    (c_skip, c_out, c_in, c_noise, the σ → t map), the noise embedding and the
    attention softmax stay in float32 — a mixed graph with float32 inputs and
    output. It is validated against the float32 torch model with looser
    tolerances (default 1e-2) and end to end: a fixed-seed Heun run's final
    samples must stay within 5 % of the data's half range of the float32 model's.

    A class-conditional model's graph also takes ``class_labels`` (int64 [B]);
    ``guidance`` adds a ``guidance`` input (float32 [B]) and doubles the batch
    inside, so classifier-free guidance is one launch per step.

    ``int8`` writes a QDQ graph instead (``edgediff.export.int8``): the float32
    export, validated as usual, is calibrated on samples of its own default solver
    and quantized; the int8 graph must stay within the tolerance of it (RMS per σ
    over the range, in units of the data's half range) and end to end, or the
    export is refused with the numbers.
    """
    try:
        import onnx  # noqa: F401 (torch.onnx.export and the checker need it)
    except ImportError:
        raise missing_extra("onnx", "torch") from None
    out = Path(out)
    if out.exists() and not options.force:
        raise EdgediffError(f"{out} exists; pass --force to overwrite it")
    if options.int8:
        check_quantizable(model)
    info = artifact_info(model, source_sha256, options.precision, options.guidance)
    reference = export_graph(model.denoiser.float().eval(), info)
    graph = export_graph(half_network(model.denoiser), info) if options.fp16 else reference
    with atomic_path(out) as tmp:
        trace(graph, info, tmp, options.opset)
        stamp(tmp, info)
        result = None
        if options.validate:
            result = validate_onnx(tmp, reference, info, options.atol, options.rtol)
            if options.fp16:
                result.end_to_end = sampling_check(tmp, model.denoiser.float().eval(), info)
            log.info("%s", result)
            if not result.ok:
                raise EdgediffError(f"export failed validation: {result}")
        if options.int8:
            result = quantize_in_place(tmp, model, info, options.int8)
    return result
