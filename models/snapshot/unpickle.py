"""Read an NVlabs EDM / EDM2 network snapshot without running any of its code.

A ``network-snapshot-*.pkl`` is a pickle of live modules. EDM's own loader
(``torch_utils.persistence``) compiles and executes the Python source embedded in
it, and every tensor storage arrives through ``torch.storage._load_from_bytes``,
whose argument is a second, nested ``torch.save`` pickle that ``torch.load``
would unpickle without restriction. Here instead:

- the unpickler resolves exactly the globals such files use (``ALLOWED``) to
  edgediff's own, data-only stand-ins; any other global stops the read with an
  ``EdgediffError`` naming it, before anything it names could be called;
- EDM's persistent-object constructor becomes a ``PersistentRecord`` (class name,
  init kwargs, the module's ``__dict__``); the embedded module source is kept as
  a string and never compiled;
- the nested storage payload is parsed by ``_read_storage`` (the legacy
  ``torch.save`` layout: four small pickles, then the raw bytes) with an
  unpickler that allows only the storage-type names;
- tensors are views of those bytes built by ``torch.as_strided`` after a bounds
  check, never by torch's private rebuild helpers.

Nothing here imports ``torch_utils`` or ``dnnlib``; a file that needs them for
anything but a name is refused.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgediff.errors import EdgediffError, RefusedFileError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save's legacy-format magic number
STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64, "IntStorage": torch.int32, "ShortStorage": torch.int16,
    "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


@dataclass
class PersistentRecord:
    """What EDM's ``_reconstruct_persistent_obj`` would have built, as data: the
    class's name, its constructor's keyword arguments and the instance
    ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ...). ``module_src``
    is the embedded source, kept only so that it can be shown; it is never run."""

    class_name: str
    state: dict[str, Any]
    module_src: str = ""

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def children(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})


@dataclass
class ModuleDictRecord:
    """A pickled ``torch.nn.ModuleDict``: its ``__dict__``, as a record's."""

    state: dict[str, Any] = field(default_factory=dict)
    class_name = "ModuleDict"

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise EdgediffError("a ModuleDict in the snapshot has no state dict")
        self.state = state

    @property
    def children(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})


class EasyDict(dict):
    """``dnnlib.util.EasyDict`` (a dict with attribute access) as a plain dict."""


@dataclass
class _Storage:
    """A storage of the nested payload: dtype and element count, then its bytes."""

    dtype: torch.dtype
    numel: int
    flat: torch.Tensor | None = None


def _persistent_obj(meta) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or \
            not isinstance(meta.get("class_name"), str) or not isinstance(meta.get("state"), dict):
        raise EdgediffError("a persistent object in the snapshot is not a class record "
                            "(type 'class' with class_name and state)")
    return PersistentRecord(meta["class_name"], meta["state"], str(meta.get("module_src", "")))


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None,
                    metadata=None) -> torch.Tensor:
    if not isinstance(storage, _Storage) or storage.flat is None:
        raise EdgediffError("a tensor in the snapshot does not point at a storage payload")
    size, stride = tuple(int(n) for n in size), tuple(int(n) for n in stride)
    if len(size) != len(stride) or int(offset) < 0 or min((*size, *stride), default=0) < 0:
        raise EdgediffError(f"a tensor in the snapshot has a malformed layout {size}/{stride}")
    steps = zip(size, stride, strict=True)
    last = int(offset) + sum((n - 1) * s for n, s in steps) if all(size) else -1
    if last >= storage.numel:
        raise EdgediffError(f"a tensor of shape {size} reads past its storage of "
                            f"{storage.numel} elements")
    return torch.as_strided(storage.flat, size, stride, int(offset)).clone()


def _rebuild_parameter(data, requires_grad=False, hooks=None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise EdgediffError("a parameter in the snapshot holds no tensor")
    return data


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or not isinstance(data, bytes) or \
            dtype.hasobject or len(data) != dtype.itemsize:
        raise EdgediffError("a NumPy scalar in the snapshot is not plain data")
    return np.frombuffer(data, dtype=dtype)[0]


def _numpy_dtype(spec, align=False, copy=True) -> np.dtype:
    if not isinstance(spec, str):
        raise EdgediffError("a NumPy dtype in the snapshot is not named by a string")
    dtype = np.dtype(spec)
    if dtype.hasobject:
        raise EdgediffError("a NumPy dtype in the snapshot holds Python objects")
    return dtype


class _NDArray:
    """``numpy.ndarray`` as a name only: the marker ``_reconstruct`` is called with."""


def _array(cls, shape=(0,), dtype_code=b"b") -> _ArrayState:
    if cls is not _NDArray:
        raise EdgediffError("an array in the snapshot is not a plain ndarray")
    return _ArrayState()


class _ArrayState:
    """A NumPy array being unpickled (EDM2 encoders keep their latent scale and
    bias as arrays): ``__setstate__`` takes (version, shape, dtype, fortran, raw
    bytes) and keeps a plain array; object arrays are refused."""

    array: np.ndarray | None = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)
                and isinstance(state[4], bytes) and not state[2].hasobject):
            raise EdgediffError("an array in the snapshot is not plain numeric data")
        shape = tuple(int(n) for n in state[1])
        order = "F" if state[3] else "C"
        self.array = np.frombuffer(state[4], dtype=state[2]).reshape(shape, order=order).copy()


ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): lambda payload: _read_storage(payload),
    ("torch.nn.modules.container", "ModuleDict"): ModuleDictRecord,
    ("collections", "OrderedDict"): OrderedDict,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "ndarray"): _NDArray,
    ("numpy._core.multiarray", "_reconstruct"): _array,
    ("numpy.core.multiarray", "_reconstruct"): _array,
    ("dnnlib.util", "EasyDict"): EasyDict,
}


class _RefusedGlobalError(Exception):
    """A global outside the allowed set; becomes the one-line EdgediffError."""


class _SnapshotUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise _RefusedGlobalError(f"{module}.{name}")
        return ALLOWED[(module, name)]

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a snapshot's outer pickle has no persistent ids")


class _PayloadUnpickler(pickle.Unpickler):
    """The nested payload: only storage types, and storages by persistent id."""

    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise _RefusedGlobalError(f"{module}.{name} (inside a tensor payload)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
                and isinstance(pid[1], torch.dtype) and isinstance(pid[4], int)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        key = str(pid[2])
        if pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not part of a snapshot")
        return self.storages.setdefault(key, _Storage(pid[1], pid[4]))


def _read_storage(payload) -> _Storage:
    """The legacy ``torch.save`` of one storage: magic number, protocol, system
    info, the storage (by persistent id), its key list, then per key an int64
    element count and the raw little-endian bytes."""
    if not isinstance(payload, bytes):
        raise EdgediffError("a tensor payload in the snapshot is not bytes")
    f, storages = io.BytesIO(payload), {}
    if _PayloadUnpickler(f, storages).load() != LEGACY_MAGIC:
        raise EdgediffError("a tensor payload in the snapshot is not a torch.save stream")
    _PayloadUnpickler(f, storages).load()  # protocol version
    info = _PayloadUnpickler(f, storages).load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise EdgediffError("a tensor payload in the snapshot is not little-endian")
    result = _PayloadUnpickler(f, storages).load()
    keys = _PayloadUnpickler(f, storages).load()
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise EdgediffError("a tensor payload's storage list does not match its storages")
    for key in map(str, keys):
        s = storages[key]
        (count,) = struct.unpack("<q", f.read(8))
        data = f.read(count * torch.empty((), dtype=s.dtype).element_size())
        if count != s.numel or len(data) != count * torch.empty((), dtype=s.dtype).element_size():
            raise EdgediffError("a tensor payload in the snapshot is truncated")
        s.flat = torch.frombuffer(bytearray(data), dtype=s.dtype) if count else \
            torch.empty(0, dtype=s.dtype)
    if not isinstance(result, _Storage):
        raise EdgediffError("a tensor payload in the snapshot holds something else than a storage")
    return result


def read_snapshot(path: str | Path) -> Any:
    """The unpickled snapshot (usually a dict whose ``"ema"`` is the network), with
    every persistent object a ``PersistentRecord``; see the module docstring."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return _SnapshotUnpickler(f).load()
    except _RefusedGlobalError as e:
        raise RefusedFileError(f"{p} references {e}, which no EDM snapshot uses; refused it "
                          f"without running anything") from None
    except EdgediffError as e:
        raise RefusedFileError(f"{p}: {e}") from None
    except OSError as e:
        raise EdgediffError(f"{p} could not be read: {e.strerror or e}") from None
    except Exception as e:  # truncated or corrupt: EOFError, UnpicklingError, struct ...
        raise RefusedFileError(f"{p} is truncated or not an EDM snapshot "
                          f"({type(e).__name__}: {e})"[:300]) from None


def state_dict_of(record, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict ``record``'s module would return: parameters, then buffers
    (minus unset and non-persistent ones), then each child's under ``name.``."""
    state = record.state
    out: dict[str, torch.Tensor] = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise EdgediffError(f"{prefix}{name} in the snapshot is not a tensor")
            out[prefix + name] = value
    for name, child in record.children.items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord | ModuleDictRecord):
            raise EdgediffError(f"submodule {prefix}{name} of the snapshot is not a module record")
        out.update(state_dict_of(child, f"{prefix}{name}."))
    return out
