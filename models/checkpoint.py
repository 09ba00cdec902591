"""edgediff's native checkpoint: ``NAME.safetensors`` (the raw network's weights)
plus ``NAME.json`` (everything needed to rebuild the denoiser).

Loading never unpickles. A ``.pt`` / ``.pth`` / ``.pkl`` / ``.ckpt`` file is
refused unless the caller opts in with ``allow_pickle=True``, and even then it
goes through ``torch.load(weights_only=True)``, which builds tensors only.
The JSON keys are documented in ``docs/checkpoint.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_path
from edgediff.metadata import schedule_from_dict
from edgediff.models.networks import build_network
from edgediff.models.precond import PRECONDITIONERS, DiscretePrecond, Preconditioner
from edgediff.schedules import Schedule

FORMAT, FORMAT_VERSION = "edgediff.checkpoint", 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
REQUIRED = ("architecture", "parameterization", "schedule", "sample_shape")


@dataclass
class LoadedModel:
    denoiser: Preconditioner
    config: dict[str, Any]
    schedule: Schedule

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.config["sample_shape"])


def make_config(architecture: str, architecture_args: dict, parameterization: str,
                schedule: Schedule, sample_shape, *, sigma_data: float = 0.5,
                data_range=(-1.0, 1.0), provenance: dict | None = None,
                parameterization_args: dict | None = None) -> dict[str, Any]:
    """A checkpoint config; σ_min/σ_max default to the schedule's sampling range."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "architecture": {"name": architecture, "args": dict(architecture_args)},
        "parameterization": {"name": parameterization, "args": dict(parameterization_args or {})},
        "schedule": schedule.to_dict(),
        "sigma_min": schedule.sigma_min, "sigma_max": schedule.sigma_max,
        "sigma_data": float(sigma_data),
        "sample_shape": [int(n) for n in sample_shape],
        "data_range": [float(v) for v in data_range],
        "provenance": dict(provenance or {}),
    }


def build_denoiser(config: dict[str, Any]) -> tuple[Preconditioner, Schedule]:
    """An untrained denoiser (preconditioner around a fresh network) from a config."""
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise EdgediffError(f"checkpoint config lacks {', '.join(missing)}")
    if config.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise EdgediffError(f"checkpoint format version {config['format_version']} is newer than "
                            f"this edgediff reads ({FORMAT_VERSION}); upgrade edgediff")
    arch, par = config["architecture"], config["parameterization"]
    net = build_network(arch.get("name"), **arch.get("args", {}))
    schedule = schedule_from_dict(config["schedule"])
    name = par.get("name")
    if name not in PRECONDITIONERS:
        raise EdgediffError(f"unknown parameterization {name!r}; choose one of "
                            f"{', '.join(PRECONDITIONERS)}")
    args = dict(par.get("args", {}))
    cls = PRECONDITIONERS[name]
    if issubclass(cls, DiscretePrecond):
        if not isinstance(schedule, DiscreteSchedule):
            raise EdgediffError(f"parameterization {name!r} needs a discrete ('ddpm') schedule, "
                                f"not {schedule.name!r}")
        args["alphas_cumprod"] = schedule.alphas_cumprod
    elif name == "edm":
        args.setdefault("sigma_data", config.get("sigma_data", 0.5))
    elif name == "vp":
        for key in ("beta_min", "beta_d"):
            args.setdefault(key, config["schedule"].get(key))
    return cls(net, **args), schedule


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_checkpoint(path: str | os.PathLike, denoiser: Preconditioner,
                    config: dict[str, Any]) -> tuple[Path, Path]:
    """Write NAME.safetensors and NAME.json atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    weights, cfg = _paths(path)
    state = {k: v.detach().contiguous().cpu() for k, v in denoiser.model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, tmp, metadata={"format": FORMAT})
    with atomic_path(cfg) as tmp:
        Path(tmp).write_text(json.dumps(config, indent=1) + "\n")
    return weights, cfg


def load_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> LoadedModel:
    """Rebuild the denoiser from a native checkpoint (or, on request, a pickle)."""
    p = Path(path)
    if p.suffix in PICKLE_SUFFIXES:
        state, config = _load_pickle(p, allow_pickle)
    else:
        weights, cfg = _paths(p)
        for f in (weights, cfg):
            if not f.is_file():
                raise EdgediffError(f"{f} does not exist; a native checkpoint is NAME.safetensors "
                                    f"plus NAME.json")
        config = _read_json(cfg)
        state = _read_safetensors(weights)
    denoiser, schedule = build_denoiser(config)
    _load_state(denoiser.model, state, p)
    denoiser.eval()
    return LoadedModel(denoiser, config, schedule)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgediffError(f"{path} is not a readable JSON config: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise EdgediffError(f"{path} is not an edgediff checkpoint config (no \"format\": "
                            f"\"{FORMAT}\")")
    return config


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise EdgediffError(f"{path} is truncated or not a safetensors file ({e})") from None


def _load_pickle(path: Path, allow_pickle: bool):
    if not allow_pickle:
        raise EdgediffError(
            f"{path} is a pickle, and unpickling runs code; edgediff loads .safetensors + .json "
            f"only. If you trust this file, opt in with --allow-pickle (allow_pickle=True); it "
            f"is then read with torch.load(weights_only=True)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EdgediffError(f"{path} could not be read with torch.load(weights_only=True): "
                            f"{e}") from None
    if isinstance(obj, dict) and "state_dict" in obj and "config" in obj:
        return obj["state_dict"], obj["config"]
    cfg = path.with_suffix(".json")
    if isinstance(obj, dict) and cfg.is_file():
        return obj, _read_json(cfg)
    raise EdgediffError(f"{path} holds neither {{'config', 'state_dict'}} nor a state dict "
                        f"with {cfg.name} beside it")


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    problems = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
               ([f"unexpected {', '.join(extra[:3])}"] if extra else []) + wrong[:3]
    if problems:
        raise EdgediffError(f"the weights in {source} do not fit the network its config "
                            f"describes: {'; '.join(problems)}")
    net.load_state_dict(state)
