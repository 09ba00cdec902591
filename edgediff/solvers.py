"""The solver catalogue shared by the torch reference and the NumPy runtime."""

from __future__ import annotations

from edgediff.errors import EdgediffError

# name -> (denoiser calls per step, calls saved on the last step, uses step noise)
_SOLVERS = {
    "ddpm": (1, 0, True),
    "euler_maruyama": (1, 0, True),
    "euler": (1, 0, False),
    "heun": (2, 1, False),
    "edm": (2, 1, True),
    "ddim": (1, 0, True),
    "dpmpp_2m": (1, 0, False),
}
SOLVER_NAMES = tuple(_SOLVERS)


def check_solver(name: str) -> str:
    if name not in _SOLVERS:
        raise EdgediffError(f"unknown solver {name!r}; choose one of {', '.join(SOLVER_NAMES)}")
    return name


def nfe(name: str, steps: int) -> int:
    """Denoiser evaluations for ``steps`` steps (Heun-type: 2 per step, 1 on the last)."""
    per_step, saved, _ = _SOLVERS[check_solver(name)]
    return per_step * steps - saved
