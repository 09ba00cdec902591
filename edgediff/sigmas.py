"""σ grids as formulas: decreasing arrays in float64 that end in 0 (k-diffusion's
convention), built from a σ range alone, and the check every grid passes before
a solver steps on it. ``edgediff.grids`` chooses among them for an artifact."""

from __future__ import annotations

import math

import numpy as np

from edgediff.errors import EdgediffError

DDPM_SPACINGS = ("leading", "trailing", "linspace")


def check_step_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise EdgediffError(f"the number of steps must be a whole number ≥ 1, got {n!r}")
    return int(n)


def check_range(sigma_min: float, sigma_max: float) -> None:
    if not (0.0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise EdgediffError(
            f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, "
            f"sigma_max={sigma_max}"
        )



def edm_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """EDM's ρ-schedule (Karras et al. 2022 eq 5) with σ_N = 0 appended.

    σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i < N.
    """
    n = check_step_count(n)
    check_range(sigma_min, sigma_max)
    if n == 1:
        return np.array([sigma_max, 0.0])
    ramp = np.arange(n, dtype=np.float64) / (n - 1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return np.append((hi + ramp * (lo - hi)) ** rho, 0.0)


def geometric_sigmas(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """VE's geometric grid σ_max·(σ_min/σ_max)^{i/(N−1)}, σ_N = 0 appended."""
    n = check_step_count(n)
    check_range(sigma_min, sigma_max)
    if n == 1:
        return np.array([sigma_max, 0.0])
    return np.append(np.geomspace(sigma_max, sigma_min, n), 0.0)



def ddpm_timesteps(n: int, num_train_timesteps: int = 1000, spacing: str = "leading",
                   steps_offset: int = 0) -> np.ndarray:
    """Decreasing integer timesteps, as diffusers' schedulers space them.

    'linspace' rounds an even grid over [0, T−1]; 'leading' takes multiples of
    T // n (plus ``steps_offset``); 'trailing' counts down from T − 1 in steps
    of T / n (Lin et al. 2023, Table 2).
    """
    n = check_step_count(n)
    T = check_step_count(num_train_timesteps)
    if n > T:
        raise EdgediffError(f"{n} steps asked of a chain of {T} timesteps; use at most {T}")
    if spacing == "linspace":
        steps = np.linspace(0, T - 1, n).round()[::-1]
    elif spacing == "leading":
        steps = (np.arange(n) * (T // n)).round()[::-1] + steps_offset
    elif spacing == "trailing":
        steps = np.round(np.arange(T, 0, -T / n)) - 1
    else:
        raise EdgediffError(f"unknown timestep spacing {spacing!r}; choose one of "
                            f"{', '.join(DDPM_SPACINGS)}")
    steps = steps.astype(np.int64)
    if steps.max() >= T or steps.min() < 0:
        raise EdgediffError(f"spacing {spacing!r} with steps_offset={steps_offset} leaves [0, {T})")
    return steps


def check_sigmas(sigmas) -> list[float]:
    """Validate a σ grid (decreasing, positive, ending in 0) and return float64 scalars."""
    s = np.asarray(sigmas, dtype=np.float64)
    if s.ndim != 1 or s.size < 2:
        raise EdgediffError(f"a σ grid needs at least 2 values (one step), got shape {s.shape}")
    if s[-1] != 0.0 or np.any(s[:-1] <= 0) or np.any(np.diff(s) >= 0) or not np.all(np.isfinite(s)):
        raise EdgediffError("a σ grid must be finite, strictly decreasing, positive, and end in 0")
    return s.tolist()
