"""The artifact contract (DESIGN.md §4): what an exported ``model.onnx`` says
about itself in its ``metadata_props``, so the runtime needs nothing else.

Every key starts with ``edgediff.``; values are strings (JSON for structured
ones). ``edgediff.format_version`` versions the set; the keys are documented in
``docs/artifact.md``. NumPy-only: the runtime reads these through ONNX
Runtime's ``custom_metadata_map`` without importing onnx.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgediff.errors import EdgediffError
from edgediff.schedules import Schedule, schedule_from_dict

PREFIX = "edgediff."
# 2: optional ``conditioning`` (class labels, guidance). 3: ``default_sampler`` is named
# ``default_solver``, like everything else (the old name is still read). 1 and 2 still load.
FORMAT_VERSION = 3
RENAMED = {"default_sampler": "default_solver"}  # old key -> key
OPTIONAL_KEYS = ("reference", "conditioning", "calibration")
KEYS = ("format_version", "parameterization", "schedule", "sigma_min", "sigma_max",
        "sigma_data", "sample_shape", "data_range", "source_sha256", "default_solver",
        "precision")
PARAMETERIZATIONS = ("edm", "vp", "ve", "epsilon", "v_prediction", "sample", "analytic")
PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("trajectory", "noise", "single_sigma")
REFERENCE_KINDS = ("dataset", "gaussian_mixture")


class MetadataError(EdgediffError):
    """One metadata value is not allowed: names the key, the value and what is."""

    def __init__(self, key: str, value: Any, allowed: str):
        # a string as it is, unless it holds control characters (a message is one line)
        shown = (value if isinstance(value, str) and value.isprintable()
                 else json.dumps(value, default=repr))
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{PREFIX}{key} = {shown} is not allowed: {allowed}")
        self.key = key


def _finite(key: str, value: Any, *, positive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or (positive and v <= 0):
        raise MetadataError(key, value, "a finite number" + (" > 0" if positive else ""))
    return v


def _json(key: str, text: Any, kind: type, allowed: str) -> Any:
    """The JSON value of a metadata string, of the given type."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        raise MetadataError(key, text, f"{allowed} (it is not valid JSON)") from None
    if not isinstance(value, kind):
        raise MetadataError(key, text, allowed)
    return value


def _shape(text: Any) -> tuple[int, ...]:
    allowed = "a non-empty JSON list of positive integers, e.g. [1, 8, 8]"
    dims = _json("sample_shape", text, list, allowed)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                            for d in dims):
        raise MetadataError("sample_shape", text, allowed)
    return tuple(dims)


def _data_range(text: Any) -> tuple[float, float]:
    allowed = "a JSON list [lo, hi] of two finite numbers with lo < hi"
    pair = _json("data_range", text, list, allowed)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int | float)
                             or not math.isfinite(v) for v in pair) or not pair[0] < pair[1]:
        raise MetadataError("data_range", text, allowed)
    return float(pair[0]), float(pair[1])


def _schedule(text: Any) -> Schedule:
    d = _json("schedule", text, dict, "a JSON object with the schedule's name and parameters")
    try:
        return schedule_from_dict(d)
    except EdgediffError as e:
        raise MetadataError("schedule", text, str(e)) from None
    except (TypeError, ValueError, OverflowError):
        raise MetadataError("schedule", text, "the parameters of Schedule.to_dict(): finite "
                            "numbers (a discrete schedule: its alphas_cumprod table)") from None


def _version(text: Any) -> int:
    allowed = f"an integer from 1 to {FORMAT_VERSION}"
    try:
        version = int(text)
    except (TypeError, ValueError):
        raise MetadataError("format_version", text, allowed) from None
    if isinstance(text, bool) or str(version) != str(text).strip() or version < 1:
        raise MetadataError("format_version", text, allowed)
    if version > FORMAT_VERSION:
        raise MetadataError("format_version", text, f"this edgediff reads formats up to "
                                                     f"{FORMAT_VERSION}; upgrade edgediff")
    return version


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise MetadataError(key, value, "one of " + ", ".join(choices))
    return value


def _sha(text: Any) -> str:
    if not isinstance(text, str) or not (text == "unknown" or (
            len(text) == 64 and all(c in "0123456789abcdef" for c in text))):
        raise MetadataError("source_sha256", text, "64 lowercase hex digits, or unknown")
    return text


@dataclass(frozen=True)
class ArtifactInfo:
    """The parsed metadata. Made only through ``from_props`` or by export; either
    way every value is checked (``__post_init__``), so a solver never meets a
    value the contract does not allow."""

    parameterization: str
    schedule: Schedule
    sigma_min: float
    sigma_max: float
    sigma_data: float
    sample_shape: tuple[int, ...]
    data_range: tuple[float, float]
    source_sha256: str
    default_solver: dict[str, Any]
    precision: str
    reference: dict[str, Any] | None = None  # what quality is measured against (optional)
    conditioning: dict[str, Any] | None = None  # class-conditional graphs (optional, format 2)
    calibration: dict[str, Any] | None = None  # int8 graphs: how they were calibrated (optional)

    def __post_init__(self):
        _choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        lo = _finite("sigma_min", self.sigma_min, positive=True)
        hi = _finite("sigma_max", self.sigma_max, positive=True)
        if not lo < hi:
            raise EdgediffError(f"{PREFIX}sigma_min = {lo!r} and {PREFIX}sigma_max = {hi!r} are "
                                f"not allowed together: need sigma_min < sigma_max")
        _finite("sigma_data", self.sigma_data, positive=True)
        _shape(list(self.sample_shape))
        _data_range(list(self.data_range))
        _sha(self.source_sha256)
        _choice("precision", self.precision, PRECISIONS)
        self._check_default_solver()
        if self.reference is not None:
            self._check_reference()
        if self.conditioning is not None:
            self._check_conditioning()
        if self.calibration is not None:
            c = self.calibration
            if not isinstance(c, dict) or c.get("method") not in CALIBRATION_METHODS:
                raise MetadataError("calibration", c, 'a JSON object whose "method" is one of '
                                    + ", ".join(CALIBRATION_METHODS))

    def _check_default_solver(self) -> None:
        """The default solver must be one this build runs, on a grid inside the
        model's σ range: otherwise the model could be loaded but not sampled."""
        from edgediff.grids import settings_grid
        from edgediff.solvers import SolverSettings

        d = self.default_solver
        allowed = ('a JSON object {"solver": NAME, "steps": N, ...options} naming a known '
                   'solver with valid options')
        if not isinstance(d, dict) or "solver" not in d:
            raise MetadataError("default_solver", d, allowed)
        try:
            settings_grid(self, SolverSettings.resolve(self))
        except EdgediffError as e:
            raise MetadataError("default_solver", d, str(e)) from None

    def _check_conditioning(self) -> None:
        c = self.conditioning
        allowed = ('a JSON object {"num_classes": K ≥ 1, "null_label": an id in 0…K (the '
                   'unconditional pass), "guidance_input": true or false}')
        if not isinstance(c, dict) or set(c) - {"num_classes", "null_label", "guidance_input"}:
            raise MetadataError("conditioning", c, allowed)
        k, null = c.get("num_classes"), c.get("null_label")
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (k, null))
        if not ints or k < 1 or not 0 <= null <= k \
                or not isinstance(c.get("guidance_input", False), bool):
            raise MetadataError("conditioning", c, allowed)

    @property
    def num_classes(self) -> int:
        """0 for an unconditional model."""
        return int(self.conditioning["num_classes"]) if self.conditioning else 0

    @property
    def null_label(self) -> int | None:
        return int(self.conditioning["null_label"]) if self.conditioning else None

    @property
    def guidance_input(self) -> bool:
        """The graph takes ``guidance`` and doubles the batch inside (export --guidance)."""
        return bool(self.conditioning and self.conditioning.get("guidance_input", False))

    def _check_reference(self) -> None:
        ref = self.reference
        if not isinstance(ref, dict) or ref.get("kind") not in REFERENCE_KINDS:
            raise MetadataError("reference", ref, 'a JSON object whose "kind" is one of '
                                + ", ".join(REFERENCE_KINDS))
        if ref["kind"] == "gaussian_mixture":
            from edgediff.mixture import GaussianMixture

            try:
                mixture = GaussianMixture.from_dict(ref.get("mixture"))
            except EdgediffError as e:
                raise MetadataError("reference", ref, str(e)) from None
            if (mixture.dim,) != tuple(self.sample_shape):
                raise MetadataError("reference", ref, f"a mixture in the sample shape's "
                                                      f"{tuple(self.sample_shape)} dimensions")
        elif not isinstance(ref.get("name"), str):
            raise MetadataError("reference", ref, 'a dataset reference names it: '
                                                  '{"kind": "dataset", "name": "digits"}')

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
            "default_solver": json.dumps(self.default_solver),
            "precision": self.precision,
        }
        if self.reference is not None:
            values["reference"] = json.dumps(self.reference)
        if self.conditioning is not None:
            values["conditioning"] = json.dumps(self.conditioning)
        if self.calibration is not None:
            values["calibration"] = json.dumps(self.calibration)
        return {PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "the model") -> ArtifactInfo:
        """Parse and check ``edgediff.*`` metadata. Anything absent, malformed or out
        of range is refused with one line naming the key, the value and what is
        allowed (docs/artifact.md)."""
        if not isinstance(props, dict):
            raise EdgediffError(f"{where}: metadata must be a mapping of key: value")
        mine = _renamed({k[len(PREFIX):]: v for k, v in props.items()
                         if isinstance(k, str) and k.startswith(PREFIX)})
        if not mine:
            raise EdgediffError(f"{where} carries no edgediff metadata; export it with "
                                f"'edgediff export', which records the schedule and "
                                f"preconditioning the runtime needs, or describe it with "
                                f"--metadata FILE.json (keys in docs/artifact.md)")
        missing = [k for k in KEYS if k not in mine]
        if missing:
            names = ", ".join(PREFIX + k for k in missing)
            raise EdgediffError(f"{where} lacks the metadata {names}")
        try:
            _version(mine["format_version"])
            reference = conditioning = calibration = None
            if "calibration" in mine:
                calibration = _json("calibration", mine["calibration"], dict, "a JSON object")
            if "reference" in mine:
                reference = _json("reference", mine["reference"], dict, "a JSON object")
            if "conditioning" in mine:
                conditioning = _json("conditioning", mine["conditioning"], dict,
                                     "a JSON object")
            return cls(
                parameterization=mine["parameterization"],
                schedule=_schedule(mine["schedule"]),
                sigma_min=_finite("sigma_min", mine["sigma_min"], positive=True),
                sigma_max=_finite("sigma_max", mine["sigma_max"], positive=True),
                sigma_data=_finite("sigma_data", mine["sigma_data"], positive=True),
                sample_shape=_shape(mine["sample_shape"]),
                data_range=_data_range(mine["data_range"]),
                source_sha256=mine["source_sha256"],
                default_solver=_json("default_solver", mine["default_solver"], dict,
                                      'a JSON object {"solver": NAME, "steps": N, ...}'),
                precision=mine["precision"],
                reference=reference,
                conditioning=conditioning,
                calibration=calibration,
            )
        except EdgediffError as e:
            raise EdgediffError(f"{where}: {e}") from None


OVERRIDE_DEFAULTS = {"format_version": FORMAT_VERSION, "source_sha256": "unknown",
                     "default_solver": {"solver": "heun", "steps": 18}, "precision": "fp32"}


def _renamed(values: dict[str, Any]) -> dict[str, Any]:
    """Keys under their current names: a file from before a rename still loads. Both
    names with different values are refused: which one was meant is not ours to guess."""
    out = dict(values)
    for old, new in RENAMED.items():
        if old in out:
            value = out.pop(old)
            if new in out and out[new] != value:
                raise MetadataError(old, value, f"it is the old name of {PREFIX}{new}, which "
                                                f"is also given, with another value; keep one")
            out.setdefault(new, value)
    return out


def props_with_overrides(props: dict[str, str], overrides: dict[str, Any] | None
                         ) -> dict[str, str]:
    """A graph's metadata with the user's overrides on top (keys with or without the
    ``edgediff.`` prefix; JSON values). For ONNX files that follow the contract's
    inputs and outputs but were not written by ``edgediff export``."""
    if not overrides:
        return dict(props)
    if not isinstance(overrides, dict):
        raise EdgediffError("metadata overrides must be a JSON object of key: value")
    given = _renamed({k.removeprefix(PREFIX): v for k, v in overrides.items()})
    unknown = sorted(set(given) - set(KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        names = ", ".join(map(json.dumps, unknown))  # quoted: a key may hold anything
        raise EdgediffError(f"unknown metadata keys {names}; the keys are "
                            f"{', '.join(KEYS + OPTIONAL_KEYS)}")
    has_any = any(k.startswith(PREFIX) for k in props)
    merged = {k: v for k, v in OVERRIDE_DEFAULTS.items() if not has_any} | given
    out = dict(props)
    for key, value in merged.items():
        out[PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
    return out


def read_metadata_json(path: str | Path | None) -> dict | None:
    """The JSON object of a --metadata file, or None without one."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise EdgediffError(f"cannot read --metadata {path}: {e}") from None


