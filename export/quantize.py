"""INT8 export: a QDQ graph calibrated on the model's own sampling trajectories.

The float32 graph is quantized with ONNX Runtime's static quantization
(``onnxruntime.quantization.quantize_static``, QDQ format): Conv, Gemm and MatMul
get per-channel symmetric int8 weights and 8-bit activations whose ranges come
from calibration inputs (uint8 for ONNX Runtime, symmetric int8 for TensorRT:
``quantize``). Everything else stays float32, by op type: the
preconditioning (c_skip, c_out, c_in and the σ → c_noise map are Mul/Div/Add/Log
nodes), normalisation, attention's Einsum and softmax. By name, the noise (and
label) embedding stays float32 too: its Gemms turn one scalar per sample into the
features every block is modulated by, and their range spans σ_min … σ_max
(``KEEP_FLOAT``). TensorRT reads the QDQ graph as explicit quantization.

Diffusion networks see different activations at every noise level, so the
calibration inputs are what the network sees while sampling: the fp32 graph is
run through its default solver and every denoiser call's (x̂, σ[, labels]) is
recorded, σ_max … σ_min (PTQ4DM, Q-Diffusion). Two alternatives exist for
comparison (``benchmarks/int8_quality.py``): pure noise at log-uniform random σ,
and the trajectories' inputs at a single σ.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError, missing_extra
from edgediff.graph import graph_inputs, label_cycle
from edgediff.metadata import CALIBRATION_METHODS

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
# Node-name fragments kept float32. The noise/label embeddings (EDM's map_noise,
# map_label, map_augment; diffusers' time and class embeddings) by design. The first
# and last convolutions and the residual shortcuts (EDM's skip, diffusers'
# conv_shortcut) from measurement: on the bundled model, keeping the shortcuts float
# cut the worst RMS of int8 − fp32 over σ by 23 % and conv_in/conv_out by 13 %, while
# keeping the attention or the per-block embedding projections (affine) float
# changed it by under 3 %. What keeping them float costs is in benchmarks/int8_speed.py.
KEEP_FLOAT = ("map_noise", "map_label", "map_augment", "time_proj", "time_embedding",
              "class_embedding", "/skip/", "conv_shortcut", "conv_in", "conv_out")
INT8_TOLERANCE = 0.1  # RMS of int8 − fp32 per σ of the sweep, in units of the data's half range


def calibration_inputs(path: str | Path, info: ArtifactInfo, num: int, method: str = "trajectory",
                       seed: int = 0, batch: int = 16) -> list[dict[str, np.ndarray]]:
    """The graph inputs to calibrate on, one dict per denoiser call.

    "trajectory": every call of the default solver on ``num`` samples (seed
    ``seed``), σ_max … σ_min. "noise": as many calls of pure noise, x̂ = σ·z with
    σ log-uniform over the model's range. "single_sigma": the trajectory calls at
    the one grid σ nearest σ_data, repeated to the same count."""
    from edgediff import runtime

    if method not in CALIBRATION_METHODS:
        raise EdgediffError(f"unknown calibration method {method!r}; choose one of "
                            f"{', '.join(CALIBRATION_METHODS)}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise EdgediffError(f"--calibration takes a number of samples ≥ 1, got {num!r}")
    D = runtime.load(path)
    recorder = _Recorder(D)
    labels = label_cycle(info, num)  # every class and the null label, in turn
    runtime.sample(recorder, num, seed=seed, condition=runtime.Condition(labels=labels),
                   run=runtime.RunOptions(batch=min(batch, num)))
    calls = recorder.calls
    if method == "noise":
        rng = np.random.default_rng(seed)
        out = []
        for call in calls:
            n = len(call["sigma"])
            sigma = np.exp(rng.uniform(np.log(info.sigma_min), np.log(info.sigma_max), n))
            x = sigma.reshape(-1, *[1] * len(info.sample_shape)) * rng.standard_normal(
                (n, *info.sample_shape))
            out.append({**call, "x": x.astype(np.float32), "sigma": sigma.astype(np.float32)})
        calls = out
    elif method == "single_sigma":
        sigmas = np.array([float(c["sigma"][0]) for c in calls])
        one = float(sigmas[np.argmin(np.abs(np.log(sigmas / info.sigma_data)))])
        chosen = [c for c in calls if float(c["sigma"][0]) == one]
        calls = [chosen[i % len(chosen)] for i in range(len(calls))]
    for call in calls:
        if not all(np.all(np.isfinite(v)) for v in call.values()):
            raise EdgediffError("calibration produced non-finite inputs; the float32 model "
                                "itself returns NaN/Inf ('edgediff check' it)")
    return calls


class _Recorder:
    """A denoiser that records each call's inputs (copies) and passes it on."""

    def __init__(self, inner):
        self.inner, self.info = inner, inner.info
        self.calls: list[dict[str, np.ndarray]] = []

    def __call__(self, x, sigma, **extra):
        # every graph input (edgediff.graph): those the call leaves out at their default
        left_out = {i.name: i.buffer(len(x)) for i in graph_inputs(self.info)[2:]}
        self.calls.append({"x": np.array(x, np.float32), "sigma": np.array(sigma, np.float32),
                           **left_out,
                           **{k: np.array(v) for k, v in extra.items() if v is not None}})
        return self.inner(x, sigma, **extra)


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over recorded calls."""

    def __init__(self, calls: list[dict[str, np.ndarray]], names: list[str]):
        self._calls, self._names = calls, names
        self._it: Iterator = iter(calls)

    def get_next(self):
        call = next(self._it, None)
        return None if call is None else {k: v for k, v in call.items() if k in self._names}

    def rewind(self):
        self._it = iter(self._calls)


def kept_float(path: str | Path) -> list[str]:
    """The quantizable nodes (by op type) that stay float32: the embeddings, by name
    (``KEEP_FLOAT``), and attention's activation × activation MatMuls (QKᵀ, AV).
    Quantized, those pull the softmax between them into int8 too, and ONNX Runtime's
    QLinearSoftmax took 149 of 410 ms a call on the CIFAR-sized U-Net (float32
    Softmax: 36 ms); the weight MatMuls (the q, k, v and output projections) stay
    quantized."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type in QUANTIZED_OPS and (
        any(k in n.name for k in KEEP_FLOAT)
        or (n.op_type == "MatMul" and not any(i in constants for i in n.input)))]


INT8_TARGETS = ("onnxruntime", "tensorrt")


def quantize(fp32: str | Path, out: str | Path, calls: list[dict[str, np.ndarray]],
             target: str = "onnxruntime") -> list[str]:
    """Write the QDQ graph of ``fp32`` calibrated on ``calls``; returns the nodes kept
    float32 by name. Metadata travels with the graph; the caller rewrites it.

    Weights are per-channel symmetric int8 for both targets. Activations differ:
    "onnxruntime" takes uint8 with a zero point (the U8S8 pair x86 VNNI and ARM
    dot-product kernels run; S8S8 QDQ ran 1.3× *slower* than float32 here, U8S8
    1.4× faster), "tensorrt" symmetric int8 with zero point 0 and float32 biases,
    the only form TensorRT's explicit quantization takes."""
    if target not in INT8_TARGETS:
        raise EdgediffError(f"unknown int8 target {target!r}; choose one of "
                            f"{', '.join(INT8_TARGETS)}")
    if not calls or not all(np.all(np.isfinite(v)) for c in calls for v in c.values()):
        raise EdgediffError("calibration inputs hold NaN/Inf (or none were given), which "
                            "would give non-finite quantization ranges; check the float32 "
                            "model with 'edgediff check'")
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise missing_extra("onnxruntime", "cpu") from None
    pre = Path(out).with_name(Path(out).name + ".pre.onnx")
    try:
        # ONNX Runtime's pre-processing: graph optimisation and ONNX shape inference
        # (its symbolic shape inference cannot follow the σ-map and batch-doubling nodes)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        names = [i.name for i in onnx.load(str(pre), load_external_data=False).graph.input]
        keep = kept_float(pre)
        trt = target == "tensorrt"
        quantize_static(str(pre), str(out), _Reader(calls, names), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                        activation_type=QuantType.QInt8 if trt else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=keep,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": trt,
                                       "QuantizeBias": not trt})
    finally:
        pre.unlink(missing_ok=True)
    check_ranges(onnx.load(str(out)))
    return keep


def check_ranges(model) -> None:
    """Every quantization scale finite and positive, or one line saying so."""
    from onnx import numpy_helper

    scales = [numpy_helper.to_array(t) for t in model.graph.initializer
              if t.name.endswith("_scale")]
    if not scales or not all(np.all(np.isfinite(s)) and np.all(s > 0) for s in scales):
        raise EdgediffError("calibration produced non-finite or zero quantization ranges; "
                            "calibrate on more samples (--calibration) or export without --int8")


def sweep_error(int8: str | Path, fp32: str | Path, info: ArtifactInfo, per_sigma: int = 32,
                seed: int = 0) -> list[tuple[float, float]]:
    """(σ, RMS of int8 − fp32) at 12 log-spaced σ over the model's range, on
    x̂ = data-scale signal + σ·noise (every class and the null label in turn)."""
    from edgediff.runtime.backends.ort import OrtDenoiser

    a, b = OrtDenoiser(int8), OrtDenoiser(fp32)
    rng = np.random.default_rng(seed)
    out = []
    for sigma in np.geomspace(info.sigma_min, info.sigma_max, 12):
        x = (rng.standard_normal((per_sigma, *info.sample_shape)) * info.sigma_data
             + sigma * rng.standard_normal((per_sigma, *info.sample_shape))).astype(np.float32)
        s = np.full(per_sigma, sigma, np.float32)
        # every class and the null label in turn; a --guidance graph's scale at 1
        extra = {i.name: i.buffer(per_sigma) for i in graph_inputs(info)[2:]}
        if "class_labels" in extra:
            extra["class_labels"] = label_cycle(info, per_sigma)
        got = np.array(a(x, s, **extra), np.float64)
        ref = np.array(b(x, s, **extra), np.float64)
        out.append((float(sigma), float(np.sqrt(np.mean((got - ref) ** 2)))))
    return out
