"""Comparing two implementations of D(x, σ) the same way everywhere: export
validation (ONNX Runtime vs torch) and ``edgediff check`` (TensorRT vs ONNX
Runtime). Each side is any ``f(x float32, σ float32, **extra) -> array``, where
a conditional artifact's ``extra`` holds ``class_labels`` (and ``guidance``).

The verdict is polygraphy's comparator (``SimpleCompareFunc``, elementwise) on
each sample divided by its call's magnitude m = max(1, |x̂|, |D|): an element
fails only when it exceeds both tolerances, |got − ref| > atol·m and
|got − ref| > rtol·|ref|. NaN or Inf from the side under test never passes.
``atol`` is relative to m because that is the scale float32 rounds a call at
(``edgediff.tolerance``, point 1): a VP or VE model's D at σ = 80 is x̂ − σ·F,
the difference of two numbers of |x̂|'s size, so its rounding is a few ulps of
|x̂| however small D is; with m = 1 the rule is the plain max(atol, rtol·|ref|).
Alongside, edgediff reports max abs / max rel error and the worst element as a
fraction of its tolerance max(atol·m, rtol·|ref|) — the same rule, as a number.

An export passes ``validate_onnx`` (ONNX Runtime vs the torch module) before it
is moved into place; fp16 and int8 exports also pass ``sampling_check`` (final
samples of the default solver, NumPy runtime on the graph vs the torch reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import missing_extra
from edgediff.graph import label_cycle

if TYPE_CHECKING:
    from torch import nn

VALIDATION_BATCHES = (1, 3, 16)
FP32_TOLERANCE = 1e-4        # per element, absolute and relative: fp32 graph vs fp32 torch
FP16_TOLERANCE = 1e-2        # per element, absolute and relative: fp16 network vs fp32 torch
FP16_SAMPLE_TOLERANCE = 0.05  # end to end, max abs, in units of the data's half range
Fn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Validation:
    max_abs: float
    max_rel: float
    worst: float        # max over elements of |err| / max(atol, rtol·|ref|)
    cases: int
    atol: float
    rtol: float
    passed: bool = True  # polygraphy's verdict over every case
    end_to_end: dict | None = field(default=None)  # fp16 exports: final samples vs fp32

    @property
    def ok(self) -> bool:
        e2e = self.end_to_end
        return self.passed and (e2e is None or e2e["max_abs"] <= e2e["limit"])

    def __str__(self) -> str:
        return (f"over {self.cases} batches: max abs {self.max_abs:.2e}, "
                f"max rel {self.max_rel:.2e} (tolerance per element: max({self.atol:g}·m, "
                f"{self.rtol:g}·|ref|), m = max(1, |x̂|, |D|) per sample; worst at "
                f"{self.worst:.2f} of it; polygraphy: "
                f"{'pass' if self.passed else 'FAIL'})" + (
                    "" if self.end_to_end is None else
                    "; end to end, {num} samples of {solver} {steps} steps vs the float32 "
                    "model: max abs {max_abs:.2e}, RMS {rms:.2e} (limit {limit:g})"
                    .format(**self.end_to_end)))


def validation_extras(info: ArtifactInfo, batch: int, seed: int) -> dict[str, np.ndarray]:
    """A conditional graph's other inputs: every class id and the null one in turn,
    for --guidance graphs scales 0, 1, 2.5 and 4 in turn, and each declared tensor
    (in order) its null value and standard normal values in turn."""
    extra = {}
    if info.num_classes:
        ids = info.num_classes + (info.null_label is not None)  # and the null one, if any
        extra["class_labels"] = ((np.arange(batch) * 7 + seed) % ids).astype(np.int64)
        if info.null_label is not None:
            extra["class_labels"][extra["class_labels"] == info.num_classes] = info.null_label
    if info.guidance_input:
        extra["guidance"] = np.array([0.0, 1.0, 2.5, 4.0], np.float32)[
            (np.arange(batch) + seed) % 4]
    rng = np.random.default_rng(seed + 1)
    for t in info.tensors:
        value = rng.standard_normal((batch, *t.shape)).astype(np.float32)
        value[(np.arange(batch) + seed) % 2 == 0] = t.null
        extra[t.name] = value
    return extra


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


def polygraphy_verdict(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> bool:
    """polygraphy's SimpleCompareFunc (elementwise) on one output pair, quietly."""
    try:
        from polygraphy.comparator import Comparator, RunResults, SimpleCompareFunc
        from polygraphy.comparator.struct import IterationResult
        from polygraphy.logger import G_LOGGER
    except ImportError:
        raise missing_extra("polygraphy", "torch") from None
    results = RunResults([
        (name, [IterationResult({"denoised": out}, runner_name=name)])
        for name, out in (("candidate", got), ("reference", ref))])
    severity = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.CRITICAL
    try:
        verdict = Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(
            atol=atol, rtol=rtol, check_error_stat="elemwise"))
    finally:
        G_LOGGER.module_severity = severity
    return bool(verdict)


def call_magnitude(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per sample, m = max(1, |x̂|, |D|), shaped to broadcast against the batch."""
    n = len(ref)
    m = np.maximum.reduce([np.ones(n), np.abs(x).reshape(n, -1).max(1),
                           np.abs(ref).reshape(n, -1).max(1)])
    return m.reshape(n, *[1] * (ref.ndim - 1)).astype(np.float32)


def compare(got_fn: Fn, ref_fn: Fn, info: ArtifactInfo, atol: float, rtol: float,
            batches=VALIDATION_BATCHES) -> Validation:
    """Both sides on the validation inputs; polygraphy's verdict on every case."""
    max_abs = max_rel = worst = 0.0
    cases, passed = 0, True
    for batch in batches:
        for seed in range(3 if batch == 1 else 2):
            x, sigma = validation_inputs(info, batch, seed)
            extra = validation_extras(info, batch, seed)  # labels, guidance: by keyword
            got = np.array(got_fn(x, sigma, **extra), dtype=np.float32)
            ref = np.array(ref_fn(x, sigma, **extra), dtype=np.float32)
            finite = bool(np.all(np.isfinite(got)))
            m = call_magnitude(x, ref)
            passed &= finite and polygraphy_verdict(got / m, ref / m, atol, rtol)
            err = np.abs(got.astype(np.float64) - ref)
            max_abs = max(max_abs, float(err.max()) if finite else np.inf)
            max_rel = max(max_rel, float((err / np.maximum(np.abs(ref), 1e-3)).max()))
            tol = np.maximum(atol * m, rtol * np.abs(ref.astype(np.float64)))
            ratio = np.divide(err, tol, out=np.where(err > 0, np.inf, 0.0), where=tol > 0)
            worst = max(worst, float(ratio.max()) if finite else np.inf)
            cases += 1
    return Validation(max_abs, max_rel, worst, cases, atol, rtol, passed)


def compare_backends(got: Fn, ref: Fn, atol: float, rtol: float) -> Validation:
    """Two runtime backends of one artifact (e.g. a TensorRT plan vs its ONNX file)."""
    return compare(got, ref, ref.info, atol, rtol)


def validate_onnx(path, graph: nn.Module, info: ArtifactInfo, atol: float, rtol: float,
                  batches=VALIDATION_BATCHES) -> Validation:
    """ONNX Runtime (CPU) against the torch module on the validation inputs."""
    import torch

    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_extra("onnxruntime", "cpu") from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def got(x, sigma, **extra):
        return sess.run(None, {"x": x, "sigma": sigma, **extra})[0]

    def ref(x, sigma, **extra):
        with torch.no_grad():
            return graph(torch.from_numpy(x), torch.from_numpy(sigma),
                         *[torch.from_numpy(v) for v in extra.values()]).numpy()

    return compare(got, ref, info, atol, rtol, batches)


def sampling_check(path, reference: nn.Module, info: ArtifactInfo, num: int = 16,
                   seed: int = 0) -> dict:
    """Final samples of the artifact's default solver, run by the NumPy runtime on
    ``path``, against the torch reference on the float32 module; same x_T."""
    from edgediff import runtime
    from edgediff.runtime.backends.ort import OrtDenoiser
    from edgediff.samplers.reference import reference_run
    from edgediff.settings import SolverSettings

    settings = SolverSettings.resolve(info, "heun")
    grid = {k: v for k, v in settings.options.items() if k in ("spacing", "rho")}
    sigmas = runtime.sigma_grid(info, settings.steps, **grid).tolist()
    condition = runtime.Condition(labels=label_cycle(info, num))  # every class and the null
    got = runtime.sample(OrtDenoiser(path), num, seed=seed, solver="heun", steps=settings.steps,
                         options=settings.options, condition=condition,
                         run=runtime.RunOptions(batch=num))
    ref = reference_run(reference, info, settings, sigmas, seed, range(num), condition=condition)
    half_range = (info.data_range[1] - info.data_range[0]) / 2
    max_abs = float(np.abs(got - ref).max()) if np.all(np.isfinite(got)) else float("inf")
    return {"solver": "heun", "steps": settings.steps, "num": num, "max_abs": max_abs,
            "rms": float(np.sqrt(np.mean((got - ref) ** 2))),
            "limit": FP16_SAMPLE_TOLERANCE * half_range}
