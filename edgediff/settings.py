"""What one run asks for: a solver, its step count and its options, checked
against the catalogue when made, and resolved against an artifact's default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgediff.catalogue import CATALOGUE, SolverSpec, check_solver, spec
from edgediff.errors import EdgediffError
from edgediff.options import GRID_OPTIONS
from edgediff.schedules import Schedule


class RunDefaults(Protocol):
    """What settings read of an artifact (an ``ArtifactInfo`` is one)."""

    default_solver: dict[str, Any]
    data_range: tuple[float, float]
    schedule: Schedule


def check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise EdgediffError(f"steps must be an integer ≥ 1, got {steps!r}")
    return int(steps)


@dataclass
class SolverSettings:
    """A solver, its step count, and its options (solver and grid options), checked
    against the catalogue when made."""

    solver: str
    steps: int
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.solver = check_solver(self.solver)
        self.steps = check_steps(self.steps)
        self.options = spec(self.solver).check_options(dict(self.options))

    @property
    def spec(self) -> SolverSpec:
        return CATALOGUE[self.solver]

    @classmethod
    def resolve(cls, info: RunDefaults, solver: str | None = None, steps: int | None = None,
                options: dict[str, Any] | None = None) -> SolverSettings:
        """The artifact's default solver, overridden by what the caller gives."""
        default = dict(info.default_solver)
        default_solver = default.pop("solver", "heun")
        default_steps = default.pop("steps", None)
        solver = check_solver(solver or default_solver)
        if solver == default_solver:
            base = default
        else:  # keep only the defaults that make sense for the chosen solver
            names = {o.name for o in CATALOGUE[solver].options + GRID_OPTIONS}
            base = {k: v for k, v in default.items() if k in names}
        if steps is None:
            steps = (default_steps if solver == default_solver and default_steps is not None
                     else CATALOGUE[solver].default_steps)
        return cls(solver, steps, {**base, **(options or {})})


def loop_options(info: RunDefaults, settings: SolverSettings) -> dict[str, Any]:
    """The keyword arguments a step loop takes for ``settings`` on this artifact (the
    same for the torch reference): solver options, the schedule for loops in its
    own time, and ``clip`` as the data range; a solver whose loop takes its options
    as one value (``SolverSpec.bundle``) gets that value."""
    grid = {o.name for o in GRID_OPTIONS}
    kwargs = {k: v for k, v in settings.options.items() if k not in grid}
    if settings.spec.bundle is not None:
        keyword, kind = settings.spec.bundle
        return {keyword: kind(**kwargs)}
    if kwargs.pop("clip", False):
        kwargs["clip"] = info.data_range
    if settings.spec.own_time:
        kwargs["schedule"] = info.schedule
    return kwargs
