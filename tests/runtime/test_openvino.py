"""The OpenVINO backend: the precision/device decision as a pure function, every
branch; the options and registry that select it; and, with OpenVINO installed,
its f32 runs against ONNX Runtime's on the bundled models.

Parity bound. OpenVINO at f32 and ONNX Runtime run one graph with different
float32 kernels, which is exactly the case ``edgediff.tolerance`` argues: per
call the two D's differ by ≤ ULPS_PER_CALL·eps32·m (m: the call's largest |x̂|,
|D| or data-range magnitude), and a solver carries each call's difference to the
final sample with at most its ``error_gain``, so the samples differ per element
by ≤ error_gain·4·eps32·Σ_calls m (``TrajectoryScale.bound()``, read off the
run's own trajectory). Guidance mixes two calls as w·D_c + (1 − w)·D_u, which
scales each call's difference by |w| + |1 − w| (``guidance_gain``). Noise is the
same on both sides (one seed, per-sample streams), so it cancels exactly.
"""

import numpy as np
import pytest

from edgediff import runtime
from edgediff.catalogue import CATALOGUE
from edgediff.conditioning import guidance_gain
from edgediff.errors import EdgediffError
from edgediff.hardware import has_bf16
from edgediff.runtime.backends import BackendOptions, engine_for
from edgediff.runtime.backends.openvino import check_device, inference_precision
from edgediff.runtime.guidance import guided_denoiser
from edgediff.settings import SolverSettings
from edgediff.streams import NoiseStreams
from edgediff.tolerance import TrajectoryScale

AVX2 = frozenset({"avx2", "fma"})
SPR = AVX2 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_fp16", "avx512_fp16"}
CPU_CAPS = ["FP32", "BF16", "FP16", "INT8"]


# --- the decision: pure, every branch -----------------------------------------------------

@pytest.mark.parametrize("device,precision,flags,caps,want", [
    ("CPU", None, AVX2, ["FP32", "INT8"], "f32"),  # the default is f32, never OpenVINO's bf16
    ("CPU", None, SPR, CPU_CAPS, "f32"),
    ("CPU", "f32", AVX2, ["FP32"], "f32"),
    ("CPU", "bf16", AVX2 | {"avx512_bf16"}, CPU_CAPS, "bf16"),
    ("CPU", "bf16", AVX2 | {"amx_bf16"}, CPU_CAPS, "bf16"),
    ("CPU", "bf16", frozenset({"bf16"}), CPU_CAPS, "bf16"),  # ARM's BF16
    ("CPU", "bf16", AVX2 | {"avx512_bf16"}, None, "bf16"),  # capabilities unknown: unchecked
    ("CPU", "f16", AVX2 | {"avx512_fp16"}, CPU_CAPS, "f16"),
    ("CPU", "f16", AVX2 | {"amx_fp16"}, CPU_CAPS, "f16"),
    ("GPU", "f16", frozenset(), ["FP32", "FP16"], "f16"),  # off the CPU, flags don't matter
    ("GPU.1", None, frozenset(), ["FP32", "FP16"], "f32"),
    ("NPU", None, frozenset(), ["FP16", "INT8"], "f16"),  # no f32 units: its own precision
])
def test_the_precision_each_device_compiles_at(device, precision, flags, caps, want):
    assert inference_precision(device, precision, flags, caps) == want


@pytest.mark.parametrize("device,precision,flags,caps,says", [
    ("CPU", "bf16", AVX2, CPU_CAPS,
     r"--precision bf16 on CPU: this CPU has no bf16 units \(it needs one of avx512_bf16, "
     r"amx_bf16, bf16 among its flags\); use --precision f32$"),
    ("CPU", "f16", AVX2 | {"avx512_bf16"}, CPU_CAPS,
     "this CPU has no f16 units .*; use --precision f32 or bf16"),
    ("CPU", "bf16", AVX2 | {"avx512_bf16"}, ["FP32", "INT8"],
     "OpenVINO's CPU plugin does not offer bf16 \\(its capabilities: FP32, INT8\\); "
     "use --precision f32"),
    ("GPU", "bf16", frozenset(), ["FP32", "FP16"],
     "GPU plugin does not offer bf16 .*; use --precision f32 or f16"),
    ("NPU", "f32", frozenset(), ["FP16"], "NPU plugin does not offer f32 .*; use --precision f16"),
    ("NPU", None, frozenset(), ["INT8"], "NPU offers neither f32 nor f16"),
    ("NPU", "f16", frozenset(), ["INT8"], "does not offer f16 .*; use another --device"),
])
def test_a_precision_the_hardware_lacks_is_a_clear_error(device, precision, flags, caps, says):
    with pytest.raises(EdgediffError, match=says):
        inference_precision(device, precision, flags, caps)


def test_only_listed_devices_are_accepted():
    check_device("CPU", ["CPU"])
    check_device("GPU", ["CPU", "GPU.0", "GPU.1"])  # GPU: the first of them
    check_device("GPU.1", ["CPU", "GPU.0", "GPU.1"])
    with pytest.raises(EdgediffError, match=r"OpenVINO finds no GPU.2 device here \(it has "
                                            r"CPU, GPU.0, GPU.1\); pick one"):
        check_device("GPU.2", ["CPU", "GPU.0", "GPU.1"])
    with pytest.raises(EdgediffError, match=r"no NPU device .*install the NPU driver"):
        check_device("NPU", ["CPU"])


# --- options and registry --------------------------------------------------------------------

@pytest.mark.parametrize("kw,says", [
    ({"engine": "tvm"}, "unknown backend 'tvm'; choose one of onnxruntime, openvino"),
    ({"engine": "openvino", "precision": "fp8"}, "unknown precision 'fp8'; choose one of f32"),
    ({"engine": "openvino", "device": "TPU"}, "unknown device 'TPU'; choose one of CPU, GPU"),
    ({"precision": "bf16"}, "ONNX Runtime runs the graph at its exported precision; for "
                            "--precision bf16 use --backend openvino"),
    ({"device": "GPU"}, "--device GPU is OpenVINO's; ONNX Runtime picks its hardware by "
                        "--provider"),
    ({"engine": "openvino", "provider": "cuda"}, "--provider cuda is ONNX Runtime's"),
])
def test_engine_options_are_checked_when_made(kw, says):
    with pytest.raises(EdgediffError, match=says):
        BackendOptions(**kw)


def test_the_registry_picks_openvino_only_when_asked(tmp_path):
    from pathlib import Path

    from edgediff.cli import _sampling
    from edgediff.runtime.backends import backend_options

    assert engine_for(Path("m.onnx")).module == "ort"
    assert engine_for(Path("m.onnx"), "openvino").module == "openvino"
    assert engine_for(Path("m.plan")).module == "tensorrt"
    with pytest.raises(EdgediffError, match=r"a TensorRT \.plan, which --backend openvino "
                                            r"does not run"):
        engine_for(Path("m.plan"), "openvino")
    # the CLI's copies (it must not import the runtime for --help)
    assert _sampling.ONNX_ENGINES == backend_options.ONNX_ENGINES
    assert _sampling.PRECISIONS == backend_options.PRECISIONS


# --- with OpenVINO: f32 against ONNX Runtime --------------------------------------------------

# one solver of each family, with enough steps to exercise its loop
FAMILIES = {
    "ode": ("heun", 10, {}),
    "multistep": ("ipndm", 12, {"order": 4}),  # the largest error_gain (Σ|AB weights| ≈ 6.7)
    "stochastic": ("edm", 12, {"S_churn": 20.0, "S_tmin": 0.05, "S_tmax": 20.0}),
    "ancestral": ("euler_ancestral", 16, {"eta": 1.0}),
    "ddpm": ("ddpm", 20, {"variance": "large"}),
}
SEED, BATCH, W = 7, 6, 2.5


@pytest.fixture(scope="module")
def engines(exported):
    """name -> (ONNX Runtime, OpenVINO f32) on the bundled digits model and the mixture."""
    pytest.importorskip("openvino", reason='OpenVINO is not installed: '
                                           'pip install "edgediff[openvino]"')
    return {name: (runtime.load(path, threads=2),
                   runtime.load(path, threads=2, engine="openvino", precision="f32"))
            for name, (_, path) in exported.items()}


def _run(D, solver, steps, options, labels=None, w=None, guide=None, callback=None):
    settings = SolverSettings(solver, steps, options)
    sigmas = runtime.sigma_grid(D.info, steps).tolist()
    if labels is not None:
        D = guided_denoiser(D, labels, w, guide)
    return runtime.sample_batch(D, settings, sigmas,
                                NoiseStreams(SEED, range(BATCH), D.info.sample_shape),
                                callback=callback)


@pytest.mark.extra("openvino")
@pytest.mark.parametrize("name", ["digits", "mixture"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_openvino_f32_matches_onnx_runtime(engines, name, family):
    ort_D, ov_D = engines[name]
    assert ov_D.precision == "f32"
    solver, steps, options = FAMILIES[family]
    scale = TrajectoryScale.for_solver(CATALOGUE[solver], ort_D.info.data_range)
    ref = _run(ort_D, solver, steps, options, callback=scale)
    got = _run(ov_D, solver, steps, options)
    err, bound = np.abs(got - ref).max(), scale.bound()
    print(f"{name} {solver}: max abs diff {err:.2e}, bound {bound:.2e}")
    assert np.all(np.isfinite(got)) and got.std() > 0.1  # real samples, not a collapse
    assert err <= bound


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    """The class-conditional mixture as a plain graph, a --guidance graph and a blurrier
    guide; each as (ONNX Runtime, OpenVINO f32)."""
    pytest.importorskip("openvino", reason='pip install "edgediff[openvino]"')
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.mixture import GaussianMixture, default_mixture_2d
    from edgediff.models.analytic import mixture_model

    folder = tmp_path_factory.mktemp("ov-conditional")
    m = default_mixture_2d()
    models = {"plain": (mixture_model(conditional=True), False),
              "cfg": (mixture_model(conditional=True), True),
              "guide": (mixture_model(GaussianMixture(m.weights, m.means, m.stds * 1.6), True),
                        False)}
    out = {}
    for tag, (model, guided) in models.items():
        path = folder / f"{tag}.onnx"
        export_onnx(model, path, ExportOptions(validate=False, guidance=guided),
                    source_sha256="0" * 64)
        out[tag] = (runtime.load(path), runtime.load(path, engine="openvino"))
    return out


@pytest.mark.extra("openvino")
@pytest.mark.parametrize("form", ["cfg-two-passes", "cfg-one-launch", "autoguidance"])
@pytest.mark.parametrize("solver", ["heun", "ddpm"])
def test_guided_openvino_matches_onnx_runtime(conditional, form, solver):
    graph = "cfg" if form == "cfg-one-launch" else "plain"
    steps, options = {"heun": (8, {}), "ddpm": (30, {})}[solver]
    runs = []
    for k in range(2):  # 0: ONNX Runtime, 1: OpenVINO
        D = conditional[graph][k]
        guide = conditional["guide"][k] if form == "autoguidance" else None
        labels = np.array([0, 1, 2, D.info.null_label, 1, 0], np.int64)
        scale = TrajectoryScale.for_solver(CATALOGUE[solver], D.info.data_range)
        runs.append((_run(D, solver, steps, options, labels, W, guide, scale), scale))
    (ref, scale), (got, _) = runs
    err, bound = np.abs(got - ref).max(), guidance_gain(W) * scale.bound()
    print(f"{form} {solver}: max abs diff {err:.2e}, bound {bound:.2e}")
    assert np.all(np.isfinite(got)) and err <= bound


@pytest.mark.extra("openvino")
def test_the_parity_bound_has_teeth(engines):
    """A different seed on one side lands outside the bound."""
    ort_D, ov_D = engines["mixture"]
    scale = TrajectoryScale(1, ort_D.info.data_range)
    ref = _run(ort_D, "ddpm", 20, {}, callback=scale)
    settings = SolverSettings("ddpm", 20, {})
    other = runtime.sample_batch(ov_D, settings, runtime.sigma_grid(ov_D.info, 20).tolist(),
                                 NoiseStreams(SEED + 1, range(BATCH), ov_D.info.sample_shape))
    assert np.abs(other - ref).max() > scale.bound()


@pytest.mark.extra("openvino")
def test_openvino_feeds_labels_and_scales_like_onnx_runtime(conditional):
    """One call, every input: labels (incl. the null id) and a per-sample guidance scale."""
    ort_D, ov_D = conditional["cfg"]
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32) * 3
    sigma = np.array([0.1, 1.0, 3.0, 10.0], np.float32)
    kw = {"class_labels": [0, 2, ort_D.info.null_label, 1], "guidance": [1.0, 2.5, 0.0, 4.0]}
    want = ort_D(x, sigma, **kw).copy()
    got = ov_D(x, sigma, **kw).copy()  # the backend reuses its output buffer
    m = max(np.abs(x).max(), np.abs(want).max(), 1.0)  # point 1 of edgediff.tolerance, ×|w|+|1−w|
    assert np.abs(got - want).max() <= guidance_gain(4.0) * 4 * np.finfo(np.float32).eps * m
    assert np.abs(got - ov_D(x, sigma)).max() > 1e-3  # the inputs are fed, not ignored


@pytest.mark.extra("openvino")
def test_bf16_is_refused_on_a_cpu_without_bf16_units(exported):
    _, path = exported["digits"]
    if has_bf16():
        D = runtime.load(path, engine="openvino", precision="bf16")
        assert D.precision == "bf16"
        assert str(D.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
    else:
        with pytest.raises(EdgediffError, match="--precision bf16 on CPU: this CPU has no "
                                                "bf16 units"):
            runtime.load(path, engine="openvino", precision="bf16")


@pytest.mark.extra("openvino")
def test_f32_is_really_f32_and_an_absent_device_is_refused(exported, engines):
    _, path = exported["digits"]
    D = engines["digits"][1]
    assert str(D.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    with pytest.raises(EdgediffError, match=r"OpenVINO finds no GPU\.9 device here"):
        runtime.load(path, engine="openvino", device="GPU.9")


@pytest.mark.extra("openvino")
def test_openvino_runs_an_int8_qdq_graph_in_integer_kernels_within_the_int8_gate(exported,
                                                                                   tmp_path):
    """The QDQ graph edgediff's int8 export writes (here calibrated on a few calls of
    noise, for speed) runs on OpenVINO with its convolutions in 8-bit kernels, and
    stays within the export's own int8 gate: RMS of int8 − fp32 ≤ INT8_TOLERANCE ×
    the data's half range at each σ of a sweep (export/quantize.py)."""
    from edgediff.export.quantize import INT8_TOLERANCE, calibration_inputs, quantize

    _, fp32 = exported["digits"]
    f32 = runtime.load(fp32, threads=2)
    info, qdq = f32.info, tmp_path / "digits-int8.onnx"
    quantize(fp32, qdq, calibration_inputs(fp32, info, 1, method="noise")[:4])
    D = runtime.load(qdq, threads=2, engine="openvino")
    ops = D.compiled.get_runtime_model().get_ordered_ops()
    convs = [op.get_rt_info()["runtimePrecision"].astype(str) for op in ops
             if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
    assert sum(p in ("u8", "i8") for p in convs) >= len(convs) // 2 > 0
    limit = INT8_TOLERANCE * (info.data_range[1] - info.data_range[0]) / 2
    rng = np.random.default_rng(0)
    for sigma in np.geomspace(info.sigma_min, info.sigma_max, 4):
        x = (rng.standard_normal((8, *info.sample_shape)) * info.sigma_data
             + sigma * rng.standard_normal((8, *info.sample_shape))).astype(np.float32)
        s = np.full(8, sigma, np.float32)
        rms = np.sqrt(np.mean((D(x, s).astype(np.float64) - f32(x, s)) ** 2))
        assert rms <= limit, f"σ = {sigma:.3g}: RMS {rms:.3g} > {limit}"


# every solver of the catalogue on the mixture (the families above also run the digits
# U-Net); step counts and options as tests/runtime/test_parity.py takes them
EVERY = {"ddpm": 30, "euler_maruyama": 30, "euler": 12, "heun": 8, "edm": 10, "ddim": 12,
         "dpmpp_2m": 8, "euler_ancestral": 12, "dpmpp_2m_sde": 12, "dpmpp_3m": 12,
         "ipndm": 12, "deis": 12, "unipc": 12, "cm": 4, "lcm": 4}
EVERY_OPTIONS = {"edm": {"S_churn": 20.0, "S_tmin": 0.05, "S_tmax": 20.0},
                 "ddim": {"eta": 0.5}}


def test_every_solver_is_run_on_openvino():
    assert set(EVERY) == set(CATALOGUE)


@pytest.mark.extra("openvino")
@pytest.mark.parametrize("solver", sorted(EVERY))
def test_every_solver_runs_on_openvino_as_on_onnx_runtime(engines, solver):
    ort_D, ov_D = engines["mixture"]
    options = EVERY_OPTIONS.get(solver, {})
    scale = TrajectoryScale.for_solver(CATALOGUE[solver], ort_D.info.data_range)
    ref = _run(ort_D, solver, EVERY[solver], options, callback=scale)
    got = _run(ov_D, solver, EVERY[solver], options)
    assert np.all(np.isfinite(got)) and np.abs(got - ref).max() <= scale.bound()
