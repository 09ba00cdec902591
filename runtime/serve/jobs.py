"""A request body made into a checked ``SampleJob``, by the runtime's own checks: the
catalogue (``SolverSettings.resolve``), the σ grid (``settings_grid``,
``exact_grid``), ``check_labels``, ``check_tensors``, ``check_guidance`` and
``guided_denoiser``. Any ``EdgediffError`` they raise becomes an ``InvalidFieldError``
naming the field it is about (the server's 422)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgediff.catalogue import check_solver
from edgediff.conditioning import check_guidance, check_labels
from edgediff.errors import EdgediffError
from edgediff.grids import exact_grid, settings_grid
from edgediff.runtime._call import Denoiser
from edgediff.runtime.guidance import Condition, guided_denoiser
from edgediff.runtime.sampling import sample_batch
from edgediff.runtime.serve.lanes import joint
from edgediff.settings import SolverSettings
from edgediff.streams import NoiseStreams
from edgediff.tensor_conditioning import check_tensors


class InvalidFieldError(EdgediffError):
    """A request field the model or the server cannot take: ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.reason = field, message


@contextmanager
def blame(field: str) -> Iterator[None]:
    """Turn an ``EdgediffError`` raised inside into an ``InvalidFieldError`` for ``field``."""
    try:
        yield
    except InvalidFieldError:
        raise
    except EdgediffError as e:
        raise InvalidFieldError(field, str(e)) from None


@dataclass(frozen=True)
class Limits:
    """What one request may ask of this server."""

    max_n: int = 64
    max_steps: int = 1000
    deadline: float = 300.0


class _InfoOnly:
    """A stand-in denoiser for checks that read only ``info``."""

    def __init__(self, info):
        self.info = info

    def __call__(self, x, sigma, **_):
        raise AssertionError("a check must not call the denoiser")


@dataclass(frozen=True, eq=False)
class SampleJob:
    """Samples 0…num−1 of ``seed`` with ``settings`` on ``sigmas`` under ``condition``:
    what ``runtime.sample(D, num, seed=…, run=RunOptions(batch=num))`` computes, run
    against a lane. ``deadline``: seconds this request may take."""

    info: Any
    num: int
    seed: int
    settings: SolverSettings
    sigmas: list[float]
    condition: Condition
    deadline: float

    @property
    def rows(self) -> int:
        """Rows per call: 2·num for classifier-free guidance in two passes."""
        c, info = self.condition, self.info
        two = c.guidance is not None and c.guidance not in (0.0, 1.0) and not info.guidance_input
        return self.num * (2 if two else 1)

    def denoiser(self, lane: Denoiser) -> Denoiser:
        """What the step loop calls: as ``runtime.sample`` builds it, with both passes of
        classifier-free guidance in one submission (``lanes.JointGuided``)."""
        c = self.condition
        if not c.given:
            return lane
        return joint(guided_denoiser(lane, c.labels, c.guidance, None, c.tensors or {},
                                     c.guidance_interval), lane)

    def __call__(self, lane: Denoiser) -> np.ndarray:
        streams = NoiseStreams(self.seed, range(self.num), self.info.sample_shape)
        x = sample_batch(self.denoiser(lane), self.settings, self.sigmas, streams)
        return x.astype(np.float32)  # as runtime.sample stores it


def _count(field: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) \
            or not low <= value <= high:
        raise InvalidFieldError(field, f"must be an integer in {low}…{high}, got {value!r}")
    return int(value)


def _tensors(info, cond, num: int) -> dict[str, np.ndarray]:
    if cond is None:
        return {}
    if not isinstance(cond, dict):
        raise InvalidFieldError("cond", "is an object of input name → nested list")
    arrays = {}
    for name, value in cond.items():
        try:
            arrays[name] = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidFieldError("cond", f"{name} is not a rectangular nested list "
                                            f"of numbers") from None
    with blame("cond"):
        return check_tensors(info.tensors, arrays, num)


def plan_job(info, body: dict[str, Any], limits: Limits) -> SampleJob:
    """Check a request body (the fields of docs/serve.md, "POST /v1/samples") against
    the model and the limits; every refusal names its field."""
    num = _count("n", body.get("n", 1), 1, limits.max_n)
    seed = _count("seed", body.get("seed", 0), 0, 2**63 - 1)
    solver, steps = body.get("solver"), body.get("steps")
    if solver is not None:
        with blame("solver"):
            solver = check_solver(solver)
    if steps is not None:
        steps = _count("steps", steps, 1, limits.max_steps)
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidFieldError("options", "is an object of solver and grid options")
    options = dict(options)
    with blame("options"):
        sigmas = exact_grid(info, options, steps)
    if sigmas is not None:
        steps = len(sigmas) - 1
    with blame("options"):
        settings = SolverSettings.resolve(info, solver, steps, options)
        sigmas = settings_grid(info, settings) if sigmas is None else sigmas
    if settings.steps > limits.max_steps:
        raise InvalidFieldError("steps", f"{settings.steps} steps; this server takes at "
                                         f"most {limits.max_steps}")
    with blame("class_label"):
        labels = check_labels(info, body.get("class_label"), num)
    tensors = _tensors(info, body.get("cond"), num)
    w = body.get("guidance")
    with blame("guidance"):
        w = None if w is None else check_guidance(w)
    with blame("guidance_interval"):
        condition = Condition(labels, w, None, tensors or None, body.get("guidance_interval"))
    with blame("guidance"):  # e.g. guidance asked of a model that cannot be guided
        guided_denoiser(_InfoOnly(info), labels, w, None, tensors, condition.guidance_interval)
    deadline = body.get("deadline")
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(
            deadline, int | float) or not deadline > 0):
        raise InvalidFieldError("deadline", f"is a number of seconds > 0, got {deadline!r}")
    deadline = limits.deadline if deadline is None else min(float(deadline), limits.deadline)
    return SampleJob(info, num, seed, settings, sigmas, condition, deadline)
