"""Noise schedules σ(t), s(t) and their time grids, in NumPy float64.

Every schedule is the perturbation ``x = s(t)·(x0 + σ(t)·ε)`` of seed 003
eq (1)–(2), with ``x̂ = x / s(t)``. From σ and s alone follow the forward SDE's
drift and diffusion (eq 4–5):

    f(t) = ṡ(t) / s(t),        g(t) = s(t)·sqrt(2·σ(t)·σ̇(t)).

The solvers never see a schedule's parameters, only these functions and a
decreasing σ grid that ends in 0 (k-diffusion's convention). Each schedule's
``sigmas(n)`` is its customary grid; the free functions build the others.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from edgediff.errors import EdgediffError

ArrayLike = float | np.ndarray

DDPM_SPACINGS = ("leading", "trailing", "linspace")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _f64(t: ArrayLike) -> np.ndarray:
    return np.asarray(t, dtype=np.float64)


def _check_steps(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise EdgediffError(f"the number of steps must be a whole number ≥ 1, got {n!r}")
    return int(n)


def _check_range(sigma_min: float, sigma_max: float) -> None:
    if not (0.0 < sigma_min < sigma_max and math.isfinite(sigma_max)):
        raise EdgediffError(
            f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, "
            f"sigma_max={sigma_max}"
        )


class Schedule(ABC):
    """σ(t) and s(t) with their derivatives and σ⁻¹; f and g follow (eq 4–5)."""

    name: str

    @abstractmethod
    def sigma(self, t: ArrayLike) -> np.ndarray: ...

    @abstractmethod
    def sigma_deriv(self, t: ArrayLike) -> np.ndarray: ...

    @abstractmethod
    def sigma_inv(self, sigma: ArrayLike) -> np.ndarray: ...

    def s(self, t: ArrayLike) -> np.ndarray:
        return np.ones_like(_f64(t))

    def s_deriv(self, t: ArrayLike) -> np.ndarray:
        return np.zeros_like(_f64(t))

    def f(self, t: ArrayLike) -> np.ndarray:
        """Drift coefficient of the forward SDE, ṡ/s (eq 4)."""
        return self.s_deriv(t) / self.s(t)

    def g(self, t: ArrayLike) -> np.ndarray:
        """Diffusion coefficient of the forward SDE, s·sqrt(2σσ̇) (eq 5)."""
        return self.s(t) * np.sqrt(2.0 * self.sigma(t) * self.sigma_deriv(t))

    def prior_std(self, sigma: ArrayLike) -> np.ndarray:
        """Std of x̂ = x/s at noise level σ for unit-variance data's prior.

        Variance-exploding schedules start from x̂ ~ N(0, σ²); variance-preserving
        ones start from x ~ N(0, I), i.e. x̂ ~ N(0, 1 + σ²).
        """
        return _f64(sigma)

    @property
    @abstractmethod
    def t_range(self) -> tuple[float, float]:
        """The sampling interval (t_min, t_max) in the schedule's own time."""

    @property
    def sigma_min(self) -> float:
        return float(self.sigma(self.t_range[0]))

    @property
    def sigma_max(self) -> float:
        return float(self.sigma(self.t_range[1]))

    @abstractmethod
    def sigmas(self, n: int) -> np.ndarray:
        """The schedule's customary grid: n + 1 decreasing σ values ending in 0."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters; ``schedule_from_dict`` inverts it."""


class VPSchedule(Schedule):
    """Variance preserving (score_sde VP): linear β(t) = β_min + β_d·t.

    σ(t) = sqrt(exp(½β_d t² + β_min t) − 1) and s(t) = 1/sqrt(1 + σ²), so that
    f = −½β(t) and g = sqrt(β(t)) (seed 003 eq 17–18).
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_d: float = 19.9, eps_s: float = 1e-3):
        if not (0 < beta_min < math.inf and 0 < beta_d < math.inf and 0 < eps_s < 1):
            raise EdgediffError(
                f"VP schedule needs beta_min > 0, beta_d > 0 and 0 < eps_s < 1, got "
                f"beta_min={beta_min}, beta_d={beta_d}, eps_s={eps_s}"
            )
        self.beta_min, self.beta_d, self.eps_s = float(beta_min), float(beta_d), float(eps_s)

    def beta(self, t: ArrayLike) -> np.ndarray:
        return self.beta_min + self.beta_d * _f64(t)

    def _exponent(self, t: ArrayLike) -> np.ndarray:
        t = _f64(t)
        return 0.5 * self.beta_d * t**2 + self.beta_min * t

    def sigma(self, t):
        return np.sqrt(np.expm1(self._exponent(t)))

    def sigma_deriv(self, t):
        # d/dt sqrt(e^E − 1) = ½ β(t) e^E / σ
        return 0.5 * self.beta(t) * np.exp(self._exponent(t)) / self.sigma(t)

    def sigma_inv(self, sigma):
        e = np.log1p(_f64(sigma) ** 2)
        return (np.sqrt(self.beta_min**2 + 2.0 * self.beta_d * e) - self.beta_min) / self.beta_d

    def s(self, t):
        return np.exp(-0.5 * self._exponent(t))

    def s_deriv(self, t):
        return -0.5 * self.beta(t) * self.s(t)

    def prior_std(self, sigma):
        return np.sqrt(1.0 + _f64(sigma) ** 2)

    @property
    def t_range(self):
        return (self.eps_s, 1.0)

    def sigmas(self, n: int) -> np.ndarray:
        return vp_sigmas(n, self)

    def to_dict(self):
        return {"name": self.name, "beta_min": self.beta_min, "beta_d": self.beta_d,
                "eps_s": self.eps_s}


class VESchedule(Schedule):
    """Variance exploding in EDM form: σ(t) = sqrt(t), s = 1 (so g = 1).

    score_sde's σ(t) = σ_min(σ_max/σ_min)^t visits the same σ values; only the
    clock differs, and every solver here steps between grid σ's.
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.02, sigma_max: float = 100.0):
        _check_range(sigma_min, sigma_max)
        self._sigma_min, self._sigma_max = float(sigma_min), float(sigma_max)

    def sigma(self, t):
        return np.sqrt(_f64(t))

    def sigma_deriv(self, t):
        return 0.5 / np.sqrt(_f64(t))

    def sigma_inv(self, sigma):
        return _f64(sigma) ** 2

    @property
    def t_range(self):
        return (self._sigma_min**2, self._sigma_max**2)

    def sigmas(self, n: int) -> np.ndarray:
        return geometric_sigmas(n, self._sigma_min, self._sigma_max)

    def to_dict(self):
        return {"name": self.name, "sigma_min": self._sigma_min, "sigma_max": self._sigma_max}


class EDMSchedule(Schedule):
    """EDM (Karras et al. 2022): σ(t) = t, s = 1; time is noise level."""

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        _check_range(sigma_min, sigma_max)
        if not 0 < rho < math.inf:
            raise EdgediffError(f"rho must be a finite number > 0, got {rho}")
        self._sigma_min, self._sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)

    def sigma(self, t):
        return _f64(t).copy()

    def sigma_deriv(self, t):
        return np.ones_like(_f64(t))

    def sigma_inv(self, sigma):
        return _f64(sigma).copy()

    @property
    def t_range(self):
        return (self._sigma_min, self._sigma_max)

    def sigmas(self, n: int) -> np.ndarray:
        return edm_sigmas(n, self._sigma_min, self._sigma_max, self.rho)

    def to_dict(self):
        return {"name": self.name, "sigma_min": self._sigma_min, "sigma_max": self._sigma_max,
                "rho": self.rho}


def ddpm_betas(kind: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02,
               num_train_timesteps: int = 1000) -> np.ndarray:
    """β_1..β_T as DDPM / diffusers define them ('linear', 'scaled_linear', 'squaredcos_cap_v2')."""
    T = _check_steps(num_train_timesteps)
    if kind == "linear":
        return np.linspace(beta_start, beta_end, T, dtype=np.float64)
    if kind == "scaled_linear":
        return np.linspace(beta_start**0.5, beta_end**0.5, T, dtype=np.float64) ** 2
    if kind == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021, eq 17, β capped at 0.999
        def abar(u):
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)])
    raise EdgediffError(
        f"unknown beta schedule {kind!r}; choose one of {', '.join(BETA_SCHEDULES)}")


class DiscreteSchedule(Schedule):
    """DDPM's discrete chain: σ_i = sqrt((1 − ᾱ_i)/ᾱ_i), s_i = sqrt(ᾱ_i), i = 0..T−1.

    Between integer indices the time t is a fractional index and log σ is
    interpolated linearly — the same σ → t map the discrete preconditioners
    use for c_noise.
    """

    name = "ddpm"

    def __init__(self, alphas_cumprod: np.ndarray, config: dict[str, Any] | None = None):
        abar = _f64(alphas_cumprod)
        if abar.ndim != 1 or abar.size < 2 or not np.all((abar > 0) & (abar < 1)) \
                or not np.all(np.diff(abar) < 0):
            raise EdgediffError("alphas_cumprod must be a strictly decreasing 1-D table in (0, 1)")
        self.alphas_cumprod = abar
        self.sigma_table = np.sqrt((1.0 - abar) / abar)
        self._log_sigmas = np.log(self.sigma_table)
        self._index = np.arange(abar.size, dtype=np.float64)
        self.config = dict(config or {})

    @classmethod
    def from_betas(cls, kind: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02,
                   num_train_timesteps: int = 1000) -> DiscreteSchedule:
        betas = ddpm_betas(kind, beta_start, beta_end, num_train_timesteps)
        config = {"beta_schedule": kind, "beta_start": beta_start, "beta_end": beta_end,
                  "num_train_timesteps": num_train_timesteps}
        return cls(np.cumprod(1.0 - betas), config)

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.size

    def sigma(self, t):
        return np.exp(np.interp(_f64(t), self._index, self._log_sigmas))

    def sigma_deriv(self, t):
        t = _f64(t)
        seg = np.clip(np.floor(t).astype(np.int64), 0, self._index.size - 2)
        slope = self._log_sigmas[seg + 1] - self._log_sigmas[seg]
        return self.sigma(t) * slope

    def sigma_inv(self, sigma):
        return np.interp(np.log(_f64(sigma)), self._log_sigmas, self._index)

    def s(self, t):
        return 1.0 / np.sqrt(1.0 + self.sigma(t) ** 2)

    def s_deriv(self, t):
        s, sigma = self.s(t), self.sigma(t)
        return -(s**3) * sigma * self.sigma_deriv(t)

    def prior_std(self, sigma):
        return np.sqrt(1.0 + _f64(sigma) ** 2)

    @property
    def t_range(self):
        return (0.0, float(self.num_train_timesteps - 1))

    def timesteps(self, n: int, spacing: str = "leading", steps_offset: int = 0) -> np.ndarray:
        return ddpm_timesteps(n, self.num_train_timesteps, spacing, steps_offset)

    def sigmas(self, n: int, spacing: str = "leading", steps_offset: int = 0) -> np.ndarray:
        steps = self.timesteps(n, spacing, steps_offset)
        return np.append(self.sigma_table[steps], 0.0)

    def to_dict(self):
        return {"name": self.name, "alphas_cumprod": self.alphas_cumprod.tolist(), **self.config}


def edm_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """EDM's ρ-schedule (seed 003 eq 12) with σ_N = 0 appended.

    σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i < N.
    """
    n = _check_steps(n)
    _check_range(sigma_min, sigma_max)
    if n == 1:
        return np.array([sigma_max, 0.0])
    ramp = np.arange(n, dtype=np.float64) / (n - 1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return np.append((hi + ramp * (lo - hi)) ** rho, 0.0)


def geometric_sigmas(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """VE's geometric grid σ_max·(σ_min/σ_max)^{i/(N−1)}, σ_N = 0 appended."""
    n = _check_steps(n)
    _check_range(sigma_min, sigma_max)
    if n == 1:
        return np.array([sigma_max, 0.0])
    return np.append(np.geomspace(sigma_max, sigma_min, n), 0.0)


def time_uniform_sigmas(n: int, schedule: Schedule) -> np.ndarray:
    """σ(t_i) for t_i uniform in the schedule's own time from σ⁻¹(σ_max) to σ⁻¹(σ_min),
    σ_N = 0 appended: uniform σ for EDM, σ² for VE, t for VP (its own grid), the
    timestep index for DDPM tables (fractional, log σ interpolated)."""
    n = _check_steps(n)
    t_hi, t_lo = (float(schedule.sigma_inv(np.float64(s)))
                  for s in (schedule.sigma_max, schedule.sigma_min))
    t = np.linspace(t_hi, t_lo, n) if n > 1 else np.array([t_hi])
    return np.append(schedule.sigma(t), 0.0)


def vp_sigmas(n: int, schedule: VPSchedule) -> np.ndarray:
    """VP's uniform time grid t_i from 1 to ε_s, mapped through σ(t), σ_N = 0 appended."""
    n = _check_steps(n)
    t = np.linspace(1.0, schedule.eps_s, n) if n > 1 else np.array([1.0])
    return np.append(schedule.sigma(t), 0.0)


def ddpm_timesteps(n: int, num_train_timesteps: int = 1000, spacing: str = "leading",
                   steps_offset: int = 0) -> np.ndarray:
    """Decreasing integer timesteps, as diffusers' schedulers space them.

    'linspace' rounds an even grid over [0, T−1]; 'leading' takes multiples of
    T // n (plus ``steps_offset``); 'trailing' counts down from T − 1 in steps
    of T / n (Lin et al. 2023, Table 2).
    """
    n = _check_steps(n)
    T = _check_steps(num_train_timesteps)
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


_SCHEDULES = {"vp": VPSchedule, "ve": VESchedule, "edm": EDMSchedule}


def schedule_from_dict(d: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from ``Schedule.to_dict()``."""
    params = dict(d)
    name = params.pop("name", None)
    if name == DiscreteSchedule.name:
        if "alphas_cumprod" in params:
            return DiscreteSchedule(np.asarray(params.pop("alphas_cumprod")), params)
        return DiscreteSchedule.from_betas(
            params.get("beta_schedule", "linear"), params.get("beta_start", 1e-4),
            params.get("beta_end", 0.02), params.get("num_train_timesteps", 1000))
    if name not in _SCHEDULES:
        raise EdgediffError(f"unknown schedule {name!r}; choose one of "
                            f"{', '.join([*_SCHEDULES, DiscreteSchedule.name])}")
    try:
        return _SCHEDULES[name](**params)
    except TypeError as e:
        raise EdgediffError(f"bad parameters for the {name!r} schedule: {e}") from None
