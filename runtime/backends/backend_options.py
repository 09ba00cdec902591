"""How to open an artifact: one frozen ``BackendOptions``, checked when made, read by
whichever engine opens the file (``edgediff.runtime.backends``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgediff.errors import EdgediffError

# ONNX Runtime execution providers, by the name the caller gives (--provider)
PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
# the engines that run an .onnx file (--backend), and what OpenVINO may be asked for
ONNX_ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("f32", "bf16", "f16")
DEVICES = ("CPU", "GPU", "NPU")  # OpenVINO's device kinds; "GPU.1" names the second GPU


def _count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise EdgediffError(f"{name} must be an integer ≥ {low}, got {value!r}")


@dataclass(frozen=True)
class BackendOptions:
    """What the caller may choose when opening an artifact; each engine reads the
    fields that concern it.

    - ``provider``: ONNX Runtime's execution provider for ``.onnx`` files (cpu, cuda
      or tensorrt, with CUDA and CPU behind it);
    - ``threads``: CPU threads for ONNX Runtime (None: its own choice);
    - ``cuda_graph``: a TensorRT plan replays its launch from a CUDA graph;
    - ``max_batch``: the largest batch of the TensorRT execution provider's profile
      (a plan's is fixed when it is built);
    - ``metadata``: edgediff metadata (docs/artifact.md) that supplies or overrides
      an ONNX file's own;
    - ``device_id``: the GPU ONNX Runtime's GPU providers run on;
    - ``cache_dir``: where the TensorRT execution provider caches its engines
      (None: ``default_cache_dir()`` of the ONNX Runtime backend);
    - ``engine``: what runs an ``.onnx`` file, ``onnxruntime`` or ``openvino``;
    - ``precision``: OpenVINO's inference precision, f32, bf16 or f16 (None: f32,
      or f16 on a device without f32 units); ONNX Runtime runs the graph's own;
    - ``device``: OpenVINO's device, CPU, GPU or NPU (``GPU.1``: the second GPU).
    """

    provider: str = "cpu"
    threads: int | None = None
    cuda_graph: bool = False
    max_batch: int = 16
    metadata: dict[str, Any] | None = None
    device_id: int = 0
    cache_dir: Path | None = None
    engine: str = "onnxruntime"
    precision: str | None = None
    device: str = "CPU"

    def __post_init__(self):
        if self.provider not in PROVIDERS:
            raise EdgediffError(f"unknown provider {self.provider!r}; choose one of "
                                f"{', '.join(PROVIDERS)}")
        if self.threads is not None:
            _count("threads", self.threads, 1)
        _count("max_batch", self.max_batch, 1)
        _count("device_id", self.device_id, 0)
        if self.metadata is not None and not isinstance(self.metadata, dict):
            raise EdgediffError(f"metadata must be a JSON object of edgediff metadata "
                                f"(docs/artifact.md), got {type(self.metadata).__name__}")
        self._check_engine()

    def _check_engine(self) -> None:
        if self.engine not in ONNX_ENGINES:
            raise EdgediffError(f"unknown backend {self.engine!r}; choose one of "
                                f"{', '.join(ONNX_ENGINES)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise EdgediffError(f"unknown precision {self.precision!r}; choose one of "
                                f"{', '.join(PRECISIONS)}")
        if not isinstance(self.device, str) or not re.fullmatch(r"(CPU|GPU|NPU)(\.\d+)?",
                                                                 self.device):
            raise EdgediffError(f"unknown device {self.device!r}; choose one of "
                                f"{', '.join(DEVICES)} (GPU.1: the second GPU)")
        if self.engine == "onnxruntime":
            if self.precision not in (None, "f32"):
                raise EdgediffError(f"ONNX Runtime runs the graph at its exported precision; "
                                    f"for --precision {self.precision} use --backend openvino")
            if self.device != "CPU":
                raise EdgediffError(f"--device {self.device} is OpenVINO's; ONNX Runtime "
                                    f"picks its hardware by --provider (cpu, cuda, tensorrt)")
        elif self.provider != "cpu":
            raise EdgediffError(f"--provider {self.provider} is ONNX Runtime's; OpenVINO "
                                f"picks its hardware by --device ({', '.join(DEVICES)})")
