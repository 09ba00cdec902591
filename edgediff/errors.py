"""The one error type a user can cause, and its one refinement.

Its message says what was asked, what is possible, and how to fix it; the CLI
prints it as one line and exits non-zero (2 for a ``RefusedFileError``, 1 otherwise).
Bugs are not EdgediffErrors and keep their tracebacks.
"""


class EdgediffError(Exception):
    """A user-facing error: bad input, a missing extra, an incompatible artifact."""


class RefusedFileError(EdgediffError):
    """A file edgediff will not read: one that asks to run code (a global outside a
    format's allowed set), or is truncated or malformed. The CLI exits with status
    2 for it (bad input), as click does for bad arguments; other errors exit 1."""

    exit_code = 2


def missing_extra(module: str, extra: str) -> BaseException:
    """The error for an optional dependency that is not installed, raised from the
    ``except ImportError`` of its import. An import that failed for another reason
    (a broken install, a Ctrl-C inside a compiled module's initialisation) is not
    called missing: then the original error goes on."""
    import importlib.util
    import sys

    error = sys.exc_info()[1]
    name = getattr(error, "name", None) or module
    try:
        installed = importlib.util.find_spec(name.split(".")[0]) is not None
    except (ValueError, ImportError):
        installed = False
    if error is not None and installed:
        return error
    return EdgediffError(
        f"{module} is not installed; it comes with the '{extra}' extra: "
        f'pip install "edgediff[{extra}]"'
    )


# top-level module -> (the name users know it by, the extra that brings it)
EXTRAS = {
    "torch": ("torch", "torch"), "onnx": ("onnx", "torch"),
    "safetensors": ("safetensors", "torch"), "polygraphy": ("polygraphy", "torch"),
    "onnxruntime": ("onnxruntime", "cpu"), "tensorrt": ("tensorrt", "trt"),
    "cuda": ("cuda-python", "trt"), "sklearn": ("scikit-learn", "train"),
    "diffusers": ("diffusers", "diffusers"), "matplotlib": ("matplotlib", "lab"),
    "PIL": ("Pillow", "lab"), "ray": ("ray", "ray"), "openvino": ("openvino", "openvino"),
    "fastapi": ("fastapi", "serve"), "uvicorn": ("uvicorn", "serve"),
    "prometheus_client": ("prometheus_client", "serve"),
}


def missing_extra_for(error: ImportError) -> EdgediffError | None:
    """The install line for a ``ModuleNotFoundError`` of an optional dependency, or None
    for any other import failure (a broken install or a bug keeps its traceback)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    known = EXTRAS.get(error.name.split(".")[0])
    if known is None:
        return None
    found = missing_extra(*known)
    return found if isinstance(found, EdgediffError) else None
