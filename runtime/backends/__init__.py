"""The engines that run an artifact: one module each, behind one registry.

An engine module (``ort``: ONNX Runtime; ``tensorrt``: native TensorRT plans)
imports its own packages only inside itself, when a file of its kind is opened,
and offers ``open_artifact(path, options: BackendOptions) -> Denoiser``. A new
engine is one new module here and one line in ``ENGINES``; nothing else changes.
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
    """An engine: its module in this package, the file suffixes it opens, and how
    a message names those files."""

    module: str
    suffixes: tuple[str, ...]
    kind: str


ENGINES = (
    Engine("ort", (".onnx",), "an .onnx file"),
    Engine("tensorrt", (".plan", ".engine"), "a TensorRT .plan"),
)


def engine_for(path: Path) -> Engine:
    """The engine that opens files like ``path``, by suffix."""
    for engine in ENGINES:
        if path.suffix in engine.suffixes:
            return engine
    kinds = " nor ".join(e.kind for e in ENGINES)
    raise EdgediffError(f"{path} is neither {kinds}; export a model with 'edgediff export' "
                        f"first")


def open_artifact(path: str | Path, options: BackendOptions) -> Denoiser:
    """Open an artifact with the engine its suffix names."""
    path = Path(path)
    if not path.exists():
        raise EdgediffError(f"no such file: {path}")
    if path.is_dir():
        raise EdgediffError(f"{path} is a folder; pass an exported .onnx file or a .plan")
    engine = engine_for(path)
    module = importlib.import_module(f"{__name__}.{engine.module}")
    return module.open_artifact(path, options)


__all__ = ["ENGINES", "PROVIDERS", "BackendOptions", "Engine", "engine_for", "open_artifact"]
