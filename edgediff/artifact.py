"""The artifact contract (docs/artifact.md): what an exported ``model.onnx`` says
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
from edgediff.grids import settings_grid
from edgediff.metadata import (
    CALIBRATION_METHODS,
    FORMAT_VERSION,
    KEYS,
    PARAMETERIZATIONS,
    PRECISIONS,
    PREFIX,
    REFERENCE_KINDS,
    MetadataError,
    choice,
    data_range,
    finite,
    parse_json,
    parse_schedule,
    renamed,
    sha,
    shape,
    version,
)
from edgediff.mixture import GaussianMixture
from edgediff.schedules import Schedule
from edgediff.settings import SolverSettings
from edgediff.tensor_conditioning import TensorSpec, parse_tensors


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
    latent: dict[str, Any] | None = None  # latent models: the data encoder's constants (optional)

    def __post_init__(self):
        choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        lo = finite("sigma_min", self.sigma_min, positive=True)
        hi = finite("sigma_max", self.sigma_max, positive=True)
        if not lo < hi:
            raise EdgediffError(f"{PREFIX}sigma_min = {lo!r} and {PREFIX}sigma_max = {hi!r} are "
                                f"not allowed together: need sigma_min < sigma_max")
        finite("sigma_data", self.sigma_data, positive=True)
        shape(list(self.sample_shape))
        data_range(list(self.data_range))
        sha(self.source_sha256)
        choice("precision", self.precision, PRECISIONS)
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
        if self.latent is not None:
            self._check_latent()

    def _check_default_solver(self) -> None:
        """The default solver must be one this build runs, on a grid inside the
        model's σ range: otherwise the model could be loaded but not sampled."""
        d = self.default_solver
        allowed = ('a JSON object {"solver": NAME, "steps": N, ...options} naming a known '
                   'solver with valid options')
        if not isinstance(d, dict) or "solver" not in d:
            raise MetadataError("default_solver", d, allowed)
        try:
            settings_grid(self, SolverSettings.resolve(self))
        except EdgediffError as e:
            raise MetadataError("default_solver", d, str(e)) from None

    def _check_latent(self) -> None:
        c = self.latent
        channels = self.sample_shape[0]
        ok = (isinstance(c, dict) and isinstance(c.get("encoder"), str)
              and all(isinstance(c.get(k), list) and len(c[k]) == channels
                      and all(isinstance(v, int | float) for v in c[k]) for k in ("scale", "bias")))
        if not ok or not all(v != 0 for v in c["scale"]):
            raise MetadataError("latent", c, f'a JSON object {{"encoder": NAME, "vae_name": ..., '
                                f'"scale": [...], "bias": [...]}} with one non-zero scale and '
                                f'one bias per latent channel ({channels})')

    def _check_conditioning(self) -> None:
        c = self.conditioning
        allowed = ('a JSON object {"num_classes": K ≥ 1, "null_label": an id in 0…K (the '
                   'unconditional pass) or null (none: a model of K real classes that cannot '
                   'be guided by classifier-free guidance), "guidance_input": true or false, '
                   '"tensors": {...} (optional; then the class keys are optional)}')
        if not isinstance(c, dict) or set(c) - {"num_classes", "null_label", "guidance_input",
                                                "tensors"}:
            raise MetadataError("conditioning", c, allowed)
        specs = parse_tensors(c["tensors"]) if "tensors" in c else ()
        object.__setattr__(self, "_tensor_specs", specs)
        k, null = c.get("num_classes"), c.get("null_label")
        if specs and k is None and null is None:
            if c.get("guidance_input", False) is not False:  # the graph doubles class labels
                raise MetadataError("conditioning", c, "guidance_input needs classes")
            return
        guided = c.get("guidance_input", False)
        if null is None and "null_label" in c and not guided:  # K real classes, no null one
            null = k
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (k, null))
        if not ints or k < 1 or not 0 <= null <= k or not isinstance(guided, bool) \
                or (specs and guided):
            raise MetadataError("conditioning", c, allowed)

    @property
    def num_classes(self) -> int:
        """0 for a model without classes."""
        return int(self.conditioning.get("num_classes", 0)) if self.conditioning else 0

    @property
    def null_label(self) -> int | None:
        """The id of the unconditional pass; None for a model without classes, or one
        whose K classes are all real (``null_label: null``: no classifier-free
        guidance, and every sample needs a label)."""
        null = self.conditioning.get("null_label") if self.num_classes else None
        return None if null is None else int(null)

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        """The declared tensor-conditioning inputs (``edgediff.tensor_conditioning``)."""
        return getattr(self, "_tensor_specs", ())

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
        if self.latent is not None:
            values["latent"] = json.dumps(self.latent)
        return {PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "the model") -> ArtifactInfo:
        """Parse and check ``edgediff.*`` metadata. Anything absent, malformed or out
        of range is refused with one line naming the key, the value and what is
        allowed (docs/artifact.md)."""
        if not isinstance(props, dict):
            raise EdgediffError(f"{where}: metadata must be a mapping of key: value")
        mine = renamed({k[len(PREFIX):]: v for k, v in props.items()
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
            version(mine["format_version"])
            reference = conditioning = calibration = latent = None
            if "latent" in mine:
                latent = parse_json("latent", mine["latent"], dict, "a JSON object")
            if "calibration" in mine:
                calibration = parse_json("calibration", mine["calibration"], dict, "a JSON object")
            if "reference" in mine:
                reference = parse_json("reference", mine["reference"], dict, "a JSON object")
            if "conditioning" in mine:
                conditioning = parse_json("conditioning", mine["conditioning"], dict,
                                     "a JSON object")
            return cls(
                parameterization=mine["parameterization"],
                schedule=parse_schedule(mine["schedule"]),
                sigma_min=finite("sigma_min", mine["sigma_min"], positive=True),
                sigma_max=finite("sigma_max", mine["sigma_max"], positive=True),
                sigma_data=finite("sigma_data", mine["sigma_data"], positive=True),
                sample_shape=shape(mine["sample_shape"]),
                data_range=data_range(mine["data_range"]),
                source_sha256=mine["source_sha256"],
                default_solver=parse_json("default_solver", mine["default_solver"], dict,
                                      'a JSON object {"solver": NAME, "steps": N, ...}'),
                precision=mine["precision"],
                reference=reference,
                conditioning=conditioning,
                calibration=calibration,
                latent=latent,
            )
        except EdgediffError as e:
            raise EdgediffError(f"{where}: {e}") from None
