"""The default model that ships inside the package: an EDM-preconditioned U-Net on
scikit-learn's 8×8 digits, trained by edgediff's own ``train`` command (the exact
command and seed are in its JSON ``provenance`` and in the README)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from edgediff.errors import EdgediffError
from edgediff.models.checkpoint import LoadedModel, load_checkpoint

NAME = "digits-edm"


def bundled_path() -> Path:
    """Stem of the bundled checkpoint (NAME.safetensors + NAME.json beside it)."""
    path = Path(str(resources.files("edgediff") / "data" / NAME))
    if not path.with_name(NAME + ".safetensors").is_file():
        raise EdgediffError(f"the bundled model is missing from {path.parent}; reinstall edgediff")
    return path


def load_bundled() -> LoadedModel:
    return load_checkpoint(bundled_path())
