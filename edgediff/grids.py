"""σ grids for an artifact, chosen apart from the solver: the schedule's own grid,
EDM's ρ-grid, log-SNR-uniform or time-uniform (the grid options ``grid``,
``spacing``, ``rho``), and the check that a grid stays inside the σ range the
model was trained for."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.schedules import EDMSchedule, FlowSchedule, Schedule
from edgediff.settings import SolverSettings
from edgediff.sigmas import check_sigmas, check_step_count, edm_sigmas, geometric_sigmas

SIGMA_RANGE_SLACK = 1e-6  # relative: float32 round-off at the ends of a grid


class TrainedRange(Protocol):
    """What a grid needs of an artifact (an ``ArtifactInfo`` is one)."""

    schedule: Schedule
    sigma_min: float
    sigma_max: float


def time_uniform_sigmas(n: int, schedule: Schedule) -> np.ndarray:
    """σ(t_i) for t_i uniform in the schedule's own time from σ⁻¹(σ_max) to σ⁻¹(σ_min),
    σ_N = 0 appended: uniform σ for EDM, σ² for VE, t for VP (its own grid), the
    timestep index for DDPM tables (fractional, log σ interpolated)."""
    n = check_step_count(n)
    t_hi, t_lo = (float(schedule.sigma_inv(np.float64(s)))
                  for s in (schedule.sigma_max, schedule.sigma_min))
    t = np.linspace(t_hi, t_lo, n) if n > 1 else np.array([t_hi])
    return np.append(schedule.sigma(t), 0.0)


def sigma_grid(info: TrainedRange, steps: int, *, grid: str | None = None,
               spacing: str | None = None, rho: float | None = None,
               shift: float | None = None, mu: float | None = None) -> np.ndarray:
    """A σ grid with ``steps`` steps from the schedule's σ_max to its σ_min, ending in 0.

    ``grid``: "default" (the schedule's own: EDM's ρ-grid, VP's uniform t, VE's
    geometric σ, a DDPM model's timestep ``spacing``), "rho" (EDM's ρ-grid, eq 12,
    on any schedule), "lambda" (uniform in log-SNR, i.e. geometric in σ) or
    "time" (uniform in the schedule's own time t). Every solver takes every grid.
    A flow schedule's default grid takes a timestep ``shift``, or diffusers' dynamic
    shifting ``mu`` (shift e^μ), in place of its own (docs/flow.md).
    """
    schedule = info.schedule
    grid = grid or "default"
    discrete = isinstance(schedule, DiscreteSchedule)
    if spacing is not None and not (discrete and grid == "default"):
        raise EdgediffError("spacing applies to discrete (DDPM) schedules' default grid; this "
                            + (f"run's grid is {grid}" if discrete else
                               f"model's schedule is {type(schedule).__name__}"))
    if rho is not None and not (grid == "rho" or (grid == "default"
                                                   and isinstance(schedule, EDMSchedule))):
        raise EdgediffError(f"rho shapes ρ-grids; ask for --grid rho (this run's grid is {grid}"
                            f"{' on a ' + type(schedule).__name__ if grid == 'default' else ''})")
    flow_shift = _flow_shift(schedule, grid, shift, mu)
    lo, hi = schedule.sigma_min, schedule.sigma_max
    if grid == "default":
        if flow_shift is not None:
            return schedule.sigmas(steps, flow_shift)
        if discrete:
            return schedule.sigmas(steps, spacing or "leading")
        if rho is not None:
            return edm_sigmas(steps, lo, hi, rho)
        return schedule.sigmas(steps)
    if grid == "rho":
        return edm_sigmas(steps, lo, hi, 7.0 if rho is None else rho)
    if grid == "lambda":
        return geometric_sigmas(steps, lo, hi)
    if grid == "time":
        return time_uniform_sigmas(steps, schedule)
    raise EdgediffError(f"unknown grid {grid!r}; choose one of default, rho, lambda, time")


def _flow_shift(schedule: Schedule, grid: str, shift: float | None, mu: float | None
                ) -> float | None:
    """The shift the grid options ask of a flow schedule's default grid, or None."""
    if shift is None and mu is None:
        return None
    if not (isinstance(schedule, FlowSchedule) and grid == "default"):
        raise EdgediffError("shift and mu shape a flow schedule's default grid; this "
                            + (f"run's grid is {grid}" if isinstance(schedule, FlowSchedule)
                               else f"model's schedule is {type(schedule).__name__}"))
    if shift is not None and mu is not None:
        raise EdgediffError(f"give shift or mu (shift = e^mu), not both; got shift={shift:g}, "
                            f"mu={mu:g}")
    return float(np.exp(mu)) if shift is None else shift


def check_grid_range(info: TrainedRange, sigmas) -> list[float]:
    """Refuse (never clamp) a σ grid that leaves the model's trained range."""
    sigmas = check_sigmas(sigmas)
    lo, hi = min(sigmas[:-1]), max(sigmas)
    if hi > info.sigma_max * (1 + SIGMA_RANGE_SLACK) or lo < info.sigma_min * (
            1 - SIGMA_RANGE_SLACK):
        raise EdgediffError(f"the σ grid spans [{lo:.6g}, {hi:.6g}] but the model knows "
                            f"[{info.sigma_min:.6g}, {info.sigma_max:.6g}]; give a grid inside "
                            f"that range (its final 0 aside)")
    return sigmas


def settings_grid(info: TrainedRange, settings: SolverSettings) -> list[float]:
    """The checked σ grid that ``settings`` (a ``SolverSettings``) samples on."""
    grid = sigma_grid(info, settings.steps, grid=settings.options.get("grid"),
                      spacing=settings.options.get("spacing"), rho=settings.options.get("rho"),
                      shift=settings.options.get("shift"), mu=settings.options.get("mu"))
    return check_grid_range(info, grid)
