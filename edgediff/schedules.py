"""Noise schedules σ(t), s(t) and their time grids, in NumPy float64.

Every schedule is the perturbation ``x = s(t)·(x0 + σ(t)·ε)`` of Karras et al.
2022 (eq 4 and Table 1), with ``x̂ = x / s(t)``. From σ and s alone follow the forward SDE's
drift and diffusion (eq 4–5):

    f(t) = ṡ(t) / s(t),        g(t) = s(t)·sqrt(2·σ(t)·σ̇(t)).

The solvers never see a schedule's parameters, only these functions and a
decreasing σ grid that ends in 0 (k-diffusion's convention). Each schedule's
``sigmas(n)`` is its customary grid (``edgediff.sigmas`` holds the formulas;
DDPM's discrete tables are ``edgediff.discrete``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.sigmas import (
    check_range,
    check_step_count,
    edm_sigmas,
    flow_times,
    geometric_sigmas,
)

ArrayLike = float | np.ndarray


def f64(t: ArrayLike) -> np.ndarray:
    return np.asarray(t, dtype=np.float64)


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
        return np.ones_like(f64(t))

    def s_deriv(self, t: ArrayLike) -> np.ndarray:
        return np.zeros_like(f64(t))

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
        return f64(sigma)

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
    f = −½β(t) and g = sqrt(β(t)) (Song et al. 2021 eq 11).
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
        return self.beta_min + self.beta_d * f64(t)

    def _exponent(self, t: ArrayLike) -> np.ndarray:
        t = f64(t)
        return 0.5 * self.beta_d * t**2 + self.beta_min * t

    def sigma(self, t):
        return np.sqrt(np.expm1(self._exponent(t)))

    def sigma_deriv(self, t):
        # d/dt sqrt(e^E − 1) = ½ β(t) e^E / σ
        return 0.5 * self.beta(t) * np.exp(self._exponent(t)) / self.sigma(t)

    def sigma_inv(self, sigma):
        e = np.log1p(f64(sigma) ** 2)
        return (np.sqrt(self.beta_min**2 + 2.0 * self.beta_d * e) - self.beta_min) / self.beta_d

    def s(self, t):
        return np.exp(-0.5 * self._exponent(t))

    def s_deriv(self, t):
        return -0.5 * self.beta(t) * self.s(t)

    def prior_std(self, sigma):
        return np.sqrt(1.0 + f64(sigma) ** 2)

    @property
    def t_range(self):
        return (self.eps_s, 1.0)

    def sigmas(self, n: int) -> np.ndarray:
        """Uniform time t_i from 1 to ε_s, mapped through σ(t), σ_N = 0 appended."""
        n = check_step_count(n)
        t = np.linspace(1.0, self.eps_s, n) if n > 1 else np.array([1.0])
        return np.append(self.sigma(t), 0.0)

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
        check_range(sigma_min, sigma_max)
        self._sigma_min, self._sigma_max = float(sigma_min), float(sigma_max)

    def sigma(self, t):
        return np.sqrt(f64(t))

    def sigma_deriv(self, t):
        return 0.5 / np.sqrt(f64(t))

    def sigma_inv(self, sigma):
        return f64(sigma) ** 2

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
        check_range(sigma_min, sigma_max)
        if not 0 < rho < math.inf:
            raise EdgediffError(f"rho must be a finite number > 0, got {rho}")
        self._sigma_min, self._sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)

    def sigma(self, t):
        return f64(t).copy()

    def sigma_deriv(self, t):
        return np.ones_like(f64(t))

    def sigma_inv(self, sigma):
        return f64(sigma).copy()

    @property
    def t_range(self):
        return (self._sigma_min, self._sigma_max)

    def sigmas(self, n: int) -> np.ndarray:
        return edm_sigmas(n, self._sigma_min, self._sigma_max, self.rho)

    def to_dict(self):
        return {"name": self.name, "sigma_min": self._sigma_min, "sigma_max": self._sigma_max,
                "rho": self.rho}


class FlowSchedule(Schedule):
    """Rectified flow x_t = (1−t)·x0 + t·ε (docs/flow.md): s(t) = 1 − t and
    σ(t) = t/(1 − t), so x_t = s·(x0 + σ·ε) and t = σ/(1 + σ).

    t = 1 is σ = ∞, so sampling starts at ``t_max`` < 1 from x̂ ~ N(0, 1 + σ_max²), the
    exact marginal there for unit-variance data (x_t has variance (1−t)² + t²).
    ``shift`` is the default grid's timestep shift t ↦ s·t/(1 + (s−1)·t) (SD3);
    the grid options ``shift`` and ``mu`` override it per run (``edgediff.grids``).
    """

    name = "flow"

    def __init__(self, t_min: float = 1e-3, t_max: float = 1 - 1e-4, shift: float = 1.0):
        if not (0 < t_min < t_max < 1 and 0 < shift < math.inf):
            raise EdgediffError(f"flow schedule needs 0 < t_min < t_max < 1 and shift > 0, got "
                                f"t_min={t_min}, t_max={t_max}, shift={shift}")
        self.t_min, self.t_max, self.shift = float(t_min), float(t_max), float(shift)

    def sigma(self, t):
        t = f64(t)
        return t / (1.0 - t)

    def sigma_deriv(self, t):
        return 1.0 / (1.0 - f64(t)) ** 2

    def sigma_inv(self, sigma):
        sigma = f64(sigma)
        return sigma / (1.0 + sigma)

    def s(self, t):
        return 1.0 - f64(t)

    def s_deriv(self, t):
        return -np.ones_like(f64(t))

    def prior_std(self, sigma):
        return np.sqrt(1.0 + f64(sigma) ** 2)

    @property
    def t_range(self):
        return (self.t_min, self.t_max)

    def sigmas(self, n: int, shift: float | None = None) -> np.ndarray:
        """Shifted uniform time from t_max to t_min (``edgediff.sigmas.flow_times``),
        mapped through σ(t), σ_N = 0 appended."""
        t = flow_times(n, self.t_min, self.t_max, self.shift if shift is None else shift)
        return np.append(self.sigma(t), 0.0)

    def to_dict(self):
        return {"name": self.name, "t_min": self.t_min, "t_max": self.t_max, "shift": self.shift}
