"""The decoder stage of a bundle: ``decode(z) -> image`` run by ONNX Runtime or OpenVINO.

The graph (``edgediff.export.decoder``) takes ``z`` [B, C, h, w] float32 (or float16
for an fp16 graph: the input's declared type decides) with B, h and w dynamic,
and returns ``image`` [B, 3, h·upscale, w·upscale] in its ``data_range``; the
latent map is inside. Its metadata (``edgediff.stage = decoder`` and
``edgediff.decoder``) is read and checked when it is opened
(``edgediff.latent.DecoderInfo``). A decode is a plain ``session.run``: shapes
change with the tile and the batch, so there is nothing to bind once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgediff.errors import EdgediffError, missing_extra
from edgediff.latent import DecoderInfo
from edgediff.metadata import MetadataError
from edgediff.runtime.backends import PROVIDERS, BackendOptions

log = logging.getLogger(__name__)

INPUT, OUTPUT = "z", "image"
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def read_props(path: str | Path) -> dict[str, str]:
    """A graph's metadata_props, read with ONNX Runtime (graph optimizations off)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise missing_extra("onnxruntime", "cpu") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:  # ONNX Runtime raises its own unrelated types per failure
        raise EdgediffError(f"{path} is not an ONNX model ONNX Runtime can read") from None
    return dict(session.get_modelmeta().custom_metadata_map)


def checked_latents(info: DecoderInfo, z, dtype) -> np.ndarray:
    """``z`` as the graph's input dtype, or one line when it is not [B, C, h, w]."""
    z = np.asarray(z)
    if z.ndim != 4 or z.shape[1] != info.latent_channels:
        raise EdgediffError(f"a decoder of {info.latent_channels}-channel latents takes "
                            f"[B, {info.latent_channels}, h, w], got {list(z.shape)}")
    return z.astype(dtype, copy=False)


class OrtDecoder:
    """``decode(z)`` from a decoder graph, run by ONNX Runtime on ``options.provider``
    (cpu or cuda) with ``options.threads``."""

    def __init__(self, path: str | Path, options: BackendOptions | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise missing_extra("onnxruntime", "cpu") from None
        options = BackendOptions() if options is None else options
        self.path = Path(path)
        if options.provider == "tensorrt":
            raise EdgediffError("the decoder stage runs with --decoder-provider cpu or cuda; "
                                "the TensorRT execution provider needs fixed tile shapes")
        wanted = PROVIDERS[options.provider]
        if wanted[0] not in ort.get_available_providers():
            raise EdgediffError(f"ONNX Runtime here has no {wanted[0]}; pip install "
                                f'"edgediff[gpu]", or decode on the cpu')
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads or 0
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        providers = [(p, {"device_id": options.device_id}) if p != "CPUExecutionProvider"
                     else p for p in wanted]
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise EdgediffError(f"{self.path} is not an ONNX model ONNX Runtime can load: "
                                f"{first}") from None
        try:
            self.info = DecoderInfo.from_props(dict(
                self.session.get_modelmeta().custom_metadata_map))
        except MetadataError as e:
            raise EdgediffError(f"{self.path}: {e}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT] or [o.name for o in outputs] != [OUTPUT]:
            raise EdgediffError(f"{self.path} has inputs {[i.name for i in inputs]} and outputs "
                                f"{[o.name for o in outputs]}; a decoder graph takes {INPUT} "
                                f"and returns {OUTPUT}")
        if inputs[0].type not in _DTYPES:
            raise EdgediffError(f"{self.path}: input {INPUT} is {inputs[0].type}; a decoder "
                                f"takes float or float16")
        self._dtype = _DTYPES[inputs[0].type]
        self.provider = options.provider

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """The images of latents ``z`` [B, C, h, w], float32 [B, 3, h·upscale, w·upscale]."""
        z = checked_latents(self.info, z, self._dtype)
        (image,) = self.session.run([OUTPUT], {INPUT: z})
        return image.astype(np.float32, copy=False)


class OpenVinoDecoder:
    """``decode(z)`` compiled by OpenVINO on ``options.device`` at ``options.precision``
    (checked as for denoisers: ``edgediff.runtime.backends.openvino``), its h and w
    left dynamic, since tiles and batches change them; the metadata from the
    model's ``rt_info``, as the OpenVINO denoiser reads it."""

    def __init__(self, path: str | Path, options: BackendOptions):
        from edgediff.hardware import cpu_flags
        from edgediff.runtime.backends.openvino import (
            _first_line,
            _import_ov,
            check_device,
            inference_precision,
        )

        ov = _import_ov()
        self.path, device = Path(path), options.device
        core = ov.Core()
        check_device(device, core.available_devices)
        try:
            capabilities = list(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
        except RuntimeError:
            capabilities = None
        on_cpu = device.split(".")[0] == "CPU"
        self.precision = inference_precision(device, options.precision,
                                             cpu_flags() if on_cpu else frozenset(), capabilities)
        try:
            model = core.read_model(str(self.path))
        except Exception as e:  # OpenVINO raises RuntimeError or its own types per failure
            raise EdgediffError(f"{self.path} is not an ONNX model OpenVINO can read: "
                                f"{_first_line(e)}") from None
        framework = model.get_rt_info()["framework"] if "framework" in model.get_rt_info() else {}
        try:
            self.info = DecoderInfo.from_props({k: v.astype(str) for k, v in framework.items()})
        except MetadataError as e:
            raise EdgediffError(f"{self.path}: {e}") from None
        names = ([p.get_any_name() for p in model.inputs],
                 [p.get_any_name() for p in model.outputs])
        if names != ([INPUT], [OUTPUT]):
            raise EdgediffError(f"{self.path} has inputs {names[0]} and outputs {names[1]}; a "
                                f"decoder graph takes {INPUT} and returns {OUTPUT}")
        self._dtype = np.dtype(model.inputs[0].get_element_type().to_dtype())
        config = {"INFERENCE_PRECISION_HINT": self.precision}
        if on_cpu and options.threads:
            config["INFERENCE_NUM_THREADS"] = options.threads
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as e:
            raise EdgediffError(f"OpenVINO could not compile {self.path} for {device} at "
                                f"{self.precision}: {_first_line(e)}") from None
        self.provider = f"openvino {device} {self.precision}"

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """The images of latents ``z`` [B, C, h, w], float32 [B, 3, h·upscale, w·upscale]."""
        image = self.compiled(checked_latents(self.info, z, self._dtype))[0]
        return np.asarray(image, dtype=np.float32)


def open_decoder(path: str | Path, options: BackendOptions | None = None
                 ) -> OrtDecoder | OpenVinoDecoder:
    """The decoder graph at ``path``, opened as ``options`` say: ONNX Runtime, or
    OpenVINO with ``engine="openvino"`` (and its ``precision`` and ``device``)."""
    if options is not None and options.engine == "openvino":
        return OpenVinoDecoder(path, options)
    return OrtDecoder(path, options)
