"""σ grids for an artifact, chosen apart from the solver: the schedule's own grid,
EDM's ρ-grid, log-SNR-uniform or time-uniform (the grid options ``grid``,
``spacing``, ``rho``), and the check that a grid stays inside the σ range the
model was trained for."""

from __future__ import annotations

import itertools
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


def parse_numbers(text, flag: str) -> list[float]:
    """``--sigmas 80,24.4,5.84`` or ``--timesteps 999,759``: comma-separated numbers
    (a list passes through), or one line naming the flag and what it takes."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
    else:
        parts = list(text)
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise EdgediffError(f"{flag} takes comma-separated numbers, e.g. 80,24.4,5.84, got "
                            f"{text!r}") from None
    if not values:
        raise EdgediffError(f"{flag} needs at least one number")
    return values


def _decreasing(values: list[float], flag: str) -> None:
    if any(b >= a for a, b in itertools.pairwise(values)):
        raise EdgediffError(f"{flag} must be strictly decreasing, got "
                            f"{', '.join(f'{v:g}' for v in values)}")


def exact_sigmas(info: TrainedRange, sigmas) -> list[float]:
    """A distilled model's own σ's (``--sigmas``), largest first, without the final 0:
    finite, strictly decreasing and inside the model's trained range, else one
    line. Returns the grid with its 0 appended."""
    values = parse_numbers(sigmas, "--sigmas")
    if values[-1] == 0:
        values = values[:-1]  # the final 0 is implied; written out it is fine too
    bad = [v for v in values if not np.isfinite(v) or v <= 0]
    if bad:
        raise EdgediffError(f"--sigmas must be finite and > 0 (the final 0 is implied), got "
                            f"{bad[0]:g}")
    _decreasing(values, "--sigmas")
    return check_grid_range(info, [*values, 0.0])


def timestep_sigmas(info: TrainedRange, timesteps) -> list[float]:
    """``--timesteps 999,759,499,259``: a discrete-time model's training timesteps,
    largest first, mapped through its own σ table (σ_t = sqrt((1 − ᾱ_t)/ᾱ_t)), with
    the final 0 appended. Integers in [0, T−1], strictly decreasing; a model on a
    continuous schedule takes --sigmas instead."""
    schedule = info.schedule
    if not isinstance(schedule, DiscreteSchedule):
        raise EdgediffError(f"--timesteps needs a discrete-time model (a DDPM-style σ table); "
                            f"this one has a continuous '{schedule.name}' schedule: give its "
                            f"σ's with --sigmas")
    values = parse_numbers(timesteps, "--timesteps")
    last = schedule.num_train_timesteps - 1
    bad = [v for v in values if not (float(v).is_integer() and 0 <= v <= last)]
    if bad:
        raise EdgediffError(f"--timesteps takes whole numbers from 0 to {last} (this model's "
                            f"training timesteps), got {bad[0]:g}")
    _decreasing(values, "--timesteps")
    steps = np.asarray(values, dtype=np.int64)
    return check_grid_range(info, [*schedule.sigma_table[steps].tolist(), 0.0])


EXACT = ("sigmas", "timesteps")  # exact grids: --sigmas/--timesteps, and preset keys


def exact_grid(info: TrainedRange, options: dict, steps: int | None = None
               ) -> list[float] | None:
    """The grid that ``options["sigmas"]`` or ``options["timesteps"]`` (--sigmas,
    --timesteps, or a preset's keys of those names) name, checked against the
    artifact, or None if neither; it pops them from ``options``. ``steps``, when
    given, must be the list's length."""
    sigmas, timesteps = (options.pop(k, None) for k in EXACT)
    if sigmas is not None and timesteps is not None:
        raise EdgediffError("--sigmas and --timesteps both name the steps; give one")
    if sigmas is None and timesteps is None:
        return None
    grid = exact_sigmas(info, sigmas) if sigmas is not None else timestep_sigmas(info, timesteps)
    if steps is not None and steps != len(grid) - 1:
        raise EdgediffError(f"--steps {steps} but {len(grid) - 1} σ's given; drop --steps (the "
                            f"list sets the step count)")
    return grid
