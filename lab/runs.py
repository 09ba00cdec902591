"""What ``bench`` runs: the study plan from a suite (configs/bench.toml) or from
solvers × steps/NFE, every run checked before the first one starts."""

from __future__ import annotations

from typing import Any

from edgediff.catalogue import SOLVER_NAMES, steps_for_nfe
from edgediff.errors import EdgediffError

# a run: (label, solver, steps, options)
Run = tuple[str, str, int, dict[str, Any]]


def _ints(text: str | None, what: str) -> list[int]:
    if text is None:
        return []
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgediffError(f"{what} takes comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise EdgediffError(f"{what} must be integers ≥ 1, got {text!r}")
    return values


def _value(text: str):
    """An option value as TOML would read it: integer, float, true/false or a word."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_solver(text: str) -> tuple[str, dict]:
    """``name`` or ``name:option=value[:option=value…]`` (e.g. ``unipc:order=2``)."""
    name, *pairs = text.strip().split(":")
    if name not in SOLVER_NAMES:
        raise EdgediffError(f"unknown solver {name!r}; choose from {', '.join(SOLVER_NAMES)}")
    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise EdgediffError(f"--solvers: {text!r}: options go as name:option=value, e.g. "
                                f"unipc:order=2")
        options[key] = _value(value)
    return name, options


def plan_runs(suite, solvers, steps, nfe_list):
    """(runs, suite's sample count) from a suite or from --solvers × --steps/--nfe."""
    if suite:
        if solvers or steps or nfe_list:
            raise EdgediffError("give either --suite or --solvers with --steps/--nfe, not both")
        from edgediff.configs import suite_runs

        return suite_runs(suite)
    chosen = [parse_solver(s) for s in (solvers or "euler,heun,dpmpp_2m").split(",")
              if s.strip()]
    step_list, nfes = _ints(steps, "--steps"), _ints(nfe_list, "--nfe")
    if step_list and nfes:
        raise EdgediffError("give --steps or --nfe, not both")
    if not step_list and not nfes:
        nfes = [5, 9, 19, 35]
    runs = []
    for name, options in chosen:
        tag = "".join(f"({k}={v})" for k, v in options.items())
        for n in dict.fromkeys(step_list or [steps_for_nfe(name, n) for n in nfes]):
            runs.append((f"{name}{tag}-{n}", name, n, options))
    return runs, None


def check_runs(info, runs) -> None:
    """Every run's solver, steps, options and σ grid, checked before the first one
    starts: a bad value in the last run of a suite should not cost the others."""
    from edgediff.grids import exact_grid, settings_grid
    from edgediff.settings import SolverSettings

    for label, solver, steps, options in runs:
        try:
            options = dict(options)
            exact = exact_grid(info, options)
            if exact is None:
                settings_grid(info, SolverSettings.resolve(info, solver, steps, options))
            else:
                SolverSettings.resolve(info, solver, len(exact) - 1, options)
        except EdgediffError as e:
            raise EdgediffError(f"run {label}: {e}") from None


def guidance_scales(text: str | None, info) -> list[float] | None:
    if text is None:
        return None
    if not info.num_classes:
        raise EdgediffError("--guidance sweeps classifier-free guidance, which needs a "
                            "class-conditional model")
    from edgediff.conditioning import check_guidance

    try:
        return [check_guidance(float(v)) for v in text.split(",") if v.strip()] or None
    except ValueError:
        raise EdgediffError(f"--guidance takes comma-separated scales, got {text!r}") from None
