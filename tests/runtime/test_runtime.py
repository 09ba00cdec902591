"""The runtime on its own: torch-free, guarded, strict about its inputs."""

import subprocess
import sys

import numpy as np
import pytest

from edgediff import runtime
from edgediff.errors import EdgediffError
from edgediff.streams import NoiseStreams, sample_generator

HEAVY = ("torch", "onnx", "tensorrt")


def test_a_full_sampling_run_never_imports_torch_onnx_or_tensorrt(exported):
    """Blocks the heavy modules outright (as on a Jetson without them), samples
    with every solver, then checks sys.modules."""
    _, path = exported["digits"]
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HEAVY!r}:
            raise ModuleNotFoundError(name, name=name)
sys.meta_path.insert(0, Block())
from edgediff import runtime
D = runtime.load({str(path)!r}, threads=1)
for solver in runtime.SOLVERS:
    x = runtime.sample(D, 3, solver=solver, steps=4)
    assert x.shape == (3, 1, 8, 8) and x.std() > 0
print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}), 'onnxruntime' in sys.modules)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[]", "True"]


def test_noise_streams_are_per_sample():
    a = NoiseStreams(5, [0, 1, 2], (4,))
    b = NoiseStreams(5, [2], (4,))
    a0, b0 = a.initial(), b.initial()
    assert np.array_equal(a0[2], b0[0])
    assert np.array_equal(a(0)[2], b(0)[0]) and np.array_equal(a(3)[2], b(3)[0])
    assert np.array_equal(a0[0], sample_generator(5, 0).standard_normal(4))
    assert not np.allclose(a0[0], a0[1])
    with pytest.raises(RuntimeError, match="out of order"):
        a(3)


class Exploding:
    """A denoiser that overflows from step ``at`` on, as an fp16 engine can."""

    def __init__(self, inner, at, value=np.inf):
        self.inner, self.at, self.value, self.calls = inner, at, value, 0
        self.info = inner.info

    def __call__(self, x, sigma):
        out = self.inner(x, sigma).copy()
        self.calls += 1
        if self.calls > self.at:
            out[0, 0, 0, 0] = self.value
        return out


@pytest.mark.parametrize("solver", list(runtime.SOLVERS))
def test_every_solver_runs_on_every_grid(exported, solver):
    """Grids are chosen apart from the solver: each pairing samples, and each grid
    gives a different run."""
    _, path = exported["digits"]
    D = runtime.load(path, threads=1)
    runs = {grid: runtime.sample(D, 2, solver=solver, steps=6, options={"grid": grid})
            for grid in ("default", "rho", "lambda", "time")}
    for grid, x in runs.items():
        assert np.all(np.isfinite(x)) and x.std() > 0.05, grid
    assert np.array_equal(runs["default"], runs["rho"])  # EDM's own grid is the ρ-grid
    assert not np.allclose(runs["rho"], runs["lambda"])
    assert not np.allclose(runs["rho"], runs["time"])


@pytest.mark.parametrize("value", [np.inf, np.nan])
@pytest.mark.parametrize("solver", list(runtime.SOLVERS))
def test_a_non_finite_denoiser_output_stops_sampling_with_step_and_sigma(exported, solver, value):
    _, path = exported["digits"]
    bad = Exploding(runtime.load(path), at=3, value=value)
    with pytest.raises(runtime.NonFiniteOutputError) as e:
        runtime.sample(bad, 2, solver=solver, steps=8)
    msg = str(e.value)
    assert "NaN/Inf" in msg and "step" in msg and "σ =" in msg and "--fp16" in msg
    step = int(msg.split("at step ")[1].split(" ")[0])
    assert 1 <= step <= 3  # the 4th call: step 3, or step 1 for 2-call-per-step solvers


def test_bad_inputs_to_a_backend_get_clear_messages(exported):
    _, path = exported["digits"]
    D = runtime.load(path)
    sigma = np.ones(2, np.float32)
    assert D(np.zeros((2, 1, 8, 8)), sigma).dtype == np.float32  # float64 is cast
    with pytest.raises(EdgediffError, match=r"takes \[batch, 1, 8, 8\]"):
        D(np.zeros((2, 8, 8), np.float32), sigma)
    with pytest.raises(EdgediffError, match="floating-point"):
        D(np.zeros((2, 1, 8, 8), np.int64), sigma)
    with pytest.raises(EdgediffError, match="one σ per sample"):
        D(np.zeros((2, 1, 8, 8), np.float32), np.ones(3))
    out = D(np.zeros((2, 1, 8, 8)), 1.0)  # a scalar σ broadcasts
    assert out.shape == (2, 1, 8, 8)


def test_bad_sampling_requests_get_clear_messages(exported):
    _, path = exported["digits"]
    D = runtime.load(path)
    with pytest.raises(EdgediffError, match="steps must be an integer ≥ 1"):
        runtime.sample(D, 2, steps=0)
    with pytest.raises(EdgediffError, match="choose one of ddpm, euler_maruyama, euler, heun"):
        runtime.sample(D, 2, solver="rk4")
    with pytest.raises(EdgediffError, match="heun takes no option eta"):
        runtime.sample(D, 2, solver="heun", options={"eta": 1.0})
    with pytest.raises(EdgediffError, match=r"the model knows \[0.002, 80\]"):
        runtime.sample(D, 2, run=runtime.RunOptions(sigmas=[160.0, 1.0, 0.0]))
    with pytest.raises(EdgediffError, match=r"the model knows"):
        runtime.sample(D, 2, run=runtime.RunOptions(sigmas=[10.0, 1e-4, 0.0]))
    with pytest.raises(EdgediffError, match="num must be"):
        runtime.sample(D, 0)
    with pytest.raises(EdgediffError, match="spacing applies to discrete"):
        runtime.sample(D, 2, options={"spacing": "trailing"})
    # σ grids at the very ends of the range (float32 round-off included) are fine
    x = runtime.sample(D, 2, run=runtime.RunOptions(sigmas=[80.0 * (1 + 1e-7), 1.0, 0.002, 0.0]))
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing.onnx", "no such file"),
    (lambda p: p, "is a folder"),
    (lambda p: (p / "notes.txt").write_text("hi") and p / "notes.txt", "neither an .onnx"),
    (lambda p: (p / "fake.onnx").write_bytes(b"\x00garbage") and p / "fake.onnx",
     "not an ONNX model ONNX Runtime can load"),
])
def test_loading_something_that_is_not_an_artifact(tmp_path, make, match):
    with pytest.raises(EdgediffError, match=match):
        runtime.load(make(tmp_path))


def test_an_onnx_file_without_edgediff_metadata_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2])
    s = helper.make_tensor_value_info("sigma", TensorProto.FLOAT, ["b"])
    y = helper.make_tensor_value_info("denoised", TensorProto.FLOAT, ["b", 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["denoised"])], "g", [x, s],
                              [y])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(EdgediffError, match="carries no edgediff metadata"):
        runtime.load(path)


def test_unavailable_provider_names_the_gpu_extra(exported):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    _, path = exported["digits"]
    with pytest.raises(EdgediffError, match=r'pip install "edgediff\[gpu\]"'):
        runtime.load(path, provider="cuda")


@pytest.mark.filterwarnings("ignore:Specified provider")  # ONNX Runtime's own, about the fake
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_a_provider_onnxruntime_lists_but_cannot_start_is_an_error(exported, monkeypatch,
                                                                    provider):
    """ONNX Runtime lists a GPU provider whose libraries are missing, then quietly
    runs on the CPU. Here a CPU-only ONNX Runtime is made to list the GPU ones: the
    session falls back just like that, and loading refuses instead of going on."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    monkeypatch.setattr(ort, "get_available_providers", lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    _, path = exported["digits"]
    with pytest.raises(EdgediffError, match=r"could not start it .*running on "
                                            r"CPUExecutionProvider.*--provider cpu"):
        runtime.load(path, provider=provider)


def test_tensorrt_ep_options_name_one_profile_over_the_batch_and_a_cache(tmp_path):
    from edgediff.graph import GraphInput
    from edgediff.runtime.backends.ort import tensorrt_ep_options

    def inputs(*shape):
        return GraphInput("x", "float32", shape), GraphInput("sigma", "float32")

    opts = tensorrt_ep_options(inputs(1, 8, 8), 16, 1, tmp_path)
    assert opts == {"device_id": 1,
                    "trt_profile_min_shapes": "x:1x1x8x8,sigma:1",
                    "trt_profile_opt_shapes": "x:16x1x8x8,sigma:16",
                    "trt_profile_max_shapes": "x:16x1x8x8,sigma:16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(tmp_path)}
    assert tensorrt_ep_options(inputs(2), 4, 0, tmp_path)["trt_profile_max_shapes"] == \
        "x:4x2,sigma:4"


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    from edgediff.runtime.backends.ort import default_cache_dir

    monkeypatch.delenv("EDGEDIFF_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "edgediff" / "ort-tensorrt"
    monkeypatch.setenv("EDGEDIFF_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine" / "ort-tensorrt"


def test_the_tensorrt_provider_session_gets_the_models_profile(exported, monkeypatch,
                                                               tmp_path):
    """What ONNX Runtime is asked for with provider="tensorrt": the sample shape comes
    from the artifact's metadata, read first from a CPU session."""
    import onnxruntime as ort

    _, path = exported["digits"]
    real = ort.InferenceSession
    asked = []

    def recording(file, options=None, providers=None):
        asked.append(providers)
        if providers[0] != "CPUExecutionProvider":
            raise RuntimeError("no GPU here")  # stands in for the GPU session
        return real(file, options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", recording)
    monkeypatch.setenv("EDGEDIFF_CACHE", str(tmp_path / "cache"))
    with pytest.raises(EdgediffError, match=r"could not open .* with TensorrtExecutionProvider: "
                                            r"no GPU here"):
        runtime.load(path, provider="tensorrt", max_batch=32)
    assert asked[0] == ["CPUExecutionProvider"]
    name, opts = asked[1][0]
    assert name == "TensorrtExecutionProvider" and [p[0] for p in asked[1][1:2]] == [
        "CUDAExecutionProvider"]
    assert opts["trt_profile_max_shapes"] == "x:32x1x8x8,sigma:32"
    assert opts["trt_engine_cache_path"] == str(tmp_path / "cache" / "ort-tensorrt")
    assert (tmp_path / "cache" / "ort-tensorrt").is_dir()


def test_a_batch_beyond_the_tensorrt_profile_is_refused_before_onnxruntime(exported):
    _, path = exported["digits"]
    D = runtime.load(path, max_batch=4)
    D.provider = "tensorrt"  # the check, without a GPU session behind it
    assert D.bind(4).x.shape[0] == 4
    with pytest.raises(EdgediffError, match=r"batches up to 4, asked for 5.*--batch"):
        D.bind(5)


def test_metadata_overrides_describe_a_foreign_onnx_file(tmp_path):
    """A graph with the contract's inputs and outputs but no edgediff metadata
    samples once the user supplies it; overrides are checked."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    # D(x, σ) = x / (1 + σ²): the exact denoiser of data N(0, I)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2])
    s = helper.make_tensor_value_info("sigma", TensorProto.FLOAT, ["b"])
    y = helper.make_tensor_value_info("denoised", TensorProto.FLOAT, ["b", 2])
    nodes = [helper.make_node("Mul", ["sigma", "sigma"], ["s2"]),
             helper.make_node("Add", ["s2", "one"], ["v"]),
             helper.make_node("Unsqueeze", ["v", "axis"], ["v2"]),
             helper.make_node("Div", ["x", "v2"], ["denoised"])]
    inits = [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
             helper.make_tensor("axis", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, "g", [x, s], [y], inits)
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    meta = {"parameterization": "edm", "schedule": {"name": "edm", "sigma_min": 0.002,
                                                     "sigma_max": 80.0, "rho": 7.0},
            "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 1.0, "sample_shape": [2],
            "data_range": [-3, 3]}
    D = runtime.load(path, metadata=meta)
    assert D.info.sample_shape == (2,) and D.info.default_solver["solver"] == "heun"
    samples = runtime.sample(D, 500, seed=0)
    # the data are N(0, I): the PF-ODE maps N(0, (1+σ_max²)I) onto them
    assert abs(samples.std() - 1.0) < 0.1
    with pytest.raises(EdgediffError, match="unknown metadata keys \"colour\""):
        runtime.load(path, metadata={**meta, "colour": "blue"})
    with pytest.raises(EdgediffError, match=r"lacks the metadata edgediff\.sample_shape"):
        runtime.load(path, metadata={k: v for k, v in meta.items() if k != "sample_shape"})


def test_the_device_binding_path_computes_the_same_on_cpu_ortvalues(exported):
    """The GPU providers' binding (preallocated OrtValues, update_inplace, bound
    output) run with device 'cpu', so its logic is exercised without a GPU."""
    import onnxruntime as ort

    from edgediff.graph import graph_inputs
    from edgediff.runtime.backends.ort import _Binding

    _, path = exported["digits"]
    D = runtime.load(path)
    binding = _Binding(ort, D.session, 3, graph_inputs(D.info), "cpu", 0, host_arrays=False)
    assert not binding.on_host
    rng = np.random.default_rng(0)
    for _ in range(2):  # buffers are reused across calls
        x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
        s = np.array([0.01, 1.0, 50.0], np.float32)
        binding.x[...], binding.sigma[...] = x, s
        got = binding.run()
        (ref,) = D.session.run(None, {"x": x, "sigma": s})
        assert np.array_equal(got, ref)
    # a whole run through it: the step loops write its host staging buffers
    host = runtime.sample(D, 3, solver="heun", steps=6, run=runtime.RunOptions(batch=3))
    D._bindings[3] = binding
    again = runtime.sample(D, 3, solver="heun", steps=6, run=runtime.RunOptions(batch=3))
    assert np.array_equal(again, host)
