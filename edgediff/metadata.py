"""The artifact's metadata as text: the ``edgediff.*`` keys, their format versions,
and the parsers that turn each value into what the contract allows, or one
``MetadataError`` line naming the key, the value and what is allowed. The keys
are documented in ``docs/artifact.md``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.schedules import EDMSchedule, FlowSchedule, Schedule, VESchedule, VPSchedule

PREFIX = "edgediff."
# 2: optional ``conditioning`` (class labels, guidance). 3: ``default_sampler`` is named
# ``default_solver``, like everything else (the old name is still read). 1 and 2 still load.
FORMAT_VERSION = 3
RENAMED = {"default_sampler": "default_solver"}  # old key -> key
OPTIONAL_KEYS = ("reference", "conditioning", "calibration", "latent")
KEYS = ("format_version", "parameterization", "schedule", "sigma_min", "sigma_max",
        "sigma_data", "sample_shape", "data_range", "source_sha256", "default_solver",
        "precision")
PARAMETERIZATIONS = ("edm", "vp", "ve", "epsilon", "v_prediction", "sample", "analytic", "denoiser",
                     "flow", "consistency", "lcm")
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


def finite(key: str, value: Any, *, positive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or (positive and v <= 0):
        raise MetadataError(key, value, "a finite number" + (" > 0" if positive else ""))
    return v


def parse_json(key: str, text: Any, kind: type, allowed: str) -> Any:
    """The JSON value of a metadata string, of the given type."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        raise MetadataError(key, text, f"{allowed} (it is not valid JSON)") from None
    if not isinstance(value, kind):
        raise MetadataError(key, text, allowed)
    return value


def shape(text: Any) -> tuple[int, ...]:
    allowed = "a non-empty JSON list of positive integers, e.g. [1, 8, 8]"
    dims = parse_json("sample_shape", text, list, allowed)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                            for d in dims):
        raise MetadataError("sample_shape", text, allowed)
    return tuple(dims)


def data_range(text: Any) -> tuple[float, float]:
    allowed = "a JSON list [lo, hi] of two finite numbers with lo < hi"
    pair = parse_json("data_range", text, list, allowed)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int | float)
                             or not math.isfinite(v) for v in pair) or not pair[0] < pair[1]:
        raise MetadataError("data_range", text, allowed)
    return float(pair[0]), float(pair[1])


def parse_schedule(text: Any) -> Schedule:
    d = parse_json("schedule", text, dict, "a JSON object with the schedule's name and parameters")
    try:
        return schedule_from_dict(d)
    except EdgediffError as e:
        raise MetadataError("schedule", text, str(e)) from None
    except (TypeError, ValueError, OverflowError):
        raise MetadataError("schedule", text, "the parameters of Schedule.to_dict(): finite "
                            "numbers (a discrete schedule: its alphas_cumprod table)") from None


def version(text: Any) -> int:
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


def choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise MetadataError(key, value, "one of " + ", ".join(choices))
    return value


def sha(text: Any) -> str:
    if not isinstance(text, str) or not (text == "unknown" or (
            len(text) == 64 and all(c in "0123456789abcdef" for c in text))):
        raise MetadataError("source_sha256", text, "64 lowercase hex digits, or unknown")
    return text




SCHEDULES = {"vp": VPSchedule, "ve": VESchedule, "edm": EDMSchedule, "flow": FlowSchedule}


def schedule_from_dict(d: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from ``Schedule.to_dict()``."""
    params = dict(d)
    name = params.pop("name", None)
    if name == DiscreteSchedule.name:
        if "alphas_cumprod" in params:
            return DiscreteSchedule(np.asarray(params.pop("alphas_cumprod")), params)
        return DiscreteSchedule.from_betas(
            params.get("beta_schedule", "linear"), params.get("beta_start", 1e-4),
            params.get("beta_end", 0.02), params.get("num_train_timesteps", 1000))
    if name not in SCHEDULES:
        raise EdgediffError(f"unknown schedule {name!r}; choose one of "
                            f"{', '.join([*SCHEDULES, DiscreteSchedule.name])}")
    try:
        return SCHEDULES[name](**params)
    except TypeError as e:
        raise EdgediffError(f"bad parameters for the {name!r} schedule: {e}") from None


OVERRIDE_DEFAULTS = {"format_version": FORMAT_VERSION, "source_sha256": "unknown",
                     "default_solver": {"solver": "heun", "steps": 18}, "precision": "fp32"}


def renamed(values: dict[str, Any]) -> dict[str, Any]:
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
    given = renamed({k.removeprefix(PREFIX): v for k, v in overrides.items()})
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


