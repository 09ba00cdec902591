"""ONNX Runtime backend: an exported ``model.onnx`` as a denoiser.

Providers are explicit (ONNX Runtime docs: never rely on the default order):
``cpu``, ``cuda`` or ``tensorrt`` (the TensorRT execution provider, with CUDA
and CPU behind it). Every call goes through IOBinding onto buffers allocated
once per batch size: on the CPU they are NumPy arrays ONNX Runtime reads and
writes in place; on a GPU, device OrtValues updated in place
(``OrtValue.update_inplace``), so each step costs one host→device copy of the
inputs and one device→host copy of the result. The TensorRT execution provider
gets one optimization profile over batch 1…``max_batch`` for every graph input
(``tensorrt_ep_options``) and an engine cache, so only the first session builds
an engine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError, missing_extra
from edgediff.graph import OUTPUT, GraphInput, graph_inputs, profile_shapes
from edgediff.metadata import props_with_overrides
from edgediff.runtime._call import check_inputs, fill_conditioning, reset_conditioning
from edgediff.runtime.backends.backend_options import PROVIDERS, BackendOptions

log = logging.getLogger(__name__)

_MAX_BINDINGS = 4  # batch sizes kept bound at once


def default_cache_dir() -> Path:
    """Where the TensorRT execution provider keeps its engines: ``ort-tensorrt`` in
    edgediff's cache (``edgediff.fileio.cache_root``)."""
    from edgediff.fileio import cache_root

    return cache_root() / "ort-tensorrt"


def _make_cache(cache_dir: Path | None) -> Path:
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgediffError(f"cannot create the engine cache {cache_dir}: {e}; set "
                            f"EDGEDIFF_CACHE to a writable folder") from None
    return cache_dir


def tensorrt_ep_options(inputs: Sequence[GraphInput], max_batch: int, device_id: int,
                        cache_dir: Path) -> dict:
    """The TensorRT execution provider's options: an explicit profile over batch
    1…max_batch (optimized for max_batch, the batch a sampling run uses most) for
    every graph input (``edgediff.graph``), and an engine cache. ONNX Runtime keys
    cached engines on the model and rebuilds when the profile changes; the cache
    holds engines, which are code, so it lives in the user's own cache folder."""
    profile = profile_shapes(inputs, (1, max_batch, max_batch))

    def shapes(k: int) -> str:  # ONNX Runtime's "input:d0xd1…,input2:…" form
        return ",".join(f"{name}:{'x'.join(map(str, dims[k]))}"
                        for name, dims in profile.items())

    return {"device_id": device_id,
            "trt_profile_min_shapes": shapes(0),
            "trt_profile_opt_shapes": shapes(1),
            "trt_profile_max_shapes": shapes(2),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir)}


def _import_ort():
    try:
        import onnxruntime
    except ImportError:
        raise missing_extra("onnxruntime", "cpu") from None
    return onnxruntime


class _Binding:
    """Inputs and output of one batch size, allocated once: the ``Bound`` of
    ``edgediff.runtime._call`` — a step loop writes ``x`` and ``sigma`` and calls
    ``run``. A conditional graph's ``class_labels`` start at the null label, a
    --guidance graph's ``guidance`` at 1 and tensor conditioning at its null value
    (their ``GraphInput.fill``)."""

    def __init__(self, ort, session, batch: int, inputs: Sequence[GraphInput], device: str,
                 device_id: int, host_arrays: bool | None = None):
        self.session, self.io = session, session.io_binding()
        arrays = {i.name: i.buffer(batch) for i in inputs}
        self.x, self.sigma = arrays["x"], arrays["sigma"]
        self.class_labels = arrays.get("class_labels")
        self.guidance = arrays.get("guidance")
        self.tensors = {i.name: arrays[i.name] for i in inputs[2:]
                        if i.name not in ("class_labels", "guidance")}
        shape = self.x.shape
        # ONNX Runtime reads and writes NumPy arrays in place (CPU), or device OrtValues
        self.on_host = device == "cpu" if host_arrays is None else host_arrays
        if self.on_host:
            self.out = np.empty(shape, np.float32)
            for name, array in arrays.items():
                self.io.bind_cpu_input(name, array)
            self.io.bind_output(OUTPUT, "cpu", 0, np.float32, shape, self.out.ctypes.data)
        else:
            new = ort.OrtValue.ortvalue_from_shape_and_type
            self._device_inputs = [(array, new(array.shape, array.dtype, device, device_id))
                                   for array in arrays.values()]
            self.out_dev = new(shape, np.float32, device, device_id)
            for name, (_, value) in zip(arrays, self._device_inputs, strict=True):
                self.io.bind_ortvalue_input(name, value)
            self.io.bind_ortvalue_output(OUTPUT, self.out_dev)

    def run(self) -> np.ndarray:
        if self.on_host:
            self.session.run_with_iobinding(self.io)
            return self.out
        for array, value in self._device_inputs:
            value.update_inplace(array)
        self.session.run_with_iobinding(self.io)
        return self.out_dev.numpy()


class OrtDenoiser:
    """D(x, σ) from an exported ONNX file, run by ONNX Runtime."""

    def __init__(self, path: str | Path, options: BackendOptions | None = None):
        ort = _import_ort()
        options = BackendOptions() if options is None else options
        self.path = Path(path)
        provider = options.provider
        available = ort.get_available_providers()
        if PROVIDERS[provider][0] not in available:
            hint = ('pip install "edgediff[gpu]" (onnxruntime-gpu, which replaces onnxruntime)'
                    if provider != "cpu" else 'pip install "edgediff[cpu]"')
            raise EdgediffError(f"ONNX Runtime here has no {PROVIDERS[provider][0]} (it has "
                                f"{', '.join(available)}); {hint}")
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads or 0  # 0: ONNX Runtime's own
        session_options.inter_op_num_threads = 1
        session_options.log_severity_level = 3
        providers = [(p, {"device_id": options.device_id}) if p != "CPUExecutionProvider"
                     else p for p in PROVIDERS[provider]]
        self.max_batch = options.max_batch
        info = None
        if provider == "tensorrt":  # its profile needs the graph's inputs: read them first
            peek = ort.SessionOptions()
            peek.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            peek.log_severity_level = 3
            info = self._read_info(self._open(ort, peek, ["CPUExecutionProvider"]),
                                   options.metadata)
            providers[0] = ("TensorrtExecutionProvider", tensorrt_ep_options(
                graph_inputs(info), options.max_batch, options.device_id,
                _make_cache(options.cache_dir)))
        self.session = self._open(ort, session_options, providers)
        active = self.session.get_providers()
        if active[0] != PROVIDERS[provider][0]:  # ONNX Runtime falls back with only a log line
            raise EdgediffError(
                f"ONNX Runtime lists {PROVIDERS[provider][0]} but could not start it for "
                f"{self.path} (running on {', '.join(active)}); check that the CUDA"
                f"{', cuDNN and TensorRT' if provider == 'tensorrt' else ' and cuDNN'} "
                f"libraries onnxruntime-gpu was built for are installed, or use --provider cpu")
        self.info = info or self._read_info(self.session, options.metadata)
        self.inputs = graph_inputs(self.info)
        self._check_signature()
        self._ort, self._device_id = ort, options.device_id
        self._device = "cpu" if provider == "cpu" else "cuda"
        self.provider = provider
        self._bindings: dict[int, _Binding] = {}

    def _open(self, ort, options, providers: list):
        """A session, or one clear error: the file's fault on the CPU, the provider's
        (or the file's) on a GPU one."""
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as e:  # ONNX Runtime raises its own unrelated types per failure
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            name = providers[0] if isinstance(providers[0], str) else providers[0][0]
            if name == "CPUExecutionProvider":
                raise EdgediffError(f"{self.path} is not an ONNX model ONNX Runtime can "
                                    f"load: {first}") from None
            raise EdgediffError(f"ONNX Runtime could not open {self.path} with {name}: "
                                f"{first}") from None

    def _read_info(self, session, metadata: dict | None) -> ArtifactInfo:
        props = props_with_overrides(session.get_modelmeta().custom_metadata_map, metadata)
        return ArtifactInfo.from_props(props, where=str(self.path))

    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        want = {i.name: i.onnx_type for i in self.inputs}
        if set(inputs) != set(want) or outputs != [OUTPUT]:
            raise EdgediffError(f"{self.path} has inputs {sorted(inputs)} and outputs {outputs}; "
                                f"its metadata describes inputs {', '.join(want)} and output "
                                f"{OUTPUT} (edgediff.graph says which)")
        for name, kind in want.items():
            if inputs[name].type != kind:
                raise EdgediffError(f"{self.path}: input {name} is {inputs[name].type}; edgediff "
                                    f"models take {kind[7:-1]}")
        declared = inputs["x"].shape[1:]  # symbolic dimensions are names, fixed ones ints
        want = self.info.sample_shape
        if len(declared) != len(want) or any(isinstance(d, int) and d != w
                                             for d, w in zip(declared, want, strict=False)):
            raise EdgediffError(f"{self.path}: edgediff.sample_shape = {list(want)} does not "
                                f"match the graph's input x of shape [batch, "
                                f"{', '.join(map(str, declared))}]; fix the metadata")

    def bind(self, batch: int) -> _Binding:
        """The IOBinding of one batch size (kept for the last few batch sizes)."""
        binding = self._bindings.get(batch)
        if binding is None and self.provider == "tensorrt" and batch > self.max_batch:
            raise EdgediffError(f"{self.path} was loaded with the TensorRT execution provider "
                                f"for batches up to {self.max_batch}, asked for {batch}: load it "
                                f"with max_batch ≥ {batch} (the CLI uses --batch)")
        if binding is None:
            if len(self._bindings) >= _MAX_BINDINGS:
                self._bindings.pop(next(iter(self._bindings)))
            binding = _Binding(self._ort, self.session, batch, self.inputs, self._device,
                               self._device_id)
            self._bindings[batch] = binding
        reset_conditioning(self.info, binding)  # not the last caller's labels
        return binding

    def __call__(self, x: np.ndarray, sigma: np.ndarray, class_labels=None, guidance=None,
                 **tensors) -> np.ndarray:
        """D(x; σ) as float32 [B, *sample_shape]; the array is reused by the next call.
        A conditional model takes ``class_labels`` (default: the null label, an
        unconditional pass); a --guidance graph its scale ``guidance`` (default 1);
        a tensor-conditioned one its declared inputs by name (default: null values)."""
        x, sigma = check_inputs(self.info, x, sigma)
        binding = self.bind(x.shape[0])
        np.copyto(binding.x, x)
        np.copyto(binding.sigma, sigma)
        fill_conditioning(self.info, binding, class_labels, guidance, tensors)
        return binding.run()


def open_artifact(path: Path, options: BackendOptions) -> OrtDenoiser:
    """The registry's entry (``edgediff.runtime.backends``)."""
    return OrtDenoiser(path, options)


def read_onnx_metadata(path: str | Path, overrides: dict | None = None) -> dict[str, str]:
    """The file's metadata_props, read with whichever of onnxruntime / onnx is installed,
    with ``overrides`` on top; a clear error when the file is not ONNX or the result is
    not complete edgediff metadata."""
    props = None
    try:
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception:
            raise EdgediffError(f"{path} is not an ONNX model ONNX Runtime can read") from None
        props = dict(sess.get_modelmeta().custom_metadata_map)
    except ImportError:
        try:
            import onnx
        except ImportError:
            raise EdgediffError('reading ONNX needs onnxruntime or onnx: '
                                'pip install "edgediff[cpu]"') from None
        try:
            props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        except Exception:
            raise EdgediffError(f"{path} is not an ONNX model") from None
    props = props_with_overrides(props, overrides)
    ArtifactInfo.from_props(props, where=str(path))  # raises unless it is an edgediff export
    return props
