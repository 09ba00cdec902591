"""The TensorRT backend's checks run before any deserialization — tested here
with TensorRT itself stood in by a module whose Runtime must never be reached.
(The engine run itself needs TensorRT and a GPU: tests/export/test_tensorrt.py.)"""

import sys
import types

import numpy as np
import pytest

from edgediff.errors import EdgediffError
from edgediff.export.tensorrt import BuildSettings, make_sidecar, write_plan

ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def plan(tmp_path, exported):
    _, onnx_path = exported["mixture"]
    meta = ort.InferenceSession(str(onnx_path)).get_modelmeta().custom_metadata_map
    side = make_sidecar(onnx_path, meta, BuildSettings(max_batch=8), "10.3.0", "NVIDIA H100",
                        "9.0")
    path = tmp_path / "m.plan"
    write_plan(path, b"serialized engine", side)
    return path


@pytest.fixture
def fake_trt(monkeypatch):
    def never(*_a, **_k):
        raise AssertionError("deserialization must not be reached")

    module = types.SimpleNamespace(__version__="10.3.0", Runtime=never,
                                   Logger=types.SimpleNamespace(WARNING=0))
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    import edgediff.runtime.backends.tensorrt as backend

    monkeypatch.setattr(backend, "gpu_identity", lambda: ("NVIDIA H100", "9.0"))
    return module, backend


def test_a_plan_from_another_tensorrt_version_asks_for_a_rebuild(plan, fake_trt):
    module, backend = fake_trt
    module.__version__ = "10.7.0"
    with pytest.raises(EdgediffError, match=r"TensorRT 10\.3\.0 built it.*Rebuild it"):
        backend.TrtDenoiser(plan)


def test_a_plan_for_another_gpu_asks_for_a_rebuild(plan, fake_trt, monkeypatch):
    _, backend = fake_trt
    monkeypatch.setattr(backend, "gpu_identity", lambda: ("NVIDIA Jetson AGX Orin", "8.7"))
    with pytest.raises(EdgediffError, match=r"compute capability 9\.0 .* this GPU is 8\.7"):
        backend.TrtDenoiser(plan)


def test_an_altered_plan_is_refused(plan, fake_trt):
    _, backend = fake_trt
    plan.write_bytes(b"serialized engine, patched")
    with pytest.raises(EdgediffError, match="altered or swapped"):
        backend.TrtDenoiser(plan)


def test_a_plan_without_sidecar_is_refused(plan, fake_trt):
    _, backend = fake_trt
    plan.with_name("m.plan.json").unlink()
    with pytest.raises(EdgediffError, match="no sidecar"):
        backend.TrtDenoiser(plan)


def test_plan_info_reads_the_metadata_without_a_gpu(plan):
    from edgediff.runtime.backends.tensorrt import plan_info

    info, side = plan_info(plan)
    assert info.sample_shape == (2,) and side["profiles"][0]["x"][2] == [8, 2]


def test_launch_plan_runs_eagerly_after_binding_then_captures_then_replays():
    from edgediff.runtime.backends.tensorrt import LaunchPlan

    plan = LaunchPlan(cuda_graph=True)
    got = [plan.next(b) for b in (16, 16, 16, 16, 4, 4, 4, 16)]
    assert got == [(True, "eager"), (False, "capture"), (False, "replay"), (False, "replay"),
                   (True, "eager"), (False, "capture"), (False, "replay"), (True, "eager")]
    plan.forget()  # a failed call: bind again and run eagerly
    assert plan.next(16) == (True, "eager")
    plain = LaunchPlan(cuda_graph=False)
    assert [plain.next(b) for b in (2, 2, 2, 5)] == [(True, "eager"), (False, "eager"),
                                                     (False, "eager"), (True, "eager")]


class FakeCuda:
    """cuda-python's runtime calls with CUDA's semantics, on host memory: work
    enqueued while a stream is capturing is recorded, not run, and a graph
    replays it with the shapes and addresses it was captured with."""

    def __init__(self):
        self.cudaMemcpyKind = types.SimpleNamespace(  # cuda-python's names
            cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
        self.cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)
        self.memory, self.graphs, self.capturing = {}, {}, None
        self.counts = {"eager": 0, "captured": 0, "replayed": 0}
        self._next = 0x1000

    def _handle(self):
        self._next += 0x1000
        return self._next

    def cudaMalloc(self, n):
        ptr = self._handle()
        self.memory[ptr] = np.zeros(n, np.uint8)
        return 0, ptr

    def cudaFree(self, ptr):
        del self.memory[ptr]
        return (0,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        import ctypes

        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            ctypes.memmove(self.memory[dst].ctypes.data, src, n)
        else:
            ctypes.memmove(dst, self.memory[src].ctypes.data, n)
        return (0,)

    def cudaStreamCreate(self):
        return 0, self._handle()

    def cudaStreamDestroy(self, stream):
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing = []
        return (0,)

    def cudaStreamEndCapture(self, stream):
        ops, self.capturing = self.capturing, None
        graph = self._handle()
        self.graphs[graph] = ops
        return 0, graph

    def cudaGraphInstantiate(self, graph, flags):
        exe = self._handle()
        self.graphs[exe] = list(self.graphs[graph])
        return 0, exe

    def cudaGraphDestroy(self, graph):
        del self.graphs[graph]
        return (0,)

    def cudaGraphExecDestroy(self, exe):
        return self.cudaGraphDestroy(exe)

    def cudaGraphLaunch(self, exe, stream):
        for op in self.graphs[exe]:
            self.counts["replayed"] += 1
            self.run(*op)
        return (0,)

    def run(self, shapes, addresses):
        """The fake engine: denoised = 2·x + σ (+ 10·label + 100·guidance when the
        plan takes them)."""
        b, dim = shapes["x"]
        x = self.memory[addresses["x"]].view(np.float32)[: b * dim].reshape(b, dim)
        sigma = self.memory[addresses["sigma"]].view(np.float32)[:b]
        out = 2 * x + sigma[:, None]
        if "class_labels" in addresses:
            assert shapes["class_labels"] == (b,) and shapes["guidance"] == (b,)
            labels = self.memory[addresses["class_labels"]].view(np.int64)[:b]
            w = self.memory[addresses["guidance"]].view(np.float32)[:b]
            out = out + 10 * labels[:, None] + 100 * w[:, None]
        self.memory[addresses["denoised"]].view(np.float32)[: b * dim] = out.ravel()


class FakeContext:
    def __init__(self, cuda):
        self.cuda, self.shapes, self.addresses = cuda, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        op = (dict(self.shapes), dict(self.addresses))
        if self.cuda.capturing is not None:
            self.cuda.counts["captured"] += 1
            self.cuda.capturing.append(op)
        else:
            self.cuda.counts["eager"] += 1
            self.cuda.run(*op)
        return True


def fake_engine(fake_trt, monkeypatch):
    module, backend = fake_trt
    cuda = FakeCuda()
    engine = types.SimpleNamespace(create_execution_context=lambda: FakeContext(cuda))

    class Logger:
        WARNING = 0

        def __init__(self, level):
            pass

    module.Logger = Logger
    module.Runtime = lambda logger: types.SimpleNamespace(
        deserialize_cuda_engine=lambda data: engine)
    monkeypatch.setattr(backend, "_cudart", lambda: cuda)
    return backend, cuda


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_the_backend_follows_the_launch_plan_across_batch_sizes(plan, fake_trt, monkeypatch,
                                                                cuda_graph):
    """Every call returns this call's result — never a stale graph's — while batch
    sizes change, and closing frees every buffer and graph."""
    backend, cuda = fake_engine(fake_trt, monkeypatch)
    rng = np.random.default_rng(0)
    batches = (8, 8, 8, 8, 3, 3, 3, 8, 8)
    with backend.TrtDenoiser(plan, cuda_graph=cuda_graph) as D:
        for b in batches:
            x = rng.standard_normal((b, 2)).astype(np.float32)
            sigma = rng.uniform(0.1, 10, b).astype(np.float32)
            np.testing.assert_array_equal(D(x, sigma), 2 * x + sigma[:, None])
        with pytest.raises(EdgediffError, match="built for batch 1…8"):
            D(np.zeros((9, 2), np.float32), np.ones(9, np.float32))
    if cuda_graph:  # eager after each of 3 bindings, one capture each, replays the rest
        assert cuda.counts == {"eager": 3, "captured": 3, "replayed": len(batches) - 3}
    else:
        assert cuda.counts == {"eager": len(batches), "captured": 0, "replayed": 0}
    assert cuda.memory == {} and cuda.graphs == {}


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_a_guidance_plan_takes_labels_and_scales_on_every_call(tmp_path, fake_trt,
                                                               monkeypatch, cuda_graph):
    """A --guidance plan's class labels and scales are copied in before every launch,
    graph replays included; unset, they are the null label and 1."""
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.analytic import mixture_model

    onnx_path = tmp_path / "cfg.onnx"
    export_onnx(mixture_model(conditional=True), onnx_path, source_sha256="0" * 64,
                options=ExportOptions(validate=False, guidance=True))
    meta = ort.InferenceSession(str(onnx_path)).get_modelmeta().custom_metadata_map
    side = make_sidecar(onnx_path, meta, BuildSettings(max_batch=8), "10.3.0", "NVIDIA H100",
                        "9.0")
    per_sample = [[1], [1], [8]]  # batch min, opt, max
    assert side["profiles"][0] == {"x": [[1, 2], [1, 2], [8, 2]], "sigma": per_sample,
                                   "class_labels": per_sample, "guidance": per_sample}
    path = tmp_path / "cfg.plan"
    write_plan(path, b"serialized engine", side)
    backend, cuda = fake_engine(fake_trt, monkeypatch)
    rng = np.random.default_rng(1)
    with backend.TrtDenoiser(path, cuda_graph=cuda_graph) as D:
        for b in (4, 4, 4, 2, 2, 2):
            x = rng.standard_normal((b, 2)).astype(np.float32)
            sigma = rng.uniform(0.1, 10, b).astype(np.float32)
            labels, w = rng.integers(0, 4, b), rng.uniform(0, 4, b).astype(np.float32)
            np.testing.assert_allclose(D(x, sigma, labels, w),
                                       2 * x + sigma[:, None] + 10 * labels[:, None]
                                       + 100 * w[:, None], rtol=1e-6)
            np.testing.assert_allclose(D(x, sigma), 2 * x + sigma[:, None] + 30 + 100,
                                       rtol=1e-6)  # null label 3, scale 1
        with pytest.raises(EdgediffError, match="class label 7 is out of range"):
            D(x, sigma, np.full(b, 7))
    assert cuda.memory == {}
