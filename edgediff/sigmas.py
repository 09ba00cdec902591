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
    try:
        lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    except OverflowError:  # a tiny ρ: σ^(1/ρ) leaves float64
        raise EdgediffError(f"rho = {rho:g} is too small for σ up to {sigma_max:g}: "
                            f"σ^(1/rho) overflows; use rho ≥ 0.1 (EDM's is 7)") from None
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


def shift_time(t, shift: float) -> np.ndarray:
    """SD3's timestep shift t ↦ s·t/(1 + (s−1)·t) (Esser et al. 2024, eq 23): a
    bijection of [0, 1]; s > 1 spends more steps at high noise."""
    t = np.asarray(t, dtype=np.float64)
    return shift * t / (1.0 + (shift - 1.0) * t)


def dynamic_shift(seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                  base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """diffusers' ``use_dynamic_shifting``: μ linear in the image's token count, from
    base_shift at base_seq_len to max_shift at max_seq_len (its ``calculate_shift``);
    its exponential ``time_shift`` e^μ/(e^μ + 1/t − 1) is ``shift_time`` with s = e^μ,
    so the grid option ``mu`` takes this value."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return float(base_shift + slope * (seq_len - base_seq_len))


def flow_times(n: int, t_min: float, t_max: float, shift: float = 1.0) -> np.ndarray:
    """n decreasing flow times t_i = shift(u_i), u_i uniform from shift⁻¹(t_max) to
    shift⁻¹(t_min), so the shifted grid spans exactly [t_min, t_max]."""
    n = check_step_count(n)
    if not (0 < t_min < t_max < 1 and 0 < shift < math.inf):
        raise EdgediffError(f"a flow grid needs 0 < t_min < t_max < 1 and shift > 0, got "
                            f"t_min={t_min}, t_max={t_max}, shift={shift}")
    lo, hi = shift_time(t_min, 1 / shift), shift_time(t_max, 1 / shift)  # shift⁻¹ = 1/shift
    u = np.linspace(hi, lo, n) if n > 1 else np.array([hi])
    return shift_time(u, shift)
