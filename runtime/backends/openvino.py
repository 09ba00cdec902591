"""OpenVINO backend: an exported ``model.onnx`` compiled by OpenVINO for a CPU, GPU
or NPU.

It reads the same ONNX artifacts as ONNX Runtime: OpenVINO's ONNX frontend keeps
the file's metadata_props in the model's ``rt_info["framework"]``, parsed by the
same ``ArtifactInfo``. An int8 (QDQ) artifact runs as it is: OpenVINO turns each
QuantizeLinear/DequantizeLinear pair into a FakeQuantize and runs the quantized
layers in integer kernels.

Precision is explicit. OpenVINO's own default is bf16 on CPUs with bf16 units and
f16 on GPUs, so edgediff always sets ``INFERENCE_PRECISION_HINT``: f32 unless the
caller asks for bf16 or f16 (``inference_precision`` decides, from the device, the
CPU's flags and the device's ``OPTIMIZATION_CAPABILITIES``), and checks that the
compiled model took it. Each batch size gets a model compiled for that static
shape (OpenVINO's CPU kernels run static shapes faster than the graph's dynamic
batch axis; a sampling run uses one or two batch sizes) and an InferRequest whose
input and output tensors share memory with NumPy arrays (``ov.Tensor(array,
shared_memory=True)``): the ``Bound`` of ``edgediff.runtime._call``, so a call
copies nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError, missing_extra
from edgediff.graph import OUTPUT, GraphInput, graph_inputs
from edgediff.hardware import cpu_flags, has_bf16
from edgediff.metadata import props_with_overrides
from edgediff.runtime._call import check_inputs, fill_conditioning, reset_conditioning
from edgediff.runtime.backends.backend_options import PRECISIONS, BackendOptions

log = logging.getLogger(__name__)

_MAX_REQUESTS = 4  # batch sizes kept bound at once
# a precision's name in a device's OPTIMIZATION_CAPABILITIES
CAPABILITY = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}
# CPU flags of the units that compute each reduced precision natively (x86, then ARM);
# without them OpenVINO would emulate it, slower than f32. bf16's are has_bf16's.
CPU_UNITS = {"bf16": ("avx512_bf16", "amx_bf16", "bf16"),
             "f16": ("avx512_fp16", "amx_fp16", "asimdhp")}


def check_device(device: str, available: Sequence[str]) -> None:
    """Refuse a device OpenVINO does not list (``Core.available_devices``); ``GPU``
    stands for any ``GPU.N``."""
    if device in available or ("." not in device and
                               any(a.split(".")[0] == device for a in available)):
        return
    raise EdgediffError(f"OpenVINO finds no {device} device here (it has "
                        f"{', '.join(available) or 'none'}); pick one of those with --device, "
                        f"or install the {device.split('.')[0]} driver")


def _refusal(device: str, precision: str, flags: frozenset[str],
             capabilities: Collection[str] | None) -> str | None:
    """Why ``device`` cannot compute at ``precision`` (None: it can)."""
    if device.split(".")[0] == "CPU" and precision != "f32":
        native = has_bf16(flags) if precision == "bf16" else bool(flags & set(CPU_UNITS["f16"]))
        if not native:
            return (f"this CPU has no {precision} units (it needs one of "
                    f"{', '.join(CPU_UNITS[precision])} among its flags)")
    if capabilities is not None and CAPABILITY[precision] not in capabilities:
        return (f"OpenVINO's {device} plugin does not offer {precision} (its capabilities: "
                f"{', '.join(capabilities) or 'none'})")
    return None


def inference_precision(device: str, precision: str | None, flags: frozenset[str],
                        capabilities: Collection[str] | None) -> str:
    """The ``INFERENCE_PRECISION_HINT`` to compile with, or a clear error.

    ``precision`` None is the artifact's own f32, or f16 on a device without f32
    units (an NPU). On a CPU a reduced precision needs native units in ``flags``
    (``/proc/cpuinfo``): bf16 AVX512_BF16 or AMX-BF16 (BF16 on ARM), f16
    AVX512_FP16 or AMX-FP16 (ARM's half-precision SIMD). On every device it needs
    the plugin's ``OPTIMIZATION_CAPABILITIES`` to list it (None: not known, not
    checked)."""
    if precision is None:
        for candidate in ("f32", "f16"):
            if _refusal(device, candidate, flags, capabilities) is None:
                if candidate != "f32":
                    log.info("OpenVINO's %s has no f32 units: running at %s", device, candidate)
                return candidate
        raise EdgediffError(f"OpenVINO's {device} offers neither f32 nor f16 (its capabilities: "
                            f"{', '.join(capabilities or ()) or 'none'}); use --device CPU")
    why = _refusal(device, precision, flags, capabilities)
    if why is not None:
        fits = [p for p in PRECISIONS if _refusal(device, p, flags, capabilities) is None]
        hint = f"use --precision {' or '.join(fits)}" if fits else "use another --device"
        raise EdgediffError(f"--precision {precision} on {device}: {why}; {hint}")
    return precision


def _import_ov():
    try:
        import openvino
    except ImportError:
        raise missing_extra("openvino", "openvino") from None
    return openvino


class _Request:
    """One batch size's InferRequest, its tensors sharing memory with NumPy arrays:
    a step loop writes ``x`` and ``sigma`` (and the conditioning arrays, which start
    at their ``GraphInput.fill``) and calls ``run``."""

    def __init__(self, ov, compiled, batch: int, inputs: Sequence[GraphInput]):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        arrays = {i.name: i.buffer(batch) for i in inputs}
        self.x, self.sigma = arrays["x"], arrays["sigma"]
        self.class_labels = arrays.get("class_labels")
        self.guidance = arrays.get("guidance")
        self.tensors = {i.name: arrays[i.name] for i in inputs[2:]
                        if i.name not in ("class_labels", "guidance")}
        self._arrays = arrays  # the tensors below borrow these buffers
        self._out = np.empty(self.x.shape, np.float32)
        for name, array in arrays.items():
            self.request.set_tensor(name, ov.Tensor(array, shared_memory=True))
        self.request.set_tensor(OUTPUT, ov.Tensor(self._out, shared_memory=True))

    def run(self) -> np.ndarray:
        self.request.infer()
        return self.request.get_tensor(OUTPUT).data  # our buffer, unless a plugin swapped it


class OpenVinoDenoiser:
    """D(x, σ) from an exported ONNX file, compiled by OpenVINO."""

    def __init__(self, path: str | Path, options: BackendOptions | None = None):
        ov = _import_ov()
        options = BackendOptions(engine="openvino") if options is None else options
        self.path, self.device = Path(path), options.device
        core = ov.Core()
        check_device(self.device, core.available_devices)
        try:
            capabilities = list(core.get_property(self.device, "OPTIMIZATION_CAPABILITIES"))
        except RuntimeError:
            capabilities = None
        on_cpu = self.device.split(".")[0] == "CPU"
        self.precision = inference_precision(self.device, options.precision,
                                             cpu_flags() if on_cpu else frozenset(),
                                             capabilities)
        try:
            model = core.read_model(str(self.path))
        except Exception as e:  # OpenVINO raises RuntimeError or its own types per failure
            raise EdgediffError(f"{self.path} is not an ONNX model OpenVINO can read: "
                                f"{_first_line(e)}") from None
        self.info = self._read_info(model, options.metadata)
        self.inputs = graph_inputs(self.info)
        self._check_signature(model)
        self._config = {"INFERENCE_PRECISION_HINT": self.precision,
                        "PERFORMANCE_HINT": "LATENCY"}
        if on_cpu and options.threads:
            self._config["INFERENCE_NUM_THREADS"] = options.threads
        self._ov, self._core, self._model = ov, core, model
        self._requests: dict[int, _Request] = {}
        self.compiled = self._compile(1)  # fails here, not at the first call
        self._requests[1] = _Request(ov, self.compiled, 1, self.inputs)

    def _compile(self, batch: int):
        """The model compiled for ``batch`` samples, at the precision asked (checked)."""
        model = self._model.clone()
        model.reshape({i.name: list(i.batch_shape(batch)) for i in self.inputs})
        try:
            compiled = self._core.compile_model(model, self.device, self._config)
        except Exception as e:
            raise EdgediffError(f"OpenVINO could not compile {self.path} for {self.device} at "
                                f"{self.precision}: {_first_line(e)}") from None
        got = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if got != str(getattr(self._ov.Type, self.precision)):
            raise EdgediffError(f"OpenVINO compiled {self.path} for {self.device} at {got}, "
                                f"not the {self.precision} asked for; use another --precision")
        log.info("OpenVINO %s: %s for batch %d on %s at %s", self._ov.__version__, self.path,
                 batch, self.device, self.precision)
        return compiled

    def _read_info(self, model, metadata: dict | None) -> ArtifactInfo:
        rt_info = model.get_rt_info()
        framework = rt_info["framework"] if "framework" in rt_info else {}
        props = {k: v.astype(str) for k, v in framework.items()}
        props = props_with_overrides(props, metadata)
        return ArtifactInfo.from_props(props, where=str(self.path))

    def _check_signature(self, model) -> None:
        inputs = {p.get_any_name(): p for p in model.inputs}
        outputs = [p.get_any_name() for p in model.outputs]
        want = {i.name: i for i in self.inputs}
        if set(inputs) != set(want) or outputs != [OUTPUT]:
            raise EdgediffError(f"{self.path} has inputs {sorted(inputs)} and outputs {outputs}; "
                                f"its metadata describes inputs {', '.join(want)} and output "
                                f"{OUTPUT} (edgediff.graph says which)")
        for name, spec in want.items():
            kind = np.dtype(inputs[name].get_element_type().to_dtype())
            if kind != np.dtype(spec.dtype):
                raise EdgediffError(f"{self.path}: input {name} is {kind}; edgediff models "
                                    f"take {spec.dtype}")
        declared = list(inputs["x"].get_partial_shape())[1:]
        shape = self.info.sample_shape
        if len(declared) != len(shape) or any(d.is_static and d.get_length() != w
                                              for d, w in zip(declared, shape, strict=False)):
            raise EdgediffError(f"{self.path}: edgediff.sample_shape = {list(shape)} does not "
                                f"match the graph's input x of shape [batch, "
                                f"{', '.join(map(str, declared))}]; fix the metadata")

    def bind(self, batch: int) -> _Request:
        """The InferRequest of one batch size (kept for the last few batch sizes)."""
        request = self._requests.get(batch)
        if request is None:
            if len(self._requests) >= _MAX_REQUESTS:
                self._requests.pop(next(iter(self._requests)))
            request = self._requests[batch] = _Request(self._ov, self._compile(batch), batch,
                                                       self.inputs)
        reset_conditioning(self.info, request)  # not the last caller's labels
        return request

    def __call__(self, x: np.ndarray, sigma: np.ndarray, class_labels=None, guidance=None,
                 **tensors) -> np.ndarray:
        """D(x; σ) as float32 [B, *sample_shape]; the array is reused by the next call.
        Conditioning as ONNX Runtime's backend takes it: ``class_labels`` (default the
        null label), a --guidance graph's ``guidance`` (default 1), tensor
        conditioning by name (default its null value)."""
        x, sigma = check_inputs(self.info, x, sigma)
        request = self.bind(x.shape[0])
        np.copyto(request.x, x)
        np.copyto(request.sigma, sigma)
        fill_conditioning(self.info, request, class_labels, guidance, tensors)
        return request.run()


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def open_artifact(path: Path, options: BackendOptions) -> OpenVinoDenoiser:
    """The registry's entry (``edgediff.runtime.backends``)."""
    return OpenVinoDenoiser(path, options)
