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

from pathlib import Path

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError, missing_extra
from edgediff.plan import (
    check_compatible,
    check_plan_bytes,
    profile_batch_range,
    read_sidecar,
)
from edgediff.runtime._call import check_inputs, fill_conditioning


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
    """Device tensors of one batch size: x, σ, a conditional plan's class labels
    (int64) and a --guidance plan's scales, and the output."""

    def __init__(self, cudart, batch: int, sample_shape: tuple[int, ...], info):
        self.shape = (batch, *sample_shape)
        self.x_bytes = int(np.prod(self.shape)) * 4
        self.sigma_bytes = batch * 4
        self.x = _ok(cudart.cudaMalloc(self.x_bytes))
        self.sigma = _ok(cudart.cudaMalloc(self.sigma_bytes))
        self.out = _ok(cudart.cudaMalloc(self.x_bytes))
        self.host_out = np.empty(self.shape, np.float32)
        # host staging for the conditioning inputs (the Bound interface: fill_conditioning)
        self.class_labels = (np.full(batch, info.null_label, np.int64)
                             if info.num_classes else None)
        self.guidance = np.ones(batch, np.float32) if info.guidance_input else None
        self.extra = {name: (host, _ok(cudart.cudaMalloc(host.nbytes)))
                      for name, host in (("class_labels", self.class_labels),
                                         ("guidance", self.guidance)) if host is not None}

    def free(self, cudart) -> None:
        for ptr in (self.x, self.sigma, self.out, *(p for _, p in self.extra.values())):
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
            buf = self._buffers[batch] = _Buffers(self._cudart, batch, self.info.sample_shape,
                                                  self.info)
        self._drop_graph()
        self.context.set_input_shape("x", buf.shape)
        for name in ("sigma", *buf.extra):
            self.context.set_input_shape(name, (batch,))
        for name, ptr in (("x", buf.x), ("sigma", buf.sigma), ("denoised", buf.out),
                          *((n, p) for n, (_, p) in buf.extra.items())):
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
            h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            _ok(cudart.cudaMemcpyAsync(buf.x, x.ctypes.data, buf.x_bytes, h2d, stream))
            _ok(cudart.cudaMemcpyAsync(buf.sigma, sigma.ctypes.data, buf.sigma_bytes, h2d,
                                       stream))
            if buf.extra:
                fill_conditioning(self.info, buf, class_labels, guidance)
                for host, ptr in buf.extra.values():
                    _ok(cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, h2d, stream))
            if action == LaunchPlan.EAGER:
                self._enqueue()
            else:
                if action == LaunchPlan.CAPTURE:
                    self._capture()
                _ok(cudart.cudaGraphLaunch(self._graph, stream))
        except BaseException:
            self._plan.forget()  # the next call binds afresh and runs eagerly
            raise
        _ok(cudart.cudaMemcpyAsync(buf.host_out.ctypes.data, buf.out, buf.x_bytes,
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

