"""Checkpoint → ONNX with the preconditioning folded in: one graph D(x, σ) → denoised.

Inputs ``x`` float32 [B, *sample_shape] (x̂, already divided by s) and ``sigma``
float32 [B]; output ``denoised``; dynamic batch; opset ≥ 17; the artifact
metadata of ``edgediff.artifact`` in ``metadata_props``. Every export is checked
(``onnx.checker`` full check) and, unless asked not to, validated against the
torch module with ONNX Runtime before it is moved into place: a failed or
interrupted export leaves nothing at the output path.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError, missing_extra
from edgediff.export.quantize import INT8_TOLERANCE
from edgediff.export.validation import VALIDATION_BATCHES, Validation, compare
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


class _ConditionalGraph(_Graph):
    """D(x, σ, class_labels): integer ids [B], the null id for an unconditional pass;
    the network turns them into its one-hot rows inside the graph."""

    def forward(self, x, sigma, class_labels):
        return self.denoiser(x, sigma, class_labels)


class _GuidedGraph(_Graph):
    """Classifier-free guidance in one launch (export --guidance): the batch is
    doubled inside, the labels on one half and the null id on the other, and
    D = D_u + w·(D_c − D_u) per sample with w the ``guidance`` input [B]."""

    def __init__(self, denoiser: nn.Module, null_label: int):
        super().__init__(denoiser)
        self.null_label = null_label

    def forward(self, x, sigma, class_labels, guidance):
        both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]),
                             torch.cat([class_labels, torch.full_like(class_labels,
                                                                      self.null_label)]))
        d_c, d_u = both[: x.shape[0]], both[x.shape[0]:]
        w = guidance.reshape(-1, *[1] * (x.ndim - 1))
        return d_u + w * (d_c - d_u)


def export_graph(denoiser: nn.Module, info: ArtifactInfo) -> nn.Module:
    """The module whose forward is the exported function, for this artifact's inputs."""
    if info.guidance_input:
        return _GuidedGraph(denoiser, info.null_label)
    if info.num_classes:
        return _ConditionalGraph(denoiser)
    return _Graph(denoiser)


def graph_inputs(info: ArtifactInfo) -> list[str]:
    return ["x", "sigma"] + (["class_labels"] if info.num_classes else []) + (
        ["guidance"] if info.guidance_input else [])


def default_solver(config: dict) -> dict:
    """Discrete models: DDIM 50 (trailing), clamping x0 when their diffusers scheduler
    did; the rest: Heun 18 on the EDM grid."""
    if config["parameterization"]["name"] in ("epsilon", "v_prediction", "sample"):
        default = {"solver": "ddim", "steps": 50, "spacing": "trailing", "eta": 0.0}
        if config.get("provenance", {}).get("clip_sample"):
            default["clip"] = True
        return default
    return {"solver": "heun", "steps": 18}


def artifact_info(model: LoadedModel, source_sha256: str, precision: str = "fp32",
                  guidance: bool = False) -> ArtifactInfo:
    cfg = model.config
    par = cfg["parameterization"]["name"]
    return ArtifactInfo(par, model.schedule, cfg["sigma_min"], cfg["sigma_max"],
                        cfg.get("sigma_data", 0.5), tuple(cfg["sample_shape"]),
                        tuple(cfg.get("data_range", (-1.0, 1.0))), source_sha256,
                        default_solver(cfg), precision, quality_reference(cfg),
                        conditioning(cfg, guidance))


def conditioning(config: dict, guidance: bool = False) -> dict | None:
    """The artifact's conditioning for a class-conditional checkpoint (``num_classes``;
    the null id, ``null_label``, defaults to num_classes: the all-zero one-hot row)."""
    k = int(config.get("num_classes", 0))
    if not k:
        if guidance:
            raise EdgediffError("--guidance exports classifier-free guidance, which needs a "
                                "class-conditional model; this one has no classes")
        return None
    return {"num_classes": k, "null_label": int(config.get("null_label", k)),
            "guidance_input": guidance}


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


FP16_TOLERANCE = 1e-2        # per element, absolute and relative: fp16 network vs fp32 torch
FP16_SAMPLE_TOLERANCE = 0.05  # end to end, max abs, in units of the data's half range


def export_source(source: str, out: str | Path, *, allow_pickle: bool = False,
                  null_label: int | None = None, **options) -> tuple[LoadedModel, object]:
    """``export_onnx`` for a source the user names (``resolve_source``): (the model,
    the validation figures). ``null_label`` overrides the class id a conditional
    checkpoint trained as "no label"."""
    from edgediff.models.loader import resolve_source

    model, digest = resolve_source(source, allow_pickle)
    if null_label is not None:
        if not model.config.get("num_classes"):
            raise EdgediffError("--null-label: this model is not class-conditional")
        model.config["null_label"] = null_label
    return model, export_onnx(model, out, source_sha256=digest, **options)


def export_onnx(model: LoadedModel, out: str | Path, *, source_sha256: str, opset: int = 17,
                force: bool = False, validate: bool = True, atol: float | None = None,
                rtol: float | None = None, fp16: bool = False, guidance: bool = False,
                int8: bool = False, calibration: int = 64, calibration_method: str = "trajectory",
                int8_tolerance: float | None = None, int8_target: str = "onnxruntime"):
    """Export, check, validate, then move into place. Returns the validation figures.

    ``fp16`` runs the network in half precision while the preconditioning
    (c_skip, c_out, c_in, c_noise, the σ → t map), the noise embedding and the
    attention softmax stay in float32 — a mixed graph with float32 inputs and
    output. It is validated against the float32 torch model with looser
    tolerances (default 1e-2) and end to end: a fixed-seed Heun run's final
    samples must stay within 5 % of the data's half range of the float32 model's.

    A class-conditional model's graph also takes ``class_labels`` (int64 [B]);
    ``guidance`` adds a ``guidance`` input (float32 [B]) and doubles the batch
    inside, so classifier-free guidance is one launch per step.

    ``int8`` writes a QDQ graph instead (``edgediff.export.quantize``): the float32
    export, validated as usual, is calibrated on ``calibration`` samples of its
    own default solver and quantized; the int8 graph must stay within
    ``int8_tolerance`` of it (RMS per σ over the range, in units of the data's
    half range) and end to end, or the export is refused with the numbers.
    """
    try:
        import onnx
    except ImportError:
        raise missing_extra("onnx", "torch") from None
    out = Path(out)
    if opset < 17:
        raise EdgediffError(f"opset {opset} is too old; edgediff exports opset 17 or newer")
    if out.exists() and not force:
        raise EdgediffError(f"{out} exists; pass --force to overwrite it")
    if int8:
        _check_int8(model, fp16, calibration, int8_tolerance)
    default_tol = FP16_TOLERANCE if fp16 else 1e-4
    atol = default_tol if atol is None else atol
    rtol = default_tol if rtol is None else rtol
    info = artifact_info(model, source_sha256, "fp16" if fp16 else "fp32", guidance)
    reference = export_graph(model.denoiser.float().eval(), info)
    graph = export_graph(_half_network(model), info) if fp16 else reference
    shape, names = info.sample_shape, graph_inputs(info)
    with atomic_path(out) as tmp:
        example = (torch.zeros(2, *shape), torch.tensor([info.sigma_min, info.sigma_max]),
                   torch.zeros(2, dtype=torch.int64), torch.ones(2))[:len(names)]
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, example, tmp, input_names=names,
                              output_names=["denoised"], opset_version=opset, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in [*names, "denoised"]})
        proto = onnx.load(tmp)
        del proto.metadata_props[:]
        for key, value in info.to_props().items():
            proto.metadata_props.add(key=key, value=value)
        proto.producer_name = "edgediff"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
        result = validate_onnx(tmp, reference, info, atol, rtol) if validate else None
        if result is not None:
            if fp16:
                result.end_to_end = sampling_check(tmp, model.denoiser.float().eval(), info)
            log.info("%s", result)
            if not result.ok:
                raise EdgediffError(f"export failed validation: {result}")
        if int8:
            result = _quantize_in_place(tmp, model, info, calibration, calibration_method,
                                        INT8_TOLERANCE if int8_tolerance is None
                                        else int8_tolerance, int8_target)
    return result


def _check_int8(model: LoadedModel, fp16: bool, calibration, tolerance) -> None:
    if fp16:
        raise EdgediffError("--int8 and --fp16 are two precisions for one graph; choose one")
    network = getattr(model.denoiser, "model", None)
    if network is None or not any(p.is_floating_point() for p in network.parameters()):
        raise EdgediffError("this model has no network weights to quantize (the analytic "
                            "mixture is exact arithmetic); export it without --int8")
    if isinstance(calibration, bool) or not isinstance(calibration, int) or calibration < 1:
        raise EdgediffError(f"--calibration takes a number of samples ≥ 1, got {calibration!r}")
    if tolerance is not None and not (tolerance > 0 and np.isfinite(tolerance)):
        raise EdgediffError(f"--int8-tolerance must be a positive number, got {tolerance!r}")


def _quantize_in_place(path: Path | str, model: LoadedModel, info: ArtifactInfo, num: int,
                       method: str, tolerance: float, target: str) -> Int8Validation:
    """Replace the float32 graph at ``path`` by its calibrated QDQ graph, or refuse."""
    import dataclasses
    import os

    import onnx

    from edgediff.export.quantize import calibration_inputs, quantize, sweep_error

    path = Path(path)
    fp32 = path.with_name(path.name + ".fp32.onnx")
    qdq = path.with_name(path.name + ".int8.onnx")
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
        proto = onnx.load(str(qdq))
        del proto.metadata_props[:]
        for key, value in int8_info.to_props().items():
            proto.metadata_props.add(key=key, value=value)
        proto.producer_name = "edgediff"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(qdq))
        half_range = (info.data_range[1] - info.data_range[0]) / 2
        result = Int8Validation(sweep_error(qdq, fp32, int8_info), tolerance * half_range,
                                len(calls), method)
        e2e = sampling_check(qdq, model.denoiser.float().eval(), int8_info)
        e2e["limit"] = tolerance * half_range
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


def _half_network(model: LoadedModel) -> nn.Module:
    """A copy of the denoiser whose network runs in float16 (precond stays float32)."""
    import copy

    denoiser = copy.deepcopy(model.denoiser).float().eval()
    network = getattr(denoiser, "model", None)
    if network is None or not any(p.is_floating_point() for p in network.parameters()):
        raise EdgediffError("this model has no network weights to run in fp16 (the analytic "
                            "mixture is exact arithmetic); export it without --fp16")
    network.half()
    return denoiser


def sampling_check(path, reference: nn.Module, info: ArtifactInfo, num: int = 16,
                   seed: int = 0) -> dict:
    """Final samples of the artifact's default solver, run by the NumPy runtime on
    ``path``, against the torch reference on the float32 module; same x_T."""
    from edgediff import runtime
    from edgediff.runtime.ort import OrtDenoiser
    from edgediff.samplers.reference import reference_run
    from edgediff.settings import SolverSettings

    settings = SolverSettings.resolve(info, "heun")
    grid = {k: v for k, v in settings.options.items() if k in ("spacing", "rho")}
    sigmas = runtime.sigma_grid(info, settings.steps, **grid).tolist()
    labels = None if not info.num_classes else np.arange(num) % (info.num_classes + 1)
    if labels is not None:  # every class and the null label
        labels[labels == info.num_classes] = info.null_label
    got = runtime.sample(OrtDenoiser(path), num, seed=seed, batch=num, solver="heun",
                         steps=settings.steps, options=settings.options, labels=labels)
    ref = reference_run(reference, info, settings, sigmas, seed, range(num), labels=labels)
    half_range = (info.data_range[1] - info.data_range[0]) / 2
    max_abs = float(np.abs(got - ref).max()) if np.all(np.isfinite(got)) else float("inf")
    return {"solver": "heun", "steps": settings.steps, "num": num, "max_abs": max_abs,
            "rms": float(np.sqrt(np.mean((got - ref) ** 2))),
            "limit": FP16_SAMPLE_TOLERANCE * half_range}


def validate_onnx(path, graph: nn.Module, info: ArtifactInfo, atol: float, rtol: float,
                  batches=VALIDATION_BATCHES) -> Validation:
    """ONNX Runtime (CPU) against the torch module on the validation inputs."""
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
