"""One entry point for every model source a user can name: ``resolve_source``
for the names the CLI takes (the shipped models, the exact mixture, or a path in
any format of ``edgediff.models.readers``, whose ``load_model`` reads paths alone)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgediff.errors import EdgediffError
from edgediff.fileio import sha256_of
from edgediff.models.checkpoint import LoadedModel
from edgediff.models.readers import reader_for

SHIPPED = ("bundled", "bundled-cond", "bundled-cd", "mixture2d", "mixture2d-cond", "mixture2d-flow")


def resolve_source(source: str, allow_pickle: bool = False) -> tuple[LoadedModel, str]:
    """(model, sha256 of its weights) for a path a reader reads, 'bundled',
    'bundled-cond' (the class-conditional digits model), 'bundled-cd' (the digits
    model consistency-distilled: docs/distilled.md), 'mixture2d',
    'mixture2d-cond' (its classes are its components) or 'mixture2d-flow' (its
    exact velocity, as a rectified-flow model: docs/flow.md). The exact mixture has
    no weights: its digest is that of its JSON description."""
    if source in ("mixture2d", "mixture2d-cond", "mixture2d-flow"):
        from edgediff.models.analytic import mixture_model

        model = mixture_model(conditional=source == "mixture2d-cond",
                              flow=source == "mixture2d-flow")
        described = model.config["architecture"]["args"]
        if source == "mixture2d-cond":  # not the unconditional one's hash
            described = {**described, "num_classes": model.config["num_classes"]}
        if source == "mixture2d-flow":  # nor the σ-space one's
            described = {**described, "parameterization": "flow"}
        return model, hashlib.sha256(json.dumps(described).encode()).hexdigest()
    from edgediff.models.bundled import CONDITIONAL, CONSISTENCY, NAME, bundled_path

    shipped = {"bundled": NAME, "bundled-cond": CONDITIONAL, "bundled-cd": CONSISTENCY}
    path = bundled_path(shipped[source]) if source in shipped else Path(source)
    reader = reader_for(path)
    return reader.read(path, allow_pickle=allow_pickle), sha256_of(reader.weights(path))


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
