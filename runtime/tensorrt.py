"""Native TensorRT backend: a ``model.plan`` built by ``edgediff build``.

The plan is loaded only with its sidecar, only if its bytes match the sha256
the sidecar records (engines are code), and only on the TensorRT version and
compute capability that built it — otherwise a "rebuild" message, never a
deserialization crash. Inference is ``execute_async_v3`` on one CUDA stream
with device buffers allocated once per batch size; ``cuda_graph=True``
captures each batch size's launch into a CUDA graph on first use and replays
it (static shapes per graph, as CUDA graphs need). TensorRT 10 Python API and
cuda-python, both imported lazily.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError, missing_extra
from edgediff.export.tensorrt import (
    check_compatible,
    check_plan_bytes,
    gpu_identity,
    profile_batch_range,
    read_sidecar,
)
from edgediff.runtime._call import check_inputs


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


def plan_info(plan: str | Path) -> tuple[ArtifactInfo, dict]:
    """The artifact metadata and the sidecar of a plan, read without a GPU."""
    side = read_sidecar(plan)
    return ArtifactInfo.from_props(side["metadata"], where=str(plan)), side


class _Buffers:
    """Device tensors of one batch size, bound to the context once."""

    def __init__(self, cudart, batch: int, sample_shape: tuple[int, ...]):
        self.shape = (batch, *sample_shape)
        self.x_bytes = int(np.prod(self.shape)) * 4
        self.sigma_bytes = batch * 4
        self.x = _ok(cudart.cudaMalloc(self.x_bytes))
        self.sigma = _ok(cudart.cudaMalloc(self.sigma_bytes))
        self.out = _ok(cudart.cudaMalloc(self.x_bytes))
        self.host_out = np.empty(self.shape, np.float32)
        self.graph = None

    def free(self, cudart) -> None:
        if self.graph is not None:
            cudart.cudaGraphExecDestroy(self.graph)
        for ptr in (self.x, self.sigma, self.out):
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
        self.cuda_graph = cuda_graph
        self._buffers: dict[int, _Buffers] = {}
        self._bound: int | None = None

    def _bind(self, batch: int) -> _Buffers:
        if not self.min_batch <= batch <= self.max_batch:
            raise EdgediffError(f"{self.path} was built for batch {self.min_batch}…"
                                f"{self.max_batch}, asked for {batch}: sample with --batch "
                                f"≤ {self.max_batch}, or rebuild with --max-batch {batch}")
        buf = self._buffers.get(batch)
        if buf is None:
            buf = self._buffers[batch] = _Buffers(self._cudart, batch, self.info.sample_shape)
        if self._bound != batch:
            self.context.set_input_shape("x", buf.shape)
            self.context.set_input_shape("sigma", (batch,))
            for name, ptr in (("x", buf.x), ("sigma", buf.sigma), ("denoised", buf.out)):
                self.context.set_tensor_address(name, int(ptr))
            self._bound = batch
        return buf

    def _launch(self, buf: _Buffers) -> None:
        cudart, stream = self._cudart, self.stream
        if not self.cuda_graph:
            if not self.context.execute_async_v3(int(stream)):
                raise EdgediffError(f"TensorRT failed to run {self.path}")
            return
        if buf.graph is None:  # capture this batch size's launch once, then replay it
            _ok(cudart.cudaStreamBeginCapture(
                stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
            self.context.execute_async_v3(int(stream))
            graph = _ok(cudart.cudaStreamEndCapture(stream))
            buf.graph = _ok(cudart.cudaGraphInstantiate(graph, 0))
            cudart.cudaGraphDestroy(graph)
        _ok(cudart.cudaGraphLaunch(buf.graph, stream))

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        x, sigma = check_inputs(self.info, x, sigma)
        x, sigma = np.ascontiguousarray(x), np.ascontiguousarray(sigma)
        buf = self._bind(x.shape[0])
        cudart, stream = self._cudart, self.stream
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _ok(cudart.cudaMemcpyAsync(buf.x, x.ctypes.data, buf.x_bytes, h2d, stream))
        _ok(cudart.cudaMemcpyAsync(buf.sigma, sigma.ctypes.data, buf.sigma_bytes, h2d, stream))
        self._launch(buf)
        _ok(cudart.cudaMemcpyAsync(buf.host_out.ctypes.data, buf.out, buf.x_bytes,
                                   cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
        _ok(cudart.cudaStreamSynchronize(stream))
        return buf.host_out

    def close(self) -> None:
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

