"""Tensor conditioning (docs/conditioning.md, "Tensor conditioning"): named float32
graph inputs of a fixed shape per sample, such as a text encoder's
``encoder_hidden_states`` [77, 768] or a pooled vector, each with the null value
classifier-free guidance feeds on the unconditional pass.

They are declared in the artifact's ``edgediff.conditioning`` key, under
``"tensors"`` (docs/artifact.md)::

    "tensors": {"encoder_hidden_states": {"shape": [77, 768], "dtype": "float32",
                                          "null": "zeros"}}

``null`` is ``"zeros"`` (stored as nothing) or ``{"base64": ..., "sha256": ...}``:
the tensor's float32 little-endian bytes in C order, base64-encoded, and the
sha256 of those bytes. Base64 costs 4·n·4/3 ≈ 5.3 bytes per element in the
metadata ([77, 768]: 315 KB of JSON), read by ONNX Runtime's
``custom_metadata_map`` with NumPy only, no onnx import. NumPy-only module.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.metadata import MetadataError

RESERVED = ("x", "sigma", "class_labels", "guidance", "denoised")  # edgediff.graph's names
_ALLOWED = ('"tensors": {NAME: {"shape": [positive ints], "dtype": "float32", "null": '
            '"zeros" or {"base64": float32 little-endian bytes, "sha256": their hash}}}, '
            'NAME an identifier other than ' + ", ".join(RESERVED))


@dataclass(frozen=True, eq=False)
class TensorSpec:
    """One declared input: its name, shape per sample and null value (that shape)."""

    name: str
    shape: tuple[int, ...]
    null: np.ndarray

    def describe(self) -> str:
        return f"{self.name} [{', '.join(map(str, self.shape))}]"


def encode_null(null: np.ndarray) -> str | dict[str, str]:
    """A null value as the metadata stores it: ``"zeros"``, or base64 and sha256."""
    raw = np.ascontiguousarray(null, dtype="<f4")
    if not np.any(raw):
        return "zeros"
    data = raw.tobytes()
    return {"base64": base64.b64encode(data).decode("ascii"),
            "sha256": hashlib.sha256(data).hexdigest()}


def declare(name: str, shape, null: np.ndarray | None = None) -> dict:
    """The ``tensors`` entry of one input (``null`` None: zeros), checked."""
    entry = {"shape": [int(n) for n in shape], "dtype": "float32",
             "null": "zeros" if null is None else encode_null(null)}
    parse_tensors({name: entry})
    return entry


def _decode(null, shape: tuple[int, ...]) -> np.ndarray | None:
    if null == "zeros":
        return np.zeros(shape, np.float32)
    if not isinstance(null, dict) or set(null) != {"base64", "sha256"} \
            or not all(isinstance(v, str) for v in null.values()):
        return None
    try:
        data = base64.b64decode(null["base64"], validate=True)
    except ValueError:
        return None
    if hashlib.sha256(data).hexdigest() != null["sha256"] or len(data) != 4 * int(np.prod(shape)):
        return None
    value = np.frombuffer(data, "<f4").astype(np.float32).reshape(shape)
    return value if np.all(np.isfinite(value)) else None


def parse_tensors(tensors) -> tuple[TensorSpec, ...]:
    """The declared inputs, in declaration order; one MetadataError for anything the
    contract does not allow (a null value whose size or hash does not match included)."""
    if not isinstance(tensors, dict) or not tensors:
        raise MetadataError("conditioning", {"tensors": tensors}, _ALLOWED)
    specs = []
    for name, entry in tensors.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        ok = (isinstance(name, str) and name.isidentifier() and name.isascii()
              and name not in RESERVED and isinstance(entry, dict)
              and set(entry) == {"shape", "dtype", "null"} and entry["dtype"] == "float32"
              and isinstance(shape, list) and len(shape) >= 1
              and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape))
        null = _decode(entry["null"], tuple(shape)) if ok else None
        if null is None:
            brief = {k: v for k, v in entry.items() if k != "null"} \
                if isinstance(entry, dict) else entry
            raise MetadataError("conditioning", {"tensors": {name: brief}},
                                _ALLOWED + "; the null value's size and sha256 must match")
        specs.append(TensorSpec(name, tuple(shape), null))
    return tuple(specs)


def check_tensors(specs: tuple[TensorSpec, ...], tensors, num: int) -> dict[str, np.ndarray]:
    """Tensor conditioning for ``num`` samples: a mapping of declared names to finite
    floating arrays of the declared shape (one for all samples) or [num, *shape] (one
    per sample). Returns float32 arrays [1 or num, *shape]; names left out take
    their null value where they are fed."""
    if tensors is None:
        return {}
    if not isinstance(tensors, dict):
        raise EdgediffError(f"tensor conditioning is a mapping of input name to array, got "
                            f"{type(tensors).__name__}")
    declared = {s.name: s for s in specs}
    takes = ("it takes " + ", ".join(s.describe() for s in specs)) if specs else \
        "it takes no tensor conditioning (edgediff info shows a model's conditioning)"
    out = {}
    for name, value in tensors.items():
        if name not in declared:
            raise EdgediffError(f"this model has no conditioning input {name!r}; {takes}")
        spec = declared[name]
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.floating):
            raise EdgediffError(f"{name} has dtype {arr.dtype}; it takes floating-point values "
                                f"(float32)")
        if arr.shape == spec.shape:
            arr = arr[None]
        elif arr.shape != (num, *spec.shape) and not (arr.ndim == len(spec.shape) + 1
                                                      and arr.shape[1:] == spec.shape
                                                      and arr.shape[0] == 1):
            raise EdgediffError(f"{name} has shape {list(arr.shape)}; this model takes "
                                f"{list(spec.shape)} (one for all samples) or "
                                f"[{num}, {', '.join(map(str, spec.shape))}] (one per sample)")
        arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            raise EdgediffError(f"{name} holds NaN or Inf")
        out[name] = arr
    return out
