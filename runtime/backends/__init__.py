"""The engines that run an artifact: one module each, behind one registry.

An engine module (``ort``: ONNX Runtime; ``openvino``: OpenVINO; ``tensorrt``:
native TensorRT plans) imports its own packages only inside itself, when a file
of its kind is opened, and offers ``open_artifact(path, options: BackendOptions)
-> Denoiser``. The file's suffix narrows the engines; where several read one kind
of file (an ``.onnx`` file: ONNX Runtime or OpenVINO), ``BackendOptions.engine``
picks one. A new engine is one new module here and one line in ``ENGINES``;
nothing else changes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from edgediff.errors import EdgediffError
from edgediff.runtime._call import Denoiser
from edgediff.runtime.backends.backend_options import PROVIDERS, BackendOptions


@dataclass(frozen=True)
class Engine:
    """An engine: its module in this package, the file suffixes it opens, how a
    message names those files, and the ``BackendOptions.engine`` that selects it
    (None: the only engine for its files, under the default choice)."""

    module: str
    suffixes: tuple[str, ...]
    kind: str
    name: str | None = None


ENGINES = (
    Engine("ort", (".onnx",), "an .onnx file", "onnxruntime"),
    Engine("openvino", (".onnx",), "an .onnx file", "openvino"),
    Engine("tensorrt", (".plan", ".engine"), "a TensorRT .plan"),
)


def engine_for(path: Path, name: str = "onnxruntime") -> Engine:
    """The engine that opens files like ``path``: by suffix, then by ``name`` (the
    ``BackendOptions.engine``) among the engines of that suffix."""
    fits = [e for e in ENGINES if path.suffix in e.suffixes]
    if not fits:
        kinds = " nor ".join(dict.fromkeys(e.kind for e in ENGINES))
        raise EdgediffError(f"{path} is neither {kinds}; export a model with 'edgediff export' "
                            f"first")
    for engine in fits:  # an unnamed engine answers only to the default choice
        if engine.name == name or (engine.name is None and name == BackendOptions.engine):
            return engine
    raise EdgediffError(f"{path} is {fits[0].kind}, which --backend {name} does not run; "
                        f"drop --backend, or pass an exported .onnx file")


def open_artifact(path: str | Path, options: BackendOptions) -> Denoiser:
    """Open an artifact with the engine its suffix and ``options.engine`` name."""
    path = Path(path)
    if not path.exists():
        raise EdgediffError(f"no such file: {path}")
    if path.is_dir():
        raise EdgediffError(f"{path} is a folder; pass an exported .onnx file or a .plan")
    engine = engine_for(path, options.engine)
    module = importlib.import_module(f"{__name__}.{engine.module}")
    return module.open_artifact(path, options)


__all__ = ["ENGINES", "PROVIDERS", "BackendOptions", "Engine", "engine_for", "open_artifact"]
