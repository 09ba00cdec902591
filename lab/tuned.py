"""The tuned σ grid a command samples on: the one the artifact's sidecar
(``edgediff.gridfile``, made by ``edgediff tune-grid``) holds for the run's solver,
steps and solver options, unless the caller named a grid option (``--grid
default`` is the way to ask for the schedule's own grid over a tuned one)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgediff.errors import EdgediffError
from edgediff.gridfile import find_grid, sidecar_path
from edgediff.grids import check_grid_range
from edgediff.options import GRID_OPTIONS
from edgediff.settings import SolverSettings

log = logging.getLogger(__name__)
GRID_NAMES = frozenset(o.name for o in GRID_OPTIONS)


def solver_key(settings: SolverSettings) -> dict[str, Any]:
    """The solver options a tuned grid belongs to: every non-grid option, defaults
    filled in (dpmpp_3m's two weightings get a grid each)."""
    return settings.spec.defaults(**{k: v for k, v in settings.options.items()
                                     if k not in GRID_NAMES})


def tuned_sigmas(artifact: str | Path | None, info, settings: SolverSettings,
                 asked: dict[str, Any]) -> tuple[list[float] | None, str | None]:
    """(σ grid, line for the user): the sidecar's tuned grid for ``settings`` when
    ``asked`` (the options the user gave) names no grid option, else (None, …).
    A sidecar made for another artifact is ignored with a warning line."""
    if artifact is None or not sidecar_path(artifact).is_file():
        return None, None
    side = sidecar_path(artifact).name
    explicit = sorted(GRID_NAMES & set(asked))
    if explicit:
        return None, (f"σ grid: {', '.join(f'{k}={asked[k]}' for k in explicit)} as asked "
                      f"(the tuned grids in {side} are not used)")
    try:
        entry = find_grid(artifact, settings.solver, settings.steps, solver_key(settings))
    except EdgediffError as e:
        log.warning("%s", e)
        return None, f"warning: {e}; sampling on the schedule's grid"
    if entry is None:
        return None, None
    sigmas = check_grid_range(info, entry.sigmas)
    return sigmas, (f"σ grid: tuned for {entry.solver}-{entry.steps} from {side} "
                    f"(calibration MSE {entry.objective_before:.3g} → "
                    f"{entry.objective_after:.3g}); --grid default ignores it")
