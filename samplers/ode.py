"""Deterministic samplers: the probability-flow ODE and DPM-Solver++(2M)."""

from __future__ import annotations

import math

import torch

from edgediff.catalogue import implements
from edgediff.samplers._common import (
    Callback,
    Denoiser,
    ScheduleTable,
    as_sigmas,
    denoise,
    report,
    start_state,
)
from edgediff.schedules import Schedule
from edgediff.steprules import EDM_IDENTITY


@implements("euler", "torch")
@torch.no_grad()
def euler(denoiser: Denoiser, x: torch.Tensor, sigmas, *, schedule: Schedule | None = None,
          callback: Callback = None) -> torch.Tensor:
    """Euler's method on the PF-ODE (Karras et al. 2022 eq 4) in the schedule's own time t.

    x_{i+1} = x_i + (t_{i+1} − t_i)·dx/dt(x_i, t_i) with x = s·x̂; the last
    step, to σ = 0, returns D(x̂; σ_{N−1}). ``schedule=None`` steps in (x̂, σ).
    """
    sigmas = as_sigmas(sigmas)
    tab = ScheduleTable(schedule or EDM_IDENTITY, sigmas)
    x = start_state(x) * tab.s[0]
    for i in range(len(sigmas) - 1):
        d, denoised = tab.ode_derivative(denoiser, x, i)
        report(callback, i, x / tab.s[i], sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            return denoised
        x = x + (tab.t[i + 1] - tab.t[i]) * d  # Euler step
    raise AssertionError("unreachable: σ grids end in 0")


@implements("heun", "torch")
@torch.no_grad()
def heun(denoiser: Denoiser, x: torch.Tensor, sigmas, *, schedule: Schedule | None = None,
         callback: Callback = None) -> torch.Tensor:
    """Heun's 2nd-order method on the PF-ODE with arbitrary σ(t), s(t)
    (Karras et al. 2022, Algorithm 1); Euler on the last step, to σ = 0."""
    sigmas = as_sigmas(sigmas)
    tab = ScheduleTable(schedule or EDM_IDENTITY, sigmas)
    x = start_state(x) * tab.s[0]
    for i in range(len(sigmas) - 1):
        d_cur, denoised = tab.ode_derivative(denoiser, x, i)
        report(callback, i, x / tab.s[i], sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            return denoised
        dt = tab.t[i + 1] - tab.t[i]
        x_next = x + dt * d_cur  # Euler step
        d_prime, _ = tab.ode_derivative(denoiser, x_next, i + 1)
        x = x + dt * (0.5 * d_cur + 0.5 * d_prime)  # 2nd-order correction
    raise AssertionError("unreachable: σ grids end in 0")


@implements("dpmpp_2m", "torch")
@torch.no_grad()
def dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas, *,
             callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in (x̂, σ), λ = −log σ.

    Multistep data prediction: the first step is first order (exactly DDIM),
    later ones extrapolate D linearly in λ from the previous step's value.
    """
    sigmas = as_sigmas(sigmas)
    x = start_state(x)
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(denoiser, x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        h = math.log(sig / sig_next)  # λ_next − λ
        if old_denoised is None:
            d = denoised  # 1st-order step
        else:
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised  # 2nd-order
        x = (sig_next / sig) * x - math.expm1(-h) * d
        old_denoised, h_last = denoised, h
    raise AssertionError("unreachable: σ grids end in 0")
