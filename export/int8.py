"""export --int8: the float32 export, validated as usual, calibrated on samples of
its own default solver and replaced in place by its QDQ graph
(``edgediff.export.quantize``), or refused with the numbers.

The int8 graph must stay within a tolerance of the float32 one, as RMS per σ over
the model's range and end to end, in units of the data's half range.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError
from edgediff.export.describe import stamp
from edgediff.export.quantize import (
    INT8_TARGETS,
    INT8_TOLERANCE,
    calibration_inputs,
    quantize,
    sweep_error,
)
from edgediff.export.validation import sampling_check
from edgediff.metadata import CALIBRATION_METHODS
from edgediff.models.checkpoint import LoadedModel

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Int8Options:
    """How to calibrate and how far the int8 graph may stray: ``calibration`` samples
    of the default solver by ``method`` (``quantize.calibration_inputs``), activations
    for ``target`` (``quantize.quantize``), and the largest RMS of int8 − float32,
    ``tolerance`` (None: ``INT8_TOLERANCE``). Checked once, here."""

    calibration: int = 64
    method: str = "trajectory"
    tolerance: float | None = None
    target: str = "onnxruntime"

    def __post_init__(self) -> None:
        n = self.calibration
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise EdgediffError(f"--calibration takes a number of samples ≥ 1, got {n!r}")
        if self.method not in CALIBRATION_METHODS:
            raise EdgediffError(f"unknown calibration method {self.method!r}; choose one of "
                                f"{', '.join(CALIBRATION_METHODS)}")
        if self.target not in INT8_TARGETS:
            raise EdgediffError(f"unknown int8 target {self.target!r}; choose one of "
                                f"{', '.join(INT8_TARGETS)}")
        if self.tolerance is None:
            object.__setattr__(self, "tolerance", INT8_TOLERANCE)
        elif not (self.tolerance > 0 and np.isfinite(self.tolerance)):
            raise EdgediffError(f"--int8-tolerance must be a positive number, got "
                                f"{self.tolerance!r}")


@dataclasses.dataclass
class Int8Validation:
    """The int8 graph against the float32 one: RMS per σ over the model's range, and
    end to end (final samples of the default solver vs the float32 torch model)."""

    sweep: list[tuple[float, float]]  # (σ, RMS of int8 − fp32)
    limit: float
    calls: int
    method: str
    end_to_end: dict | None = None

    @property
    def worst(self) -> tuple[float, float]:
        return max(self.sweep, key=lambda p: p[1])

    @property
    def ok(self) -> bool:
        e2e = self.end_to_end
        return self.worst[1] <= self.limit and (e2e is None or e2e["rms"] <= e2e["limit"])

    def __str__(self) -> str:
        sigma, rms = self.worst
        text = (f"int8 vs float32 over 12 σ from {self.sweep[0][0]:g} to {self.sweep[-1][0]:g}: "
                f"worst RMS {rms:.3g} at σ = {sigma:.3g} (limit {self.limit:g}); calibrated "
                f"on {self.calls} calls ({self.method})")
        if self.end_to_end:
            text += ("; end to end, {num} samples of {solver} {steps} steps vs the float32 "
                     "model: RMS {rms:.3g} (limit {limit:g}), max abs {max_abs:.3g}"
                     .format(**self.end_to_end))
        return text


def check_quantizable(model: LoadedModel) -> None:
    """Refuse a model with no network weights before anything is written."""
    network = getattr(model.denoiser, "model", None)
    if network is None or not any(p.is_floating_point() for p in network.parameters()):
        raise EdgediffError("this model has no network weights to quantize (the analytic "
                            "mixture is exact arithmetic); export it without --int8")


def quantize_in_place(path: Path | str, model: LoadedModel, info: ArtifactInfo,
                      options: Int8Options) -> Int8Validation:
    """Replace the float32 graph at ``path`` by its calibrated QDQ graph, or refuse."""
    path = Path(path)
    fp32 = path.with_name(path.name + ".fp32.onnx")
    qdq = path.with_name(path.name + ".int8.onnx")
    method, num, target = options.method, options.calibration, options.target
    try:
        os.replace(path, fp32)
        calls = calibration_inputs(fp32, info, num, method)
        kept = quantize(fp32, qdq, calls, target)
        activations = "symmetric int8" if target == "tensorrt" else "uint8"
        provenance = {"method": method, "samples": num, "calls": len(calls), "seed": 0,
                      "solver": info.default_solver, "target": target,
                      "tool": f"onnxruntime.quantization quantize_static QDQ, per-channel "
                              f"symmetric int8 weights, {activations} activations, MinMax",
                      "float32_nodes": kept}
        int8_info = dataclasses.replace(info, precision="int8", calibration=provenance)
        stamp(qdq, int8_info, full_check=False)
        half_range = (info.data_range[1] - info.data_range[0]) / 2
        result = Int8Validation(sweep_error(qdq, fp32, int8_info),
                                options.tolerance * half_range, len(calls), method)
        e2e = sampling_check(qdq, model.denoiser.float().eval(), int8_info)
        e2e["limit"] = options.tolerance * half_range
        result.end_to_end = e2e
        log.info("%s", result)
        if not result.ok:
            raise EdgediffError(f"the int8 graph is too far from float32: {result}; calibrate "
                                f"on more samples (--calibration), or accept it knowingly "
                                f"with a larger --int8-tolerance")
        os.replace(qdq, path)
        return result
    finally:
        fp32.unlink(missing_ok=True)
        qdq.unlink(missing_ok=True)
