"""Discrete DDPM schedules: a table of ᾱ_i (DDPM, diffusers' schedulers), read as
σ_i = sqrt((1 − ᾱ_i)/ᾱ_i) and s_i = sqrt(ᾱ_i), with σ interpolated on log σ
between the table's entries so continuous-time solvers can step on it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.schedules import Schedule, f64
from edgediff.sigmas import check_step_count, ddpm_timesteps

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def ddpm_betas(kind: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02,
               num_train_timesteps: int = 1000) -> np.ndarray:
    """β_1..β_T as DDPM / diffusers define them ('linear', 'scaled_linear', 'squaredcos_cap_v2')."""
    T = check_step_count(num_train_timesteps)
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
        abar = f64(alphas_cumprod)
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
        return np.exp(np.interp(f64(t), self._index, self._log_sigmas))

    def sigma_deriv(self, t):
        t = f64(t)
        seg = np.clip(np.floor(t).astype(np.int64), 0, self._index.size - 2)
        slope = self._log_sigmas[seg + 1] - self._log_sigmas[seg]
        return self.sigma(t) * slope

    def sigma_inv(self, sigma):
        return np.interp(np.log(f64(sigma)), self._log_sigmas, self._index)

    def s(self, t):
        return 1.0 / np.sqrt(1.0 + self.sigma(t) ** 2)

    def s_deriv(self, t):
        s, sigma = self.s(t), self.sigma(t)
        return -(s**3) * sigma * self.sigma_deriv(t)

    def prior_std(self, sigma):
        return np.sqrt(1.0 + f64(sigma) ** 2)

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
