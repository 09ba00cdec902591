"""Plumbing shared by the reference samplers: σ grids, noise, denoiser calls.

Conventions (docs/design.md, "Maths" and "Runtime"):
- state is x̂ = x/s(t) in float64; samplers that step in the schedule's own t
  (euler, heun, euler_maruyama) carry x = s·x̂ internally and return x̂;
- ``sigmas`` is decreasing and ends in 0; the last step returns the denoised
  estimate D(x̂; σ_{N−1}), i.e. the sample at σ = 0;
- a denoiser is ``D(x̂ [B, ...], σ [B]) -> denoised``, called with float64
  tensors (wrap a float32 network in ``at_precision``);
- stochastic solvers draw step noise as ``noise(i)`` only at steps that use
  it, so the NumPy runtime can feed the very same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from edgediff.errors import EdgediffError
from edgediff.sigmas import check_sigmas
from edgediff.steprules import GridTable

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[int], torch.Tensor]
Noise = torch.Tensor | NoiseFn | None
Callback = Callable[[dict[str, Any]], None] | None


def as_sigmas(sigmas: Sequence[float] | np.ndarray | torch.Tensor) -> list[float]:
    """Validate a σ grid and return it as float64 Python scalars."""
    if isinstance(sigmas, torch.Tensor):
        sigmas = sigmas.detach().cpu().double().numpy()
    return check_sigmas(sigmas)


def start_state(x: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(x) or x.ndim < 1:
        raise EdgediffError("the initial sample must be a tensor of shape [B, *sample_shape]")
    return x.detach().to(torch.float64).clone()


def noise_source(noise: Noise, x: torch.Tensor, generator: torch.Generator | None) -> NoiseFn:
    """Turn None / a [steps, *x.shape] tensor / a callable into ``noise(i)``."""
    if noise is None:
        return lambda i: torch.randn(x.shape, generator=generator, dtype=torch.float64,
                                     device=x.device)
    if callable(noise):
        return lambda i: _checked(noise(i), x).to(device=x.device, dtype=torch.float64)
    if not torch.is_tensor(noise) or tuple(noise.shape[1:]) != tuple(x.shape):
        raise EdgediffError(f"step noise must have shape [steps, {', '.join(map(str, x.shape))}]")
    return lambda i: noise[i].to(device=x.device, dtype=torch.float64)


def _checked(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if tuple(z.shape) != tuple(x.shape):
        raise EdgediffError(f"step noise has shape {tuple(z.shape)}, the sample {tuple(x.shape)}")
    return z


def denoise(denoiser: Denoiser, x_hat: torch.Tensor, sigma: float) -> torch.Tensor:
    """One denoiser call at a scalar σ, broadcast to a [B] tensor; float64 out."""
    s = torch.full((x_hat.shape[0],), sigma, dtype=x_hat.dtype, device=x_hat.device)
    out = denoiser(x_hat, s)
    if out.shape != x_hat.shape:
        raise EdgediffError(f"the denoiser returned shape {tuple(out.shape)} for input "
                            f"{tuple(x_hat.shape)}")
    return out.to(torch.float64)


def at_precision(denoiser: Denoiser, dtype: torch.dtype = torch.float32) -> Denoiser:
    """Call ``denoiser`` in ``dtype`` (float32 for networks), return float64 —
    what the NumPy runtime does at its ONNX call."""
    def call(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return denoiser(x.to(dtype), sigma.to(dtype)).to(torch.float64)
    return call


class ScheduleTable(GridTable):
    def ode_derivative(self, denoiser: Denoiser, x: torch.Tensor, i: int):
        """PF-ODE (Karras et al. 2022 eq 4) at grid point i:
        dx/dt = (σ̇/σ + ṡ/s)·x − (σ̇·s/σ)·D(x/s; σ).  Returns (dx/dt, D)."""
        a, b = self.ode_coefficients(i)
        denoised = denoise(denoiser, x / self.s[i], self.sigma[i])
        return a * x - b * denoised, denoised


def report(callback: Callback, i: int, x_hat: torch.Tensor, sigma: float, sigma_next: float,
           denoised: torch.Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x_hat, "sigma": sigma, "sigma_next": sigma_next,
                  "denoised": denoised})
