"""The default model that ships inside the package: an EDM-preconditioned U-Net on
scikit-learn's 8×8 digits, trained by edgediff's own ``train`` command (the exact
command and seed are in its JSON ``provenance`` and in the README)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from edgediff.errors import EdgediffError
from edgediff.models.checkpoint import LoadedModel
from edgediff.models.readers.native import load_checkpoint

NAME = "digits-edm"
CONDITIONAL = "digits-edm-cond"  # the same U-Net, class-conditional (label dropout 0.2)
CONSISTENCY = "digits-cd"  # NAME consistency-distilled (models/distill.py), 1–4 steps


def bundled_path(name: str = NAME) -> Path:
    """Stem of a bundled checkpoint (NAME.safetensors + NAME.json beside it)."""
    path = Path(str(resources.files("edgediff") / "data" / name))
    if not path.with_name(name + ".safetensors").is_file():
        raise EdgediffError(f"the bundled model {name} is missing from {path.parent}; "
                            f"reinstall edgediff")
    return path


def load_bundled(name: str = NAME) -> LoadedModel:
    return load_checkpoint(bundled_path(name))
