"""From the records of an EDM / EDM2 snapshot to an edgediff denoiser.

The snapshot's network (``["ema"]``) is a preconditioner record around a network
record. Its class picks the parameterization (docs/design.md, "Maths"):

| snapshot class | edgediff | network | σ range |
|---|---|---|---|
| ``VPPrecond`` (EDM) | ``vp`` | ``model_type``: SongUNet, DhariwalUNet | VP's, β from the record |
| ``VEPrecond`` (EDM) | ``ve`` | as above | the record's σ_min, σ_max |
| ``EDMPrecond`` (EDM) | ``edm`` | as above | 0.002 … 80 (EDM's sampling range) |
| ``Precond`` (EDM2) | ``edm`` | the magnitude-preserving UNet | 0.002 … 80 |

``iDDPMPrecond`` is refused with its reason (``IDDPM_REASON``). The network is
rebuilt by edgediff's own modules (``models/edm``) from the record's init kwargs,
and every tensor of the snapshot is loaded strictly into it: a missing,
unexpected or misshapen tensor is an error naming it. EDM2's forced weight
normalisation is folded once here, so the exported graph holds plain weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgediff.errors import EdgediffError, RefusedFileError
from edgediff.models.checkpoint import LoadedModel, make_config
from edgediff.models.networks import one_hot_labels
from edgediff.models.precond import EDMPrecond, VEPrecond, VPPrecond
from edgediff.models.snapshot.unpickle import PersistentRecord, state_dict_of
from edgediff.schedules import EDMSchedule, Schedule, VESchedule, VPSchedule

PRECONDS = ("VPPrecond", "VEPrecond", "EDMPrecond", "Precond")
IDDPM_REASON = (
    "iDDPMPrecond is not supported: its network sees σ only as the index of the nearest of "
    "its M trained levels, so a solver has to step exactly on those levels (EDM's sampler "
    "rounds every grid σ to them), and edgediff's artifact contract has continuous grids "
    "with no such rounding rule")


@dataclass(frozen=True)
class SnapshotModel:
    """What a snapshot holds, found without building anything (``edgediff info``)."""

    class_name: str
    architecture: str
    kwargs: dict[str, Any]
    parameters: int
    label_dim: int
    sample_shape: tuple[int, int, int]
    schedule: Schedule
    encoder: dict[str, Any] | None

    @property
    def parameterization(self) -> str:
        return {"VPPrecond": "vp", "VEPrecond": "ve"}.get(self.class_name, "edm")


def network_record(snapshot: Any) -> PersistentRecord:
    """The preconditioner record of a snapshot: ``snapshot["ema"]``, or the snapshot."""
    record = snapshot.get("ema") if isinstance(snapshot, dict) else snapshot
    if not isinstance(record, PersistentRecord):
        raise RefusedFileError("this pickle holds no EDM network (no 'ema' module record)")
    if record.class_name == "iDDPMPrecond":
        raise RefusedFileError(IDDPM_REASON)
    if record.class_name not in PRECONDS:
        raise RefusedFileError(f"the snapshot's network is a {record.class_name!r}; edgediff "
                            f"rebuilds {', '.join(PRECONDS)}")
    return record


def _attr(record: PersistentRecord, name: str, default):
    """A preconditioner's setting: its resolved attribute, else its init kwarg."""
    return record.state.get(name, record.init_kwargs.get(name, default))


def describe(snapshot: Any) -> SnapshotModel:
    record = network_record(snapshot)
    inner_name = "unet" if record.class_name == "Precond" else "model"
    inner = record.children.get(inner_name)
    if not isinstance(inner, PersistentRecord):
        raise RefusedFileError(f"the {record.class_name} record has no {inner_name!r} network")
    res, ch = int(_attr(record, "img_resolution", 0)), int(_attr(record, "img_channels", 0))
    label_dim = int(_attr(record, "label_dim", 0))
    params = sum(t.numel() for t in state_dict_of(record).values())
    encoder = snapshot.get("encoder") if isinstance(snapshot, dict) else None
    return SnapshotModel(record.class_name, inner.class_name, inner.init_kwargs, params,
                         label_dim, (ch, res, res), _schedule(record), _encoder(encoder))


def _schedule(record: PersistentRecord) -> Schedule:
    if record.class_name == "VPPrecond":
        return VPSchedule(beta_min=float(_attr(record, "beta_min", 0.1)),
                          beta_d=float(_attr(record, "beta_d", 19.9)))
    if record.class_name == "VEPrecond":
        return VESchedule(float(_attr(record, "sigma_min", 0.02)),
                          float(_attr(record, "sigma_max", 100.0)))
    return EDMSchedule()


def _encoder(record) -> dict[str, Any] | None:
    """EDM2's latent encoder as constants for the decoder stage (docs/artifact.md,
    ``latent``): the VAE's name and the per-channel map final = raw·scale + bias.
    A ``StandardRGBEncoder`` (pixel models: uint8 ↔ [−1, 1]) has no latents."""
    if record is None or getattr(record, "class_name", None) == "StandardRGBEncoder":
        return None
    if not isinstance(record, PersistentRecord) or record.class_name != "StabilityVAEEncoder":
        name = getattr(record, "class_name", record)
        raise RefusedFileError(f"the snapshot's encoder is a {name!r}; edgediff knows "
                               f"StabilityVAEEncoder and StandardRGBEncoder")
    values = {}
    for key in ("scale", "bias"):
        value = record.state.get(key)
        value = getattr(value, "array", value)
        try:
            values[key] = [float(v) for v in np.atleast_1d(np.asarray(value, dtype=np.float64))]
        except (TypeError, ValueError):
            raise RefusedFileError(f"the snapshot's encoder has no numeric {key}") from None
    return {"encoder": record.class_name, "vae_name": str(record.state.get("vae_name", "")),
            **values}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return value


class OneHotNetwork(nn.Module):
    """An EDM network, called the edgediff way: ``F(x, c_noise, class_ids)``. The ids
    become one-hot rows inside the graph; the null id (``label_dim``) is the zero row."""

    def __init__(self, net: nn.Module, label_dim: int):
        super().__init__()
        self.net, self.label_dim = net, int(label_dim)

    def forward(self, x, c_noise, class_labels=None):
        onehot = None
        if self.label_dim:
            if class_labels is None:
                raise EdgediffError("this network is class-conditional: give class_labels")
            onehot = one_hot_labels(class_labels, self.label_dim).to(x.dtype)
        return self.net(x, c_noise, onehot)


def _network(record: PersistentRecord) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """edgediff's module for the record's network, and the tensors it must take."""
    state = state_dict_of(record)
    if record.class_name == "Precond":
        from edgediff.models.edm.edm2 import EDM2Network

        kwargs = dict(record.init_kwargs)
        for key in ("use_fp16", "sigma_data"):
            kwargs.pop(key, None)
        return _build(EDM2Network, kwargs, "EDM2 Precond"), state
    name = str(_attr(record, "model_type", "DhariwalUNet"))
    if name == "SongUNet":
        from edgediff.models.edm.songunet import SongUNet as Network
    elif name == "DhariwalUNet":
        from edgediff.models.edm.dhariwal import DhariwalUNet as Network
    else:
        raise RefusedFileError(f"model_type {name!r} is not an EDM network edgediff rebuilds "
                            f"(SongUNet, DhariwalUNet)")
    inner = record.children["model"]
    tensors = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    extra = sorted(k for k in state if not k.startswith("model."))
    if extra:
        raise RefusedFileError(f"the {record.class_name} record holds tensors outside its "
                            f"network: {', '.join(extra[:3])}")
    return _build(Network, inner.init_kwargs, name), tensors


def _build(cls, kwargs: dict, what: str) -> nn.Module:
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise RefusedFileError(f"the snapshot's {what} arguments do not fit: {e}") from None


def load_strict(net: nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Every snapshot tensor used, every module tensor given, every shape equal."""
    own = net.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    wrong = [f"{k} is {tuple(tensors[k].shape)} in the snapshot, {tuple(own[k].shape)} in the "
             f"network" for k in own if k in tensors and tensors[k].shape != own[k].shape]
    problems = ([f"missing {', '.join(missing[:4])}"] if missing else []) + \
               ([f"unexpected {', '.join(extra[:4])}"] if extra else []) + wrong[:3]
    if problems:
        raise RefusedFileError(f"the {what} weights do not fit its architecture: "
                            f"{'; '.join(problems)}")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=True)


def build(snapshot: Any, *, source: str = "") -> LoadedModel:
    """The snapshot as a LoadedModel: edgediff's network with the snapshot's weights
    (EDM2's weight normalisation folded), inside the matching preconditioner."""
    info = describe(snapshot)
    record = network_record(snapshot)
    net, tensors = _network(record)
    load_strict(net, tensors, f"{record.class_name}/{info.architecture}")
    if record.class_name == "Precond":
        from edgediff.models.edm.edm2 import fold_weight_norm

        fold_weight_norm(net)
    network = OneHotNetwork(net, info.label_dim).float().eval()
    sigma_data = float(_attr(record, "sigma_data", 0.5))
    if info.parameterization == "vp":
        s = info.schedule
        denoiser = VPPrecond(network, beta_min=s.beta_min, beta_d=s.beta_d,
                             M=int(_attr(record, "M", 1000)))
    elif info.parameterization == "ve":
        denoiser = VEPrecond(network)
    else:
        denoiser = EDMPrecond(network, sigma_data=sigma_data)
    provenance = {"format": "nvlabs-edm-snapshot", "source": source,
                  "class": record.class_name, "network": info.architecture,
                  "use_fp16": bool(_attr(record, "use_fp16", False)),
                  "label_dropout": float(info.kwargs.get("label_dropout", 0) or 0)}
    if info.encoder:
        provenance["latent"] = info.encoder
    config = make_config(info.architecture, _jsonable(info.kwargs), info.parameterization,
                         info.schedule, info.sample_shape, sigma_data=sigma_data,
                         provenance=provenance)
    if info.label_dim:
        config["num_classes"], config["null_label"] = info.label_dim, info.label_dim
    return LoadedModel(denoiser.eval(), config, info.schedule)


def sigma_range(info: SnapshotModel) -> tuple[float, float]:
    s = info.schedule
    return float(s.sigma_min), float(s.sigma_max)


def finite_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs with non-finite floats as strings (JSON has no inf)."""
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in _jsonable(kwargs).items()}
