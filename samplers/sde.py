"""Stochastic differential samplers: reverse-SDE Euler–Maruyama, EDM's sampler and
DPM-Solver++(2M) SDE."""

from __future__ import annotations

import math

import torch

from edgediff.catalogue import Churn, implements, loop_defaults
from edgediff.samplers._common import (
    Callback,
    Denoiser,
    Noise,
    ScheduleTable,
    as_sigmas,
    denoise,
    noise_source,
    report,
    start_state,
)
from edgediff.schedules import Schedule


@implements("euler_maruyama", "torch")
@torch.no_grad()
def euler_maruyama(denoiser: Denoiser, x: torch.Tensor, sigmas, *, schedule: Schedule,
                   noise: Noise = None, generator: torch.Generator | None = None,
                   callback: Callback = None) -> torch.Tensor:
    """Euler–Maruyama on the reverse SDE (Anderson 1982; Song et al. 2021 eq 6):

        dx = [f(t)·x − g(t)²·∇ₓlog p_t(x)] dt + g(t) dw̄,   Δt = t_{i+1} − t_i < 0,

    stepped in the schedule's own t, with the score from the denoiser (eq 10):
    ∇ₓlog p_t(x) = (D(x/s; σ) − x/s)/(s·σ²). The last step returns D.
    """
    sigmas = as_sigmas(sigmas)
    tab = ScheduleTable(schedule, sigmas)
    x = start_state(x) * tab.s[0]
    z = noise_source(noise, x, generator)
    for i in range(len(sigmas) - 1):
        sig, s = tab.sigma[i], tab.s[i]
        denoised = denoise(denoiser, x / s, sig)
        report(callback, i, x / s, sigmas[i], sigmas[i + 1], denoised)
        if sigmas[i + 1] == 0:
            return denoised
        score = (denoised - x / s) / (s * sig**2)
        dt = tab.t[i + 1] - tab.t[i]
        drift = tab.f[i] * x - tab.g[i] ** 2 * score
        x = x + drift * dt + tab.g[i] * math.sqrt(-dt) * z(i)
    raise AssertionError("unreachable: σ grids end in 0")


@implements("edm", "torch")
@torch.no_grad()
def edm(denoiser: Denoiser, x: torch.Tensor, sigmas, *, churn: Churn = Churn(),
        noise: Noise = None, generator: torch.Generator | None = None,
        callback: Callback = None) -> torch.Tensor:
    """EDM's stochastic solver (Karras et al. 2022, Algorithm 2), in (x̂, σ).

    At each t_i in [S_tmin, S_tmax], raise the noise level to t̂ = (1 + γ)·t_i,
    γ = min(S_churn/N, √2 − 1), by adding sqrt(t̂² − t_i²)·S_noise·z; then take
    a Heun step from t̂ to t_{i+1} (Euler on the last one, to σ = 0). Noise is
    drawn only at steps with γ > 0; S_churn = 0 is exactly ``heun``.
    """
    sigmas = as_sigmas(sigmas)
    n = len(sigmas) - 1
    x = start_state(x)
    z = noise_source(noise, x, generator)
    for i in range(n):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        # Increase noise temporarily
        gamma = churn.gamma(t_cur, n)
        t_hat = t_cur + gamma * t_cur
        x_hat = x + math.sqrt(t_hat**2 - t_cur**2) * churn.S_noise * z(i) if gamma > 0 else x
        # Euler step
        denoised = denoise(denoiser, x_hat, t_hat)
        report(callback, i, x_hat, t_hat, t_next, denoised)
        if t_next == 0:
            return denoised
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        # Apply 2nd order correction
        d_prime = (x_next - denoise(denoiser, x_next, t_next)) / t_next
        x = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    raise AssertionError("unreachable: σ grids end in 0")


@implements("dpmpp_2m_sde", "torch")
@torch.no_grad()
def dpmpp_2m_sde(denoiser: Denoiser, x: torch.Tensor, sigmas, *, eta: float = 1.0,
                 noise: Noise = None, generator: torch.Generator | None = None,
                 callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022, SDE-DPM-Solver++; k-diffusion's
    ``sample_dpmpp_2m_sde``, midpoint), λ = −log σ, h = λ_{i+1} − λ_i:

        x̂' = (σ'/σ)e^{−ηh}·x̂ + (1 − e^{−(1+η)h})·D
             + ½(1 − e^{−(1+η)h})·(D − D_old)/r + σ'·sqrt(1 − e^{−2ηh})·z,

    r = h_old/h, the D_old term from the second step on. η = 1 discretises the
    reverse SDE, η = 0 is DPM-Solver++(2M). Noise is drawn only when η > 0.
    """
    loop_defaults("dpmpp_2m_sde", eta=eta)
    sigmas = as_sigmas(sigmas)
    x = start_state(x)
    z = noise_source(noise, x, generator)
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(denoiser, x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        h = math.log(sig / sig_next)
        c = -math.expm1(-(1 + eta) * h)
        x = (sig_next / sig) * math.exp(-eta * h) * x + c * denoised
        if old_denoised is not None:  # 2nd order, midpoint
            x = x + 0.5 * c * (denoised - old_denoised) / (h_last / h)
        if eta > 0:
            x = x + sig_next * math.sqrt(-math.expm1(-2 * eta * h)) * z(i)
        old_denoised, h_last = denoised, h
    raise AssertionError("unreachable: σ grids end in 0")
