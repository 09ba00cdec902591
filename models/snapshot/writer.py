"""Write edgediff's own EDM-architecture modules in NVlabs' snapshot format.

Tests and benchmarks need snapshots of configurations NVlabs never published at
toy size (VE NCSN++, unconditional EDM2, CIFAR-10 DDPM++ at full width with
random weights). This writes them the way EDM's training loop does: a pickled
dict whose ``"ema"`` is the preconditioner, every module a call of
``torch_utils.persistence._reconstruct_persistent_obj`` on its record
(``type``, ``version``, ``module_src``, ``class_name``, ``state``), ModuleDicts
as ``torch.nn.modules.container.ModuleDict``, and tensors pickled by torch itself
(``_rebuild_tensor_v2`` over ``torch.storage._load_from_bytes`` payloads). The
one difference: a submodule's record carries empty init kwargs (readers rebuild
from the preconditioner's and the network's, which are written in full).

The persistence function is a name only: while writing, a stand-in module named
``torch_utils.persistence`` is registered so that pickle can refer to it, and
removed afterwards.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgediff.fileio import atomic_path

PERSISTENCE = "torch_utils.persistence"
VERSION = 6  # EDM's persistence format version
SOURCE = "# written by edgediff's snapshot writer; rebuild from class_name and init kwargs\n"


def _reconstruct_persistent_obj(meta):  # the name pickle records; never called here
    raise RuntimeError("edgediff's snapshot writer does not read snapshots")


@contextlib.contextmanager
def _persistence_module():
    parent, child = types.ModuleType("torch_utils"), types.ModuleType(PERSISTENCE)
    _reconstruct_persistent_obj.__module__ = PERSISTENCE
    child._reconstruct_persistent_obj = _reconstruct_persistent_obj
    parent.persistence = child
    saved = {name: sys.modules.get(name) for name in ("torch_utils", PERSISTENCE)}
    sys.modules.update({"torch_utils": parent, PERSISTENCE: child})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _Record:
    """A module as EDM's persistence pickles it."""

    def __init__(self, class_name: str, state: dict[str, Any]):
        self.class_name, self.state = class_name, state

    def __reduce__(self):
        meta = {"type": "class", "version": VERSION, "module_src": SOURCE,
                "class_name": self.class_name, "state": self.state}
        return _reconstruct_persistent_obj, (meta,)


class _ModuleDict:
    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return nn.ModuleDict, (), self.state


def module_state(module: nn.Module, init_kwargs: dict | None = None,
                 attributes: dict | None = None) -> dict[str, Any]:
    """A module's ``__dict__`` as EDM pickles it, children as records."""
    children = OrderedDict((name, record_of(child)) for name, child in module._modules.items())
    return {"training": False,
            "_parameters": OrderedDict((k, None if v is None else nn.Parameter(
                v.detach().cpu().contiguous().clone(), requires_grad=v.requires_grad))
                for k, v in module._parameters.items()),
            "_buffers": OrderedDict((k, None if v is None else v.detach().cpu().contiguous()
                                     .clone()) for k, v in module._buffers.items()),
            "_non_persistent_buffers_set": set(module._non_persistent_buffers_set),
            "_modules": children, **(attributes or {}),
            "_init_args": (), "_init_kwargs": dict(init_kwargs or {})}


def record_of(module: nn.Module, class_name: str | None = None,
              init_kwargs: dict | None = None) -> Any:
    if isinstance(module, nn.ModuleDict):
        return _ModuleDict(module_state(module))
    return _Record(class_name or type(module).__name__, module_state(module, init_kwargs))


def write_snapshot(path: str | Path, ema: _Record, *, encoder: _Record | None = None) -> Path:
    """Pickle ``{"ema": ema, "loss_fn": None, "augment_pipe": None, "dataset_kwargs":
    {}}`` (plus ``"encoder"``) to ``path``, atomically."""
    data = {"ema": ema, "loss_fn": None, "augment_pipe": None, "dataset_kwargs": {}}
    if encoder is not None:
        data["encoder"] = encoder
    p = Path(path)
    with _persistence_module(), atomic_path(p) as tmp, open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return p


def edm_record(precond: str, network: nn.Module, network_kwargs: dict,
               precond_kwargs: dict | None = None) -> _Record:
    """An EDM preconditioner (``VPPrecond``, ``VEPrecond``, ``EDMPrecond``) around
    ``network`` (edgediff's SongUNet or DhariwalUNet, built from ``network_kwargs``)."""
    kw = dict(network_kwargs)
    top = {"img_resolution": kw.pop("img_resolution"), "img_channels": kw.pop("in_channels"),
           "label_dim": kw.pop("label_dim", 0), "model_type": type(network).__name__,
           **(precond_kwargs or {}), **{k: v for k, v in kw.items() if k != "out_channels"}}
    state = module_state(nn.Module(), top, {**(precond_kwargs or {})})
    state["_modules"] = OrderedDict(model=record_of(network, init_kwargs=network_kwargs))
    return _Record(precond, state)


def edm2_record(network: nn.Module, precond_kwargs: dict) -> _Record:
    """EDM2's ``Precond`` whose children are ``network``'s (edgediff's EDM2Network:
    ``unet``, ``logvar_fourier``, ``logvar_linear``); ``precond_kwargs`` are
    Precond's init kwargs (img_resolution, img_channels, label_dim, unet kwargs)."""
    return _Record("Precond", module_state(network, precond_kwargs,
                                           {"sigma_data": precond_kwargs.get("sigma_data", 0.5)}))


def vae_encoder_record(vae_name: str = "stabilityai/sd-vae-ft-mse",
                       raw_mean=(5.81, 3.25, 0.12, -2.15), raw_std=(4.17, 4.62, 3.71, 3.28),
                       final_mean: float = 0.0, final_std: float = 0.5) -> _Record:
    """EDM2's ``StabilityVAEEncoder`` as its snapshots hold it: the VAE's name and,
    as float32 arrays, the map final = raw·scale + bias with scale = final_std/raw_std
    and bias = final_mean − raw_mean·scale (defaults: EDM2's ImageNet-512 values)."""
    import numpy as np

    scale = np.float32(final_std) / np.asarray(raw_std, dtype=np.float32)
    bias = np.float32(final_mean) - np.asarray(raw_mean, dtype=np.float32) * scale
    state = {"vae_name": vae_name, "scale": scale, "bias": bias, "batch_size": 8,
             "_vae": None, "_init_args": (), "_init_kwargs": {"vae_name": vae_name}}
    return _Record("StabilityVAEEncoder", state)


def randomize(module: nn.Module, seed: int = 0, scale: float = 0.2) -> nn.Module:
    """Perturb every floating parameter (zero-initialised output layers included) so
    that the network's output depends on all of them; buffers stay as built."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module
