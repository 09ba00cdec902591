"""Per-model σ grids: the K step σ's of a deterministic solver tuned so that its
samples land where a high-accuracy solution of the same x_T does (in the spirit
of "Align Your Steps", Sabour et al. 2024, and GITS, Chen et al. 2024; here the
objective is the error at the end of the trajectory, not a bound on it).

The grid is parameterised so that every point of the search is a valid grid:
with L = log σ_0 − log σ_min (σ_0 the default grid's first σ, σ_min the model's
trained minimum) and w = softmax(θ), θ ∈ ℝ^K,

    log σ_i = log σ_0 − L·(w_1 + … + w_i),   i = 1 … K−1,   σ_K = 0.

The K−1 first weights are the gaps between steps; the K-th is the slack left
between σ_{K−1} and σ_min. σ_0 stays fixed (it sets x_T = σ_0·z, so moving it
would change the map being tuned), while the last σ before 0 is free inside
[σ_min, σ_0): with 3–8 NFE, where the final step lands matters as much as the
spacing of the others, and the slack keeps it in the trained range. The grid is
strictly decreasing for every θ, so the search needs no constraints; it runs
Nelder–Mead (written out below: the runtime is the objective, so there is no
gradient, and scipy is no runtime dependency).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.gridfile import TunedEntry
from edgediff.grids import check_grid_range, settings_grid
from edgediff.lab.tuned import GRID_NAMES, solver_key
from edgediff.runtime import RunOptions, sample
from edgediff.settings import SolverSettings
from edgediff.sigmas import edm_sigmas

log = logging.getLogger(__name__)

# progress(done, total, best objective so far or None): one unit for the reference
# solution, then one per run of the solver
Progress = Callable[[int, int, "float | None"], None]


@dataclass(frozen=True)
class TuneOptions:
    """How to tune: ``calibration`` samples (``first``… of ``seed``; measure the grid
    on other seeds), against Heun with ``reference_steps`` steps on a ρ-grid from
    the same σ_0; at most ``evaluations`` runs of the solver (default 25·(K+1))."""

    calibration: int = 64
    seed: int = 1000
    first: int = 0
    reference_steps: int = 100
    evaluations: int | None = None
    batch: int = 64

    def __post_init__(self):
        for name, low in (("calibration", 1), ("seed", 0), ("first", 0),
                          ("reference_steps", 2), ("batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise EdgediffError(f"tuning: {name} must be an integer ≥ {low}, got {value!r}")
        if self.evaluations is not None and (not isinstance(self.evaluations, int)
                                             or self.evaluations < 1):
            raise EdgediffError(f"tuning: evaluations must be an integer ≥ 1, got "
                                f"{self.evaluations!r}")


def grid_from_logits(theta: np.ndarray, sigma_0: float, sigma_min: float) -> np.ndarray:
    """The grid σ_0 > σ_1 > … > σ_{K−1} ≥ σ_min, σ_K = 0 that θ ∈ ℝ^K stands for."""
    w = np.exp(theta - np.max(theta))
    w /= w.sum()
    span = np.log(sigma_0) - np.log(sigma_min)
    log_sigmas = np.log(sigma_0) - span * np.cumsum(w[:-1])
    return np.concatenate([[sigma_0], np.exp(log_sigmas), [0.0]])


def logits_from_grid(sigmas, sigma_min: float, floor: float = 0.02) -> np.ndarray:
    """θ whose grid is ``sigmas`` (ending in 0), each share at least ``floor``/K of the
    log range (the default grid ends at σ_min: its slack would be −∞)."""
    s = np.log(np.asarray(sigmas[:-1], dtype=np.float64))
    shares = np.append(-np.diff(s), s[-1] - np.log(sigma_min)) / (s[0] - np.log(sigma_min))
    shares = np.maximum(shares, floor / len(shares))
    return np.log(shares / shares.sum())


def nelder_mead(f: Callable[[np.ndarray], float], x0: np.ndarray, *, step: float = 1.0,
                evaluations: int = 100, on_eval: Callable[[float], None] | None = None
                ) -> tuple[np.ndarray, float, int]:
    """Minimise ``f`` from ``x0`` (Nelder & Mead 1965; coefficients 1, 2, ½, ½) within
    ``evaluations`` calls; returns (best x, f(best x), calls made)."""
    calls = 0

    def F(x):
        nonlocal calls
        calls += 1
        v = f(x)
        if on_eval:
            on_eval(v)
        return v

    n = len(x0)
    simplex = [np.asarray(x0, dtype=np.float64)]
    simplex += [simplex[0] + step * np.eye(n)[i] for i in range(n)]
    values = [F(x) for x in simplex[:evaluations]]
    simplex = simplex[:len(values)]
    while calls < evaluations and len(simplex) == n + 1:
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])  # reflection
        fr = F(reflected)
        if fr < values[0] and calls < evaluations:  # expansion
            expanded = centroid + 2 * (centroid - simplex[-1])
            fe = F(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        elif calls < evaluations:  # contraction (outside or inside)
            inside = fr >= values[-1]
            contracted = centroid + 0.5 * ((simplex[-1] if inside else reflected) - centroid)
            fc = F(contracted)
            if fc < min(fr, values[-1]):
                simplex[-1], values[-1] = contracted, fc
            else:  # shrink toward the best point
                for i in range(1, n + 1):
                    if calls >= evaluations:
                        break
                    simplex[i] = simplex[0] + 0.5 * (simplex[i] - simplex[0])
                    values[i] = F(simplex[i])
    best = int(np.argmin(values))
    return simplex[best], float(values[best]), calls


def _run(denoiser, settings: SolverSettings, sigmas, tune: TuneOptions) -> np.ndarray:
    options = {k: v for k, v in settings.options.items() if k not in GRID_NAMES}
    return sample(denoiser, tune.calibration, seed=tune.seed, solver=settings.solver,
                  options=options, run=RunOptions(first=tune.first, batch=tune.batch,
                                                  sigmas=list(sigmas))).astype(np.float64)


def tune_grid(denoiser, solver: str | None = None, steps: int | None = None,
              options: dict[str, Any] | None = None, tune: TuneOptions | None = None, *,
              progress: Progress | None = None,
              reference: np.ndarray | None = None) -> TunedEntry:
    """Tune the σ grid of ``solver`` at ``steps`` steps (its options ``options``) on
    ``denoiser`` (an opened artifact): minimise the mean squared error of its samples
    against Heun-``reference_steps`` from the same x_T, over the calibration noise
    (``reference``: that solution, from ``reference_solution``, to reuse it)."""
    tune = TuneOptions() if tune is None else tune
    info = denoiser.info
    settings = SolverSettings.resolve(info, solver, steps, options)
    spec = settings.spec
    if not spec.deterministic(settings.options):
        quiet = f", or set {spec.quiet_at_zero}=0" if spec.quiet_at_zero else ""
        raise EdgediffError(f"{settings.solver} draws fresh noise at each step, so its samples "
                            f"are no fixed map of x_T and have no reference to tune against; "
                            f"tune a deterministic solver (heun, dpmpp_2m, ipndm, unipc…){quiet}")
    if settings.steps < 2:
        raise EdgediffError(f"a {settings.steps}-step grid has no σ to tune (only σ_max); "
                            f"ask for --steps 2 or more")
    default = np.asarray(settings_grid(info, settings))
    sigma_0, sigma_min = float(default[0]), float(info.sigma_min)
    evaluations = tune.evaluations or 25 * (settings.steps + 1)
    total, done = evaluations + 2, 0
    best = None

    def tick(value=None):
        nonlocal done, best
        done += 1
        if value is not None and np.isfinite(value):
            best = value if best is None else min(best, value)
        if progress:
            progress(done, total, best)

    if reference is None:
        reference = reference_solution(denoiser, sigma_0, tune)
    tick()

    def objective(sigmas) -> float:
        return float(np.mean((_run(denoiser, settings, sigmas, tune) - reference) ** 2))

    def objective_of_logits(theta) -> float:
        sigmas = grid_from_logits(theta, sigma_0, sigma_min)
        if np.any(np.diff(sigmas) >= 0):  # two σ's equal to rounding: not a grid
            return float("inf")
        return objective(check_grid_range(info, sigmas))

    before = objective(default.tolist())
    tick(before)
    theta, after, calls = nelder_mead(objective_of_logits, logits_from_grid(default, sigma_min),
                                      evaluations=evaluations, on_eval=tick)
    sigmas = grid_from_logits(theta, sigma_0, sigma_min)
    if not after < before:  # keep the default grid rather than a worse one
        sigmas, after = default, before
    log.info("tuned %s-%d: objective %.4g -> %.4g in %d runs", settings.solver,
             settings.steps, before, after, calls + 1)
    return TunedEntry(
        solver=settings.solver, steps=settings.steps, options=solver_key(settings),
        sigmas=[float(s) for s in sigmas], default_sigmas=[float(s) for s in default],
        calibration={"seed": tune.seed, "first": tune.first, "num": tune.calibration,
                     "reference_steps": tune.reference_steps},
        objective_before=before, objective_after=after, evaluations=calls + 1,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def reference_solution(denoiser, sigma_0: float, tune: TuneOptions) -> np.ndarray:
    """Heun with ``tune.reference_steps`` steps on a ρ-grid from ``sigma_0`` to the
    model's σ_min, on the samples ``tune`` names: what a tuned grid aims at."""
    return _run(denoiser, SolverSettings("heun", tune.reference_steps), edm_sigmas(
        tune.reference_steps, float(denoiser.info.sigma_min), sigma_0), tune)


def calibration_error(denoiser, entry: TunedEntry, sigmas, tune: TuneOptions) -> float:
    """Mean squared error of ``entry``'s solver on ``sigmas`` against the reference
    solution on the samples ``tune`` names (held-out seeds: does a grid generalise?)."""
    settings = SolverSettings(entry.solver, entry.steps, entry.options)
    reference = reference_solution(denoiser, float(sigmas[0]), tune)
    return float(np.mean((_run(denoiser, settings, sigmas, tune) - reference) ** 2))
