"""Reader of edgediff's native checkpoint: ``NAME.safetensors`` plus ``NAME.json``
(``docs/checkpoint.md``), named by NAME, NAME.safetensors or NAME.json.

Reading never unpickles. A ``.pt`` / ``.pth`` / ``.pkl`` / ``.ckpt`` file is
refused unless the caller opts in with ``allow_pickle=True``, and even then it
goes through ``torch.load(weights_only=True)``, which builds tensors only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgediff.errors import EdgediffError
from edgediff.models.checkpoint import FORMAT, LoadedModel, build_denoiser, checkpoint_paths

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
NATIVE_SUFFIXES = ("", ".safetensors", ".json")
DESCRIPTION = (f"an edgediff checkpoint (NAME.safetensors with NAME.json beside it; with "
               f"--allow-pickle, a {', '.join(PICKLE_SUFFIXES)} file)")


def can_read(path: Path) -> bool:
    """A file (not a folder) with a checkpoint's or a pickle's suffix that is there."""
    if path.is_dir():
        return False
    if path.suffix in PICKLE_SUFFIXES:
        return path.exists()
    return path.suffix in NATIVE_SUFFIXES and (path.exists()
                                               or checkpoint_paths(path)[0].exists())


def read(path: Path, *, allow_pickle: bool = False) -> LoadedModel:
    return load_checkpoint(path, allow_pickle=allow_pickle)


def weights(path: Path) -> Path:
    """The weights file: NAME.safetensors, or the pickle itself."""
    return checkpoint_paths(path)[0] if path.suffix in ("", ".json") else path


def load_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> LoadedModel:
    """Rebuild the denoiser from a native checkpoint (or, on request, a pickle)."""
    p = Path(path)
    if p.suffix in PICKLE_SUFFIXES:
        state, config = _load_pickle(p, allow_pickle)
    else:
        weights_file, cfg = checkpoint_paths(p)
        for f in (weights_file, cfg):
            if not f.is_file():
                raise EdgediffError(f"{f} does not exist; a native checkpoint is NAME.safetensors "
                                    f"plus NAME.json")
        config = _read_json(cfg)
        state = _read_safetensors(weights_file)
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
