"""One entry point for every model source a user can name."""

from __future__ import annotations

from pathlib import Path

from edgediff.errors import EdgediffError
from edgediff.models.checkpoint import PICKLE_SUFFIXES, LoadedModel, load_checkpoint


def load_model(path: str | Path, *, allow_pickle: bool = False) -> LoadedModel:
    """A native checkpoint (NAME, NAME.safetensors or NAME.json), a local diffusers
    folder, or — only with ``allow_pickle`` — a pickled ``{config, state_dict}``."""
    p = Path(path)
    if p.is_dir():
        from edgediff.models.diffusers_import import load_diffusers

        return load_diffusers(p)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    if not (p.exists() or stem.with_name(stem.name + ".safetensors").exists()):
        raise EdgediffError(f"{p} does not exist; give a checkpoint (NAME.safetensors with "
                            f"NAME.json beside it) or a diffusers folder")
    if p.suffix in PICKLE_SUFFIXES or p.suffix in ("", ".safetensors", ".json"):
        return load_checkpoint(p, allow_pickle=allow_pickle)
    raise EdgediffError(f"{p} is not a model edgediff reads: expected .safetensors + .json, a "
                        f"diffusers folder, or (with --allow-pickle) {', '.join(PICKLE_SUFFIXES)}")
