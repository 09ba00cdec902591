"""Preconditioning: a raw network F becomes the denoiser (Karras et al. 2022 eq 7)

    D(x̂; σ) = c_skip(σ)·x̂ + c_out(σ)·F(c_in(σ)·x̂; c_noise(σ)).

Each wrapper names its four coefficients as docs/design.md ("Maths") tabulates them
(after Karras et al. 2022, Table 1, and NVlabs/edm ``training/networks.py``).
The coefficients and the σ → t map are computed in float32 or better whatever
dtype the network runs in; everything is plain torch ops that export to ONNX.

A network is called as ``F(x, c_noise, class_labels=None)`` with c_noise [B].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgediff.errors import EdgediffError


class Preconditioner(nn.Module):
    """D(x̂; σ) around a network F; subclasses define ``coefficients``."""

    parameterization: str

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def coefficients(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise), each [B], for σ [B]."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sigma: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        cdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        sigma = sigma.to(cdtype).reshape(-1)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        shape = (-1,) + (1,) * (x.ndim - 1)
        net_dtype = _dtype_of(self.model, x.dtype)
        # c_noise stays in float32 or better: networks embed it before casting
        F_x = self.model((c_in.reshape(shape) * x.to(cdtype)).to(net_dtype), c_noise,
                         class_labels)
        D_x = c_skip.reshape(shape) * x.to(cdtype) + c_out.reshape(shape) * F_x.to(cdtype)
        return D_x.to(x.dtype)


def _dtype_of(model: nn.Module, default: torch.dtype) -> torch.dtype:
    p = next(iter(model.parameters()), None)
    return p.dtype if p is not None and p.dtype.is_floating_point else default


class VPPrecond(Preconditioner):
    """VP (Song et al. 2021): c_skip 1, c_out −σ, c_in 1/sqrt(σ²+1),
    c_noise (M−1)·σ⁻¹(σ) with the VP schedule's σ⁻¹."""

    parameterization = "vp"

    def __init__(self, model, beta_min: float = 0.1, beta_d: float = 19.9, M: int = 1000):
        super().__init__(model)
        self.beta_min, self.beta_d, self.M = float(beta_min), float(beta_d), int(M)

    def sigma_inv(self, sigma):
        e = torch.log1p(sigma**2)
        return (torch.sqrt(self.beta_min**2 + 2 * self.beta_d * e) - self.beta_min) / self.beta_d

    def coefficients(self, sigma):
        one = torch.ones_like(sigma)
        return one, -sigma, 1 / torch.sqrt(sigma**2 + 1), (self.M - 1) * self.sigma_inv(sigma)


class VEPrecond(Preconditioner):
    """VE (Song et al. 2021): c_skip 1, c_out σ, c_in 1, c_noise ln(σ/2)."""

    parameterization = "ve"

    def coefficients(self, sigma):
        one = torch.ones_like(sigma)
        return one, sigma, one, torch.log(0.5 * sigma)


class EDMPrecond(Preconditioner):
    """EDM (Karras et al. 2022): c_skip σ_d²/(σ²+σ_d²), c_out σσ_d/sqrt(σ²+σ_d²),
    c_in 1/sqrt(σ²+σ_d²), c_noise ln(σ)/4."""

    parameterization = "edm"

    def __init__(self, model, sigma_data: float = 0.5):
        super().__init__(model)
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma):
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
        c_in = 1 / torch.sqrt(sigma**2 + sd**2)
        return c_skip, c_out, c_in, torch.log(sigma) / 4


class DiscretePrecond(Preconditioner):
    """A network trained on DDPM's discrete chain (diffusers' UNets): c_noise is
    the fractional timestep t(σ), log σ interpolated over the model's σ table."""

    def __init__(self, model, alphas_cumprod):
        super().__init__(model)
        abar = np.asarray(alphas_cumprod, dtype=np.float64)
        log_sigmas = 0.5 * np.log((1 - abar) / abar)
        if abar.ndim != 1 or abar.size < 2 or not np.all(np.diff(log_sigmas) > 0):
            raise EdgediffError("a discrete model needs a strictly decreasing ᾱ table")
        self.register_buffer("log_sigmas", torch.from_numpy(log_sigmas))

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep: linear interpolation of the index over log σ_i,
        clamped to [0, T−1]. Comparison-and-sum instead of searchsorted so that
        it exports to every ONNX opset."""
        table = self.log_sigmas.to(sigma.dtype)
        log_sigma = torch.log(sigma)
        T = table.shape[0]
        low = (log_sigma[:, None] >= table[None, :]).sum(1).clamp(1, T - 1) - 1
        lo, hi = table[low], table[low + 1]
        w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
        return low.to(sigma.dtype) + w


class EpsilonPrecond(DiscretePrecond):
    """ε-prediction: c_skip 1, c_out −σ, c_in 1/sqrt(σ²+1), c_noise t(σ)."""

    parameterization = "epsilon"

    def coefficients(self, sigma):
        one = torch.ones_like(sigma)
        return one, -sigma, 1 / torch.sqrt(sigma**2 + 1), self.sigma_to_t(sigma)


class VPredictionPrecond(DiscretePrecond):
    """v-prediction (Salimans & Ho 2022): c_skip 1/(σ²+1), c_out −σ/sqrt(σ²+1),
    c_in 1/sqrt(σ²+1), c_noise t(σ)."""

    parameterization = "v_prediction"

    def coefficients(self, sigma):
        c_in = 1 / torch.sqrt(sigma**2 + 1)
        return c_in**2, -sigma * c_in, c_in, self.sigma_to_t(sigma)


class SamplePrecond(DiscretePrecond):
    """x0-prediction (diffusers' "sample"): c_skip 0, c_out 1, c_in 1/sqrt(σ²+1)."""

    parameterization = "sample"

    def coefficients(self, sigma):
        return (torch.zeros_like(sigma), torch.ones_like(sigma), 1 / torch.sqrt(sigma**2 + 1),
                self.sigma_to_t(sigma))


class LCMPrecond(DiscretePrecond):
    """A latent consistency model (Luo et al. 2023; diffusers' ``LCMScheduler``): the
    network's x̂0 (read by its ``prediction`` type) goes through the discrete
    boundary condition denoised = c_out(t)·x̂0 + c_skip(t)·x_t, with
    c_skip(t) = σ_d²/((k·t)² + σ_d²), c_out(t) = k·t/sqrt((k·t)² + σ_d²), σ_d = 0.5,
    k = ``timestep_scaling``. In edgediff's variables x_t = x̂/sqrt(σ² + 1), so with
    the prediction's own x̂0 = a·x̂ + b·F this is c_skip' = c_out(t)·a +
    c_skip(t)/sqrt(σ² + 1) and c_out' = c_out(t)·b; ``clip`` clamps x̂0 first (the
    scheduler's ``clip_sample``)."""

    parameterization = "lcm"

    def __init__(self, model, alphas_cumprod, prediction: str = "epsilon",
                 timestep_scaling: float = 10.0, clip: float | None = None):
        super().__init__(model, alphas_cumprod)
        base = PRECONDITIONERS.get(prediction)
        if base is None or not issubclass(base, DiscretePrecond) or base is LCMPrecond:
            raise EdgediffError(f"an LCM's network predicts epsilon, v_prediction or sample, "
                                f"not {prediction!r}")
        self.prediction, self.timestep_scaling = prediction, float(timestep_scaling)
        self.clip = None if clip is None else float(clip)

    def boundary(self, t: torch.Tensor):
        """(c_skip(t), c_out(t)) of the scheduler's discrete boundary condition."""
        kt, sd = self.timestep_scaling * t, 0.5
        return sd**2 / (kt**2 + sd**2), kt / torch.sqrt(kt**2 + sd**2)

    def coefficients(self, sigma):
        a, b, c_in, t = PRECONDITIONERS[self.prediction].coefficients(self, sigma)
        skip, out = self.boundary(t)
        return out * a + skip * c_in, out * b, c_in, t

    def forward(self, x, sigma, class_labels=None):
        if self.clip is None:
            return super().forward(x, sigma, class_labels)
        cdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        s = sigma.to(cdtype).reshape(-1)
        a, b, c_in, t = PRECONDITIONERS[self.prediction].coefficients(self, s)
        skip, out = self.boundary(t)
        shape = (-1,) + (1,) * (x.ndim - 1)
        xc = x.to(cdtype)
        F_x = self.model((c_in.reshape(shape) * xc).to(_dtype_of(self.model, x.dtype)), t,
                         class_labels).to(cdtype)
        x0 = (a.reshape(shape) * xc + b.reshape(shape) * F_x).clamp(-self.clip, self.clip)
        return (out.reshape(shape) * x0 + (skip * c_in).reshape(shape) * xc).to(x.dtype)


class FlowPrecond(Preconditioner):
    """Rectified flow, F predicting v = ε − x0 at x_t = (1−t)·x0 + t·ε (docs/flow.md):
    with s = 1 − t = 1/(1+σ), D = x_t − t·v reads c_skip 1/(1+σ), c_out −σ/(1+σ),
    c_in 1/(1+σ), c_noise t = σ/(1+σ) times ``timestep_scale`` (1000 for diffusers'
    transformers, which take timesteps)."""

    parameterization = "flow"

    def __init__(self, model, timestep_scale: float = 1.0):
        super().__init__(model)
        self.timestep_scale = float(timestep_scale)

    def coefficients(self, sigma):
        s = 1 / (1 + sigma)  # s(t) = 1 − t, without 1 − t's cancellation near t = 1
        t = sigma * s
        return s, -t, s, self.timestep_scale * t


class ConsistencyPrecond(Preconditioner):
    """A consistency model's f (Song et al. 2023, §3 and Appendix C): EDM's c_in with
    the boundary condition f(x, σ_min) = x built into
    c_skip σ_d²/((σ − σ_min)² + σ_d²) and c_out (σ − σ_min)·σ_d/sqrt(σ² + σ_d²), and
    c_noise ln(σ)/4 times ``noise_scale`` (1000: openai's and diffusers' consistency
    models, which take 250·ln σ)."""

    parameterization = "consistency"

    def __init__(self, model, sigma_min: float = 0.002, sigma_data: float = 0.5,
                 noise_scale: float = 1.0):
        super().__init__(model)
        self.sigma_min, self.sigma_data = float(sigma_min), float(sigma_data)
        self.noise_scale = float(noise_scale)

    def coefficients(self, sigma):
        sd, above = self.sigma_data, sigma - self.sigma_min
        c_skip = sd**2 / (above**2 + sd**2)
        c_out = above * sd / torch.sqrt(sigma**2 + sd**2)
        c_in = 1 / torch.sqrt(sigma**2 + sd**2)
        return c_skip, c_out, c_in, self.noise_scale * torch.log(sigma) / 4


PRECONDITIONERS = {cls.parameterization: cls for cls in (
    VPPrecond, VEPrecond, EDMPrecond, EpsilonPrecond, VPredictionPrecond, SamplePrecond,
    FlowPrecond, ConsistencyPrecond, LCMPrecond)}


def make_precond(parameterization: str, model: nn.Module, **kwargs) -> Preconditioner:
    if parameterization not in PRECONDITIONERS:
        raise EdgediffError(f"unknown parameterization {parameterization!r}; choose one of "
                            f"{', '.join(PRECONDITIONERS)}")
    return PRECONDITIONERS[parameterization](model, **kwargs)
