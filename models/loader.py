"""One entry point for every model source a user can name: ``resolve_source``
for the names the CLI takes (a checkpoint, a diffusers folder, the shipped
models, the exact mixture), ``load_model`` for paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgediff.errors import EdgediffError
from edgediff.fileio import sha256_of
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


SHIPPED = ("bundled", "bundled-cond", "mixture2d", "mixture2d-cond")


def resolve_source(source: str, allow_pickle: bool = False) -> tuple[LoadedModel, str]:
    """(model, sha256 of its weights) for a checkpoint, a diffusers folder, 'bundled',
    'bundled-cond' (the class-conditional digits model), 'mixture2d' or
    'mixture2d-cond' (its classes are its components). The exact mixture has no
    weights: its digest is that of its JSON description."""
    if source in ("mixture2d", "mixture2d-cond"):
        from edgediff.models.analytic import mixture_model

        model = mixture_model(conditional=source == "mixture2d-cond")
        described = model.config["architecture"]["args"]
        if source == "mixture2d-cond":  # not the unconditional one's hash
            described = {**described, "num_classes": model.config["num_classes"]}
        return model, hashlib.sha256(json.dumps(described).encode()).hexdigest()
    from edgediff.models.bundled import CONDITIONAL, bundled_path

    path = bundled_path() if source == "bundled" else bundled_path(CONDITIONAL) \
        if source == "bundled-cond" else Path(source)
    model = load_model(path, allow_pickle=allow_pickle)
    weights = path if path.is_dir() or path.suffix not in ("", ".json") else \
        path.with_name(path.with_suffix("").name + ".safetensors")
    return model, sha256_of(weights)


def find_shipped_source(source_sha256: str) -> str | None:
    """The name of the shipped model with this digest, or None."""
    for name in SHIPPED:
        try:
            _, digest = resolve_source(name)
        except EdgediffError:  # not shipped with this install
            continue
        if digest == source_sha256:
            return name
    return None
