"""edgediff's native checkpoint: ``NAME.safetensors`` (the raw network's weights)
plus ``NAME.json`` (everything needed to rebuild the denoiser); the JSON keys are
documented in ``docs/checkpoint.md``.

This module makes configs, builds denoisers from them and writes checkpoints;
``LoadedModel`` is what every model reader returns. Reading a checkpoint back is
``edgediff.models.readers.native``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_path
from edgediff.metadata import schedule_from_dict
from edgediff.models.networks import build_network
from edgediff.models.precond import PRECONDITIONERS, DiscretePrecond, Preconditioner
from edgediff.schedules import Schedule

FORMAT, FORMAT_VERSION = "edgediff.checkpoint", 1
REQUIRED = ("architecture", "parameterization", "schedule", "sample_shape")


@dataclass
class LoadedModel:
    """A model ready to sample or export, whatever format it was read from: the
    denoiser D(x, σ) (a preconditioner around the network, ``models/precond.py``),
    its checkpoint config (parameterization, σ range, sample shape, provenance:
    ``docs/checkpoint.md``) and its noise schedule."""

    denoiser: Preconditioner
    config: dict[str, Any]
    schedule: Schedule

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.config["sample_shape"])


def make_config(architecture: str, architecture_args: dict, parameterization: str,
                schedule: Schedule, sample_shape, *, sigma_data: float = 0.5,
                data_range=(-1.0, 1.0), provenance: dict | None = None) -> dict[str, Any]:
    """A checkpoint config; σ_min/σ_max default to the schedule's sampling range. The
    parameterization's own arguments (``parameterization.args``) start empty:
    ``build_denoiser`` fills them from the schedule and ``sigma_data``."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "architecture": {"name": architecture, "args": dict(architecture_args)},
        "parameterization": {"name": parameterization, "args": {}},
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
    elif name == "consistency":  # the boundary condition sits at the model's σ_min
        args.setdefault("sigma_data", config.get("sigma_data", 0.5))
        args.setdefault("sigma_min", config["sigma_min"])
    elif name == "vp":
        for key in ("beta_min", "beta_d"):
            args.setdefault(key, config["schedule"].get(key))
    return cls(net, **args), schedule


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(NAME.safetensors, NAME.json) for NAME, NAME.safetensors or NAME.json."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_checkpoint(path: str | os.PathLike, denoiser: Preconditioner,
                    config: dict[str, Any]) -> tuple[Path, Path]:
    """Write NAME.safetensors and NAME.json atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    weights, cfg = checkpoint_paths(path)
    state = {k: v.detach().contiguous().cpu() for k, v in denoiser.model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, tmp, metadata={"format": FORMAT})
    with atomic_path(cfg) as tmp:
        Path(tmp).write_text(json.dumps(config, indent=1) + "\n")
    return weights, cfg
