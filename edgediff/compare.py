"""Comparing two implementations of D(x, σ) the same way everywhere: export
validation (ONNX Runtime vs torch) and ``edgediff check`` (TensorRT vs ONNX
Runtime). NumPy only: each side is any ``f(x float32, σ float32) -> array``.

An element passes when |got − ref| ≤ atol + rtol·|ref| (polygraphy's and
numpy.isclose's rule); NaN or Inf from the side under test never passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgediff.artifact import ArtifactInfo

VALIDATION_BATCHES = (1, 3, 16)
Fn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Validation:
    max_abs: float
    max_rel: float
    worst: float        # max over elements of |err| / (atol + rtol·|ref|); ≤ 1 passes
    cases: int
    atol: float
    rtol: float
    end_to_end: dict | None = field(default=None)  # fp16 exports: final samples vs fp32

    @property
    def ok(self) -> bool:
        e2e = self.end_to_end
        return self.worst <= 1.0 and (e2e is None or e2e["max_abs"] <= e2e["limit"])

    def __str__(self) -> str:
        return (f"over {self.cases} batches: max abs {self.max_abs:.2e}, "
                f"max rel {self.max_rel:.2e} (tolerance per element: {self.atol:g} + "
                f"{self.rtol:g}·|ref|, worst at {self.worst:.2f} of it)" + (
                    "" if self.end_to_end is None else
                    "; end to end, {num} samples of {solver} {steps} steps vs the float32 "
                    "model: max abs {max_abs:.2e}, RMS {rms:.2e} (limit {limit:g})"
                    .format(**self.end_to_end)))


def validation_inputs(info: ArtifactInfo, batch: int, seed: int):
    """x̂ = data-scale signal + σ·noise over σ_min, a log-spaced sweep and σ_max."""
    sweep = np.concatenate([[info.sigma_min],
                            np.geomspace(info.sigma_min, info.sigma_max, 10)[1:-1],
                            [info.sigma_max]])
    rng = np.random.default_rng(seed)
    sigma = sweep[(np.arange(batch) + seed) % len(sweep)]
    x = rng.standard_normal((batch, *info.sample_shape)) * info.sigma_data + \
        sigma.reshape(-1, *[1] * len(info.sample_shape)) * rng.standard_normal(
            (batch, *info.sample_shape))
    return x.astype(np.float32), sigma.astype(np.float32)


def compare(got_fn: Fn, ref_fn: Fn, info: ArtifactInfo, atol: float, rtol: float,
            batches=VALIDATION_BATCHES) -> Validation:
    """Both sides on the validation inputs; the worst element decides."""
    max_abs = max_rel = worst = 0.0
    cases = 0
    for batch in batches:
        for seed in range(3 if batch == 1 else 2):
            x, sigma = validation_inputs(info, batch, seed)
            got = np.array(got_fn(x, sigma), dtype=np.float64)
            ref = np.asarray(ref_fn(x, sigma), dtype=np.float64)
            err = np.abs(got - ref)
            max_abs = max(max_abs, float(np.nanmax(err)) if np.any(np.isfinite(err)) else np.inf)
            max_rel = max(max_rel, float((err / np.maximum(np.abs(ref), 1e-3)).max()))
            tol = atol + rtol * np.abs(ref)
            ratio = np.divide(err, tol, out=np.where(err > 0, np.inf, 0.0), where=tol > 0)
            if not np.all(np.isfinite(got)):
                ratio = np.full_like(err, np.inf)  # NaN/Inf from the graph never passes
            worst = max(worst, float(ratio.max()))
            cases += 1
    return Validation(max_abs, max_rel, worst, cases, atol, rtol)


def compare_backends(got: Fn, ref: Fn, atol: float, rtol: float) -> Validation:
    """Two runtime backends of one artifact (e.g. a TensorRT plan vs its ONNX file)."""
    return compare(got, ref, ref.info, atol, rtol)
