"""Ancestral samplers on a σ grid: DDPM's posterior step, DDIM(η), Euler ancestral,
and multistep consistency sampling (cm, lcm)."""

from __future__ import annotations

import math

import torch

from edgediff.catalogue import implements, loop_defaults
from edgediff.coefficients import ancestral_step
from edgediff.samplers._common import (
    Callback,
    Denoiser,
    Noise,
    as_sigmas,
    denoise,
    noise_source,
    report,
    start_state,
)
from edgediff.steprules import ddpm_step

Range = tuple[float, float] | None


def clamp(denoised: torch.Tensor, clip: Range) -> torch.Tensor:
    return denoised if clip is None else denoised.clamp(clip[0], clip[1])


@implements("ddpm", "torch")
@torch.no_grad()
def ddpm(denoiser: Denoiser, x: torch.Tensor, sigmas, *, variance: str = "small",
         clip: Range = None, noise: Noise = None, generator: torch.Generator | None = None,
         callback: Callback = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) from σ_i to σ_j.

    In x̂-coordinates, with r = σ_j²/σ_i²:
        x̂' = r·x̂ + (1 − r)·D + sqrt(v)·z,
    v = σ_j²(1 − r) for the posterior ("small", β̃) variance, or
    v = (σ_i² − σ_j²)(1 + σ_j²)/(1 + σ_i²) for the "large" one (β of the jump,
    Ho et al. 2020 §3.2). On consecutive DDPM indices this is Ho et al.'s update.
    ``clip=(lo, hi)`` clamps D to the data range first (diffusers' ``clip_sample``).
    """
    loop_defaults("ddpm", variance=variance)
    sigmas = as_sigmas(sigmas)
    x = start_state(x)
    z = noise_source(noise, x, generator)
    for i in range(len(sigmas) - 1):
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = clamp(denoise(denoiser, x, sig), clip)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        r, std = ddpm_step(sig, sig_next, variance)
        x = r * x + (1 - r) * denoised + std * z(i)
    raise AssertionError("unreachable: σ grids end in 0")


@implements("ddim", "torch")
@torch.no_grad()
def ddim(denoiser: Denoiser, x: torch.Tensor, sigmas, *, eta: float = 0.0, clip: Range = None,
         noise: Noise = None, generator: torch.Generator | None = None,
         callback: Callback = None) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq 12) with stochasticity η, in x̂-coordinates.

    With ε̂ = (x̂ − D)/σ_i and c = η·σ_j·sqrt(1 − σ_j²/σ_i²):
        x̂' = D + sqrt(σ_j² − c²)·ε̂ + c·z.
    η = 0 is Euler on the PF-ODE in (x̂, σ); η = 1 is DDPM's "small" variance.
    Noise is drawn only when η > 0. ``clip=(lo, hi)`` clamps the D term to the data
    range but keeps ε̂ from the unclamped D, as diffusers' DDIMScheduler does with
    ``clip_sample`` (and ``use_clipped_model_output=False``, its default).
    """
    loop_defaults("ddim", eta=eta)
    sigmas = as_sigmas(sigmas)
    x = start_state(x)
    z = noise_source(noise, x, generator)
    for i in range(len(sigmas) - 1):
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(denoiser, x, sig)
        clipped = clamp(denoised, clip)
        report(callback, i, x, sig, sig_next, clipped)
        if sig_next == 0:
            return clipped
        c = eta * sig_next * math.sqrt(1 - (sig_next / sig) ** 2)
        eps = (x - denoised) / sig
        x = clipped + math.sqrt(max(sig_next**2 - c**2, 0.0)) * eps
        if c > 0:
            x = x + c * z(i)
    raise AssertionError("unreachable: σ grids end in 0")


@implements("euler_ancestral", "torch")
@torch.no_grad()
def euler_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas, *, eta: float = 1.0,
                    noise: Noise = None, generator: torch.Generator | None = None,
                    callback: Callback = None) -> torch.Tensor:
    """Euler ancestral (k-diffusion's ``sample_euler_ancestral``) in (x̂, σ):
    an Euler step of the PF-ODE to σ_down, then noise σ_up·z back up to σ_j,

        x̂' = x̂ + (σ_down − σ)·(x̂ − D)/σ + σ_up·z,

    with (σ_down, σ_up) from ``edgediff.coefficients.ancestral_step``. In σ-space this
    is DDIM(η) step for step (a test says so). Noise only where σ_up > 0.
    """
    loop_defaults("euler_ancestral", eta=eta)
    sigmas = as_sigmas(sigmas)
    x = start_state(x)
    z = noise_source(noise, x, generator)
    for i in range(len(sigmas) - 1):
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(denoiser, x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        sigma_down, sigma_up = ancestral_step(sig, sig_next, eta)
        x = x + (sigma_down - sig) * (x - denoised) / sig  # Euler step
        if sigma_up > 0:
            x = x + sigma_up * z(i)
    raise AssertionError("unreachable: σ grids end in 0")


@implements("cm", "torch")
@torch.no_grad()
def cm(denoiser: Denoiser, x: torch.Tensor, sigmas, *, sigma_min: float = 0.002,
       clip: Range = None, noise: Noise = None, generator: torch.Generator | None = None,
       callback: Callback = None) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) in x̂:

        x̂ ← D(x̂; σ_i),   then   x̂ ← x̂ + sqrt(σ_{i+1}² − σ_min²)·z

    before the next call (no noise where σ_{i+1} ≤ σ_min, as diffusers clamps);
    the last call's D is the sample. ``clip`` clamps each D to the data range.
    """
    sigma_min = loop_defaults("cm", sigma_min=sigma_min)["sigma_min"]
    return _consistency(denoiser, x, sigmas, sigma_min, clip, noise, generator, callback)


@implements("lcm", "torch")
@torch.no_grad()
def lcm(denoiser: Denoiser, x: torch.Tensor, sigmas, *, sigma_min: float = 0.0,
        clip: Range = None, noise: Noise = None, generator: torch.Generator | None = None,
        callback: Callback = None) -> torch.Tensor:
    """``cm`` with σ_min = 0: LCM's loop, k-diffusion's ``sample_lcm``."""
    sigma_min = loop_defaults("lcm", sigma_min=sigma_min)["sigma_min"]
    return _consistency(denoiser, x, sigmas, sigma_min, clip, noise, generator, callback)


def _consistency(denoiser, x, sigmas, sigma_min, clip, noise, generator, callback):
    sigmas = as_sigmas(sigmas)
    x = start_state(x)
    z = noise_source(noise, x, generator)
    for i in range(len(sigmas) - 1):
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = clamp(denoise(denoiser, x, sig), clip)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        x = denoised + math.sqrt(max(sig_next**2 - sigma_min**2, 0.0)) * z(i)
    raise AssertionError("unreachable: σ grids end in 0")
