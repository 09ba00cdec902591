"""The artifact contract (DESIGN.md §4): what an exported ``model.onnx`` says
about itself in its ``metadata_props``, so the runtime needs nothing else.

Every key starts with ``edgediff.``; values are strings (JSON for structured
ones). ``edgediff.format_version`` versions the set; the keys are documented in
``docs/artifact.md``. NumPy-only: the runtime reads these through ONNX
Runtime's ``custom_metadata_map`` without importing onnx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgediff.errors import EdgediffError
from edgediff.schedules import Schedule, schedule_from_dict

PREFIX = "edgediff."
FORMAT_VERSION = 1
OPTIONAL_KEYS = ("reference",)
KEYS = ("format_version", "parameterization", "schedule", "sigma_min", "sigma_max",
        "sigma_data", "sample_shape", "data_range", "source_sha256", "default_sampler",
        "precision")


@dataclass(frozen=True)
class ArtifactInfo:
    parameterization: str
    schedule: Schedule
    sigma_min: float
    sigma_max: float
    sigma_data: float
    sample_shape: tuple[int, ...]
    data_range: tuple[float, float]
    source_sha256: str
    default_sampler: dict[str, Any]
    precision: str
    reference: dict[str, Any] | None = None  # what quality is measured against (optional)

    def to_props(self) -> dict[str, str]:
        values = {
            "format_version": str(FORMAT_VERSION),
            "parameterization": self.parameterization,
            "schedule": json.dumps(self.schedule.to_dict()),
            "sigma_min": repr(float(self.sigma_min)),
            "sigma_max": repr(float(self.sigma_max)),
            "sigma_data": repr(float(self.sigma_data)),
            "sample_shape": json.dumps(list(self.sample_shape)),
            "data_range": json.dumps(list(self.data_range)),
            "source_sha256": self.source_sha256,
            "default_sampler": json.dumps(self.default_sampler),
            "precision": self.precision,
        }
        if self.reference is not None:
            values["reference"] = json.dumps(self.reference)
        return {PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "the model") -> ArtifactInfo:
        """Parse ``edgediff.*`` metadata; a clear error when it is absent or malformed."""
        mine = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not mine:
            raise EdgediffError(f"{where} carries no edgediff metadata; export it with "
                                f"'edgediff export', which records the schedule and "
                                f"preconditioning the runtime needs, or describe it with "
                                f"--metadata FILE.json (keys in docs/artifact.md)")
        missing = [k for k in KEYS if k not in mine]
        if missing:
            names = ", ".join(PREFIX + k for k in missing)
            raise EdgediffError(f"{where} lacks the metadata {names}")
        version = int(mine["format_version"])
        if version > FORMAT_VERSION:
            raise EdgediffError(f"{where} has artifact format {version}; this edgediff reads up "
                                f"to {FORMAT_VERSION}: upgrade edgediff")
        try:
            return cls(
                parameterization=mine["parameterization"],
                schedule=schedule_from_dict(json.loads(mine["schedule"])),
                sigma_min=float(mine["sigma_min"]), sigma_max=float(mine["sigma_max"]),
                sigma_data=float(mine["sigma_data"]),
                sample_shape=tuple(int(n) for n in json.loads(mine["sample_shape"])),
                data_range=tuple(float(v) for v in json.loads(mine["data_range"])),
                source_sha256=mine["source_sha256"],
                default_sampler=json.loads(mine["default_sampler"]),
                precision=mine["precision"],
                reference=json.loads(mine["reference"]) if "reference" in mine else None,
            )
        except (ValueError, TypeError, KeyError) as e:
            raise EdgediffError(f"{where} has malformed edgediff metadata: {e}") from None


OVERRIDE_DEFAULTS = {"format_version": FORMAT_VERSION, "source_sha256": "unknown",
                     "default_sampler": {"solver": "heun", "steps": 18}, "precision": "fp32"}


def props_with_overrides(props: dict[str, str], overrides: dict[str, Any] | None
                         ) -> dict[str, str]:
    """A graph's metadata with the user's overrides on top (keys with or without the
    ``edgediff.`` prefix; JSON values). For ONNX files that follow the contract's
    inputs and outputs but were not written by ``edgediff export``."""
    if not overrides:
        return dict(props)
    if not isinstance(overrides, dict):
        raise EdgediffError("metadata overrides must be a JSON object of key: value")
    given = {k.removeprefix(PREFIX): v for k, v in overrides.items()}
    unknown = sorted(set(given) - set(KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise EdgediffError(f"unknown metadata keys {', '.join(unknown)}; the keys are "
                            f"{', '.join(KEYS + OPTIONAL_KEYS)}")
    has_any = any(k.startswith(PREFIX) for k in props)
    merged = {k: v for k, v in OVERRIDE_DEFAULTS.items() if not has_any} | given
    out = dict(props)
    for key, value in merged.items():
        out[PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
    return out
