"""σ grids for an artifact: the schedule's own grid shaped by the grid options
(``spacing`` for discrete schedules, ``rho`` for EDM's), and the check that a
grid stays inside the σ range the model was trained for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.schedules import DDPM_SPACINGS, DiscreteSchedule, EDMSchedule, edm_sigmas
from edgediff.solvers import check_sigmas

if TYPE_CHECKING:
    from edgediff.artifact import ArtifactInfo

SIGMA_RANGE_SLACK = 1e-6  # relative: float32 round-off at the ends of a grid


def sigma_grid(info: ArtifactInfo, steps: int, *, spacing: str | None = None,
               rho: float | None = None) -> np.ndarray:
    """The artifact schedule's own σ grid with ``steps`` steps, ending in 0."""
    schedule = info.schedule
    if isinstance(schedule, DiscreteSchedule):
        if rho is not None:
            raise EdgediffError("rho shapes EDM grids; this model has a discrete (DDPM) schedule, "
                                "whose grid option is spacing")
        spacing = spacing or "leading"
        if spacing not in DDPM_SPACINGS:
            raise EdgediffError(f"unknown spacing {spacing!r}; choose one of "
                                f"{', '.join(DDPM_SPACINGS)}")
        return schedule.sigmas(steps, spacing)
    if spacing is not None:
        raise EdgediffError("spacing applies to discrete (DDPM) schedules; this model's is "
                            f"{type(schedule).__name__}")
    if rho is not None:
        if not isinstance(schedule, EDMSchedule):
            raise EdgediffError(f"rho shapes EDM grids; this model's schedule is "
                                f"{type(schedule).__name__}")
        return edm_sigmas(steps, schedule.sigma_min, schedule.sigma_max, rho)
    return schedule.sigmas(steps)


def check_grid_range(info: ArtifactInfo, sigmas) -> list[float]:
    """Refuse (never clamp) a σ grid that leaves the model's trained range."""
    sigmas = check_sigmas(sigmas)
    lo, hi = min(sigmas[:-1]), max(sigmas)
    if hi > info.sigma_max * (1 + SIGMA_RANGE_SLACK) or lo < info.sigma_min * (
            1 - SIGMA_RANGE_SLACK):
        raise EdgediffError(f"the σ grid spans [{lo:.6g}, {hi:.6g}] but the model knows "
                            f"[{info.sigma_min:.6g}, {info.sigma_max:.6g}]; give a grid inside "
                            f"that range (its final 0 aside)")
    return sigmas


def settings_grid(info: ArtifactInfo, settings) -> list[float]:
    """The checked σ grid that ``settings`` (a ``SamplerSettings``) samples on."""
    grid = sigma_grid(info, settings.steps, spacing=settings.options.get("spacing"),
                      rho=settings.options.get("rho"))
    return check_grid_range(info, grid)
