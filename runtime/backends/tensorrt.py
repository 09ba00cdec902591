"""Native TensorRT backend: a ``model.plan`` built by ``edgediff build``.

The plan is loaded only with its sidecar, only if its bytes match the sha256
the sidecar records (engines are code), and only on the TensorRT version and
compute capability that built it — otherwise a "rebuild" message, never a
deserialization crash. Inference is ``execute_async_v3`` on one CUDA stream
with device buffers allocated once per batch size; ``cuda_graph=True``
captures the launch into a CUDA graph and replays it (``LaunchPlan`` says
when). TensorRT 10 Python API and cuda-python, both imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError, missing_extra
from edgediff.graph import OUTPUT, GraphInput, graph_inputs
from edgediff.plan import (
    check_compatible,
    check_plan_bytes,
    profile_batch_range,
    read_sidecar,
)
from edgediff.runtime._call import check_inputs, fill_conditioning
from edgediff.runtime.backends.backend_options import BackendOptions


def _cudart():
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
    except ImportError:
        raise missing_extra("cuda-python", "trt") from None
    return cudart


def _ok(result):
    """Unwrap a cuda-python (err, *values) tuple; raise on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EdgediffError(f"CUDA call failed: {err}")
    return values[0] if len(values) == 1 else values


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of device 0, via cuda-python."""
    err, props = _cudart().cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise EdgediffError(f"no usable CUDA device (cudaGetDeviceProperties: {err})")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}.{props.minor}"


def plan_info(plan: str | Path) -> tuple[ArtifactInfo, dict]:
    """The artifact metadata and the sidecar of a plan, read without a GPU."""
    side = read_sidecar(plan)
    return ArtifactInfo.from_props(side["metadata"], where=str(plan)), side


def runs_here(sidecar: dict, plan: str | Path) -> str:
    """Whether this machine can run the plan, and if not, why — without deserializing it."""
    try:
        import tensorrt as trt
    except ImportError:
        return 'no: TensorRT is not installed (pip install "edgediff[trt]")'
    try:
        _, cc = gpu_identity()
        check_compatible(sidecar, trt.__version__, cc, str(plan))
    except EdgediffError as e:
        return f"no: {e}"
    return "yes"


class LaunchPlan:
    """What each call does: bind a batch size to the context, then run eagerly,
    capture a CUDA graph, or replay it.

    One execution context serves every batch size (an engine's single
    optimization profile belongs to one context at a time). A CUDA graph fixes
    the shapes, tensor addresses and context state it was captured with, so
    binding another batch size drops it. After binding, the first call runs
    eagerly: TensorRT does deferred shape-dependent work on the first enqueue
    after a shape change, which stream capture cannot record. The next call
    captures (and runs the graph), later ones replay it.
    """

    EAGER, CAPTURE, REPLAY = "eager", "capture", "replay"

    def __init__(self, cuda_graph: bool):
        self.cuda_graph = cuda_graph
        self.batch: int | None = None
        self._calls = 0  # calls since the current batch size was bound

    def forget(self) -> None:
        """After a failed call: bind again on the next one."""
        self.batch = None

    def next(self, batch: int) -> tuple[bool, str]:
        """(bind this batch size first, then what to do) for a call on ``batch``."""
        rebind = batch != self.batch
        if rebind:
            self.batch, self._calls = batch, 0
        self._calls += 1
        if not self.cuda_graph or self._calls == 1:
            return rebind, self.EAGER
        return rebind, self.CAPTURE if self._calls == 2 else self.REPLAY


class _Buffers:
    """Device tensors of one batch size: one per graph input (``edgediff.graph``) and
    the output; host staging for the inputs a call may leave out (a conditional
    plan's class labels, a --guidance plan's scales: the ``Bound`` interface of
    ``fill_conditioning``)."""

    def __init__(self, cudart, batch: int, inputs: Sequence[GraphInput]):
        self.shapes = {i.name: i.batch_shape(batch) for i in inputs}
        self.shape = self.shapes["x"]
        self.staged = {i.name: i.buffer(batch) for i in inputs if i.fill is not None}
        self.class_labels = self.staged.get("class_labels")
        self.guidance = self.staged.get("guidance")
        self.nbytes = {i.name: int(np.prod(self.shapes[i.name])) * np.dtype(i.dtype).itemsize
                       for i in inputs}
        self.device = {name: _ok(cudart.cudaMalloc(n)) for name, n in self.nbytes.items()}
        self.out = _ok(cudart.cudaMalloc(self.nbytes["x"]))
        self.host_out = np.empty(self.shape, np.float32)

    def free(self, cudart) -> None:
        for ptr in (*self.device.values(), self.out):
            cudart.cudaFree(ptr)


class TrtDenoiser:
    """D(x, σ) from a TensorRT plan. Use as a context manager, or call ``close()``."""

    def __init__(self, plan: str | Path, *, cuda_graph: bool = False):
        try:
            import tensorrt as trt
        except ImportError:
            raise missing_extra("tensorrt", "trt") from None
        self.path = Path(plan)
        if not self.path.is_file():
            raise EdgediffError(f"no such plan: {self.path}")
        self.info, self.sidecar = plan_info(self.path)
        self.inputs = graph_inputs(self.info)
        _, cc = gpu_identity()
        check_compatible(self.sidecar, trt.__version__, cc, str(self.path))
        engine_bytes = self.path.read_bytes()
        check_plan_bytes(self.sidecar, engine_bytes, str(self.path))
        self._cudart = _cudart()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise EdgediffError(f"TensorRT could not deserialize {self.path}; rebuild it with "
                                f"'edgediff build'")
        self.context = self.engine.create_execution_context()
        self.min_batch, self.max_batch = profile_batch_range(self.sidecar)
        self.stream = _ok(self._cudart.cudaStreamCreate())
        self._plan = LaunchPlan(cuda_graph)
        self._graph = None  # the instantiated graph of the bound batch size
        self._buffers: dict[int, _Buffers] = {}

    def _bind(self, batch: int) -> _Buffers:
        """Point the context at this batch size's buffers (dropping any graph)."""
        buf = self._buffers.get(batch)
        if buf is None:
            buf = self._buffers[batch] = _Buffers(self._cudart, batch, self.inputs)
        self._drop_graph()
        for name, shape in buf.shapes.items():
            self.context.set_input_shape(name, shape)
        for name, ptr in (*buf.device.items(), (OUTPUT, buf.out)):
            self.context.set_tensor_address(name, int(ptr))
        return buf

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(int(self.stream)):
            raise EdgediffError(f"TensorRT failed to run {self.path}")

    def _capture(self) -> None:
        cudart, stream = self._cudart, self.stream
        _ok(cudart.cudaStreamBeginCapture(
            stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        try:
            self._enqueue()
        finally:  # always leave capture mode, or the stream stays unusable
            graph = _ok(cudart.cudaStreamEndCapture(stream))
        try:
            self._graph = _ok(cudart.cudaGraphInstantiate(graph, 0))
        finally:
            cudart.cudaGraphDestroy(graph)

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._cudart.cudaGraphExecDestroy(self._graph)
            self._graph = None

    def __call__(self, x: np.ndarray, sigma: np.ndarray, class_labels=None, guidance=None
                 ) -> np.ndarray:
        """D(x; σ) (a conditional plan: given ``class_labels``, default the null
        label; a --guidance plan: at scale ``guidance``, default 1)."""
        x, sigma = check_inputs(self.info, x, sigma)
        x, sigma = np.ascontiguousarray(x), np.ascontiguousarray(sigma)
        batch = x.shape[0]
        if not self.min_batch <= batch <= self.max_batch:
            raise EdgediffError(f"{self.path} was built for batch {self.min_batch}…"
                                f"{self.max_batch}, asked for {batch}: sample with --batch "
                                f"≤ {self.max_batch}, or rebuild with --max-batch {batch}")
        rebind, action = self._plan.next(batch)
        cudart, stream = self._cudart, self.stream
        try:
            buf = self._bind(batch) if rebind else self._buffers[batch]
            if buf.staged:
                fill_conditioning(self.info, buf, class_labels, guidance)
            h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            for name, host in {"x": x, "sigma": sigma, **buf.staged}.items():
                _ok(cudart.cudaMemcpyAsync(buf.device[name], host.ctypes.data, buf.nbytes[name],
                                           h2d, stream))
            if action == LaunchPlan.EAGER:
                self._enqueue()
            else:
                if action == LaunchPlan.CAPTURE:
                    self._capture()
                _ok(cudart.cudaGraphLaunch(self._graph, stream))
        except BaseException:
            self._plan.forget()  # the next call binds afresh and runs eagerly
            raise
        _ok(cudart.cudaMemcpyAsync(buf.host_out.ctypes.data, buf.out, buf.nbytes["x"],
                                   cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
        _ok(cudart.cudaStreamSynchronize(stream))
        return buf.host_out

    def close(self) -> None:
        self._drop_graph()
        for buf in self._buffers.values():
            buf.free(self._cudart)
        self._buffers.clear()
        if self.stream is not None:
            self._cudart.cudaStreamDestroy(self.stream)
            self.stream = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_artifact(path: Path, options: BackendOptions) -> TrtDenoiser:
    """The registry's entry (``edgediff.runtime.backends``): a plan's metadata is
    its sidecar's, so ``options.metadata`` is refused."""
    if options.metadata:
        raise EdgediffError("a plan's metadata is its sidecar's; --metadata is for ONNX files")
    return TrtDenoiser(path, cuda_graph=options.cuda_graph)
