"""Multistep few-step samplers: DPM-Solver++(3M), iPNDM, DEIS-tAB and UniPC, in
(x̂, σ) with λ = −log σ. Step coefficients come from ``edgediff.coefficients``,
shared with the NumPy runtime; everything else is written out here."""

from __future__ import annotations

import math

import torch

from edgediff.catalogue import implements, loop_defaults
from edgediff.coefficients import (
    D2_WEIGHT,
    deis_coefficients,
    dpmpp_3m_weights,
    ipndm_coefficients,
    unipc_coefficients,
    unipc_order,
)
from edgediff.samplers._common import Callback, Denoiser, as_sigmas, denoise, report, start_state
from edgediff.schedules import Schedule
from edgediff.steprules import EDM_IDENTITY


@implements("dpmpp_3m", "torch")
@torch.no_grad()
def dpmpp_3m(denoiser: Denoiser, x: torch.Tensor, sigmas, *, weights: str = "third_order",
             callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(3M) (Lu et al. 2022; k-diffusion's 3M form): with the divided
    differences D1, D2 of D in λ, x̂' = (σ'/σ)x̂ + (1 − e^{−h})D + φ₂·D1 − c·φ₃·D2,
    c = 2 (``weights="third_order"``) or 1 (``"published"``); orders 1 and 2 on the
    first two steps."""
    d2 = D2_WEIGHT[loop_defaults("dpmpp_3m", weights=weights)["weights"]]
    sigmas = as_sigmas(sigmas)
    x = start_state(x)
    Ds: list[torch.Tensor] = []  # newest first
    hs: list[float] = []
    for i in range(len(sigmas) - 1):
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(denoiser, x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        Ds = [denoised, *Ds][:3]
        h = math.log(sig / sig_next)
        w = dpmpp_3m_weights(h, *[*hs, None, None][:2], d2_weight=d2)
        x = (sig_next / sig) * x + sum(w_j * D_j for w_j, D_j in zip(w, Ds, strict=False))
        hs = [h, *hs]
    raise AssertionError("unreachable: σ grids end in 0")


def _eps_multistep(denoiser: Denoiser, x: torch.Tensor, sigmas: list[float],
                   C: list[list[float]], order: int, callback: Callback) -> torch.Tensor:
    """x̂_{i+1} = x̂_i + Σ_j C_ij·ε̂_{i−j}, ε̂ = (x̂ − D)/σ (iPNDM and DEIS)."""
    x = start_state(x)
    eps: list[torch.Tensor] = []  # newest first
    for i in range(len(sigmas) - 1):
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(denoiser, x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        eps = [(x - denoised) / sig, *eps][:order]
        x = x + sum(c * e_j for c, e_j in zip(C[i], eps, strict=False))
    raise AssertionError("unreachable: σ grids end in 0")


@implements("ipndm", "torch")
@torch.no_grad()
def ipndm(denoiser: Denoiser, x: torch.Tensor, sigmas, *, order: int = 4,
          callback: Callback = None) -> torch.Tensor:
    """Improved PNDM (Zhang & Chen 2023, App. D): Adams–Bashforth on dx̂/dσ = ε̂ with
    equal-step weights, x̂' = x̂ + (σ' − σ)·Σ_j a_j·ε̂_{i−j}, order min(order, i + 1)."""
    loop_defaults("ipndm", order=order)
    sigmas = as_sigmas(sigmas)
    return _eps_multistep(denoiser, x, sigmas, ipndm_coefficients(sigmas, order), order,
                          callback)


@implements("deis", "torch")
@torch.no_grad()
def deis(denoiser: Denoiser, x: torch.Tensor, sigmas, *, order: int = 3, basis: str = "t",
         schedule: Schedule | None = None, callback: Callback = None) -> torch.Tensor:
    """DEIS (Zhang & Chen 2023, eq 15): ε̂ extrapolated by a polynomial in the
    schedule's time t (tAB) or in log σ, integrated exactly over each step:
    x̂' = x̂ + Σ_j C_ij·ε̂_{i−j}."""
    loop_defaults("deis", order=order, basis=basis)
    sigmas = as_sigmas(sigmas)
    schedule = schedule or EDM_IDENTITY
    C = deis_coefficients(sigmas, order, basis, sigma_deriv=schedule.sigma_deriv,
                          t_of=schedule.sigma_inv)
    return _eps_multistep(denoiser, x, sigmas, C, order, callback)


@implements("unipc", "torch")
@torch.no_grad()
def unipc(denoiser: Denoiser, x: torch.Tensor, sigmas, *, order: int = 3,
          callback: Callback = None) -> torch.Tensor:
    """UniPC-bh2 (Zhao et al. 2023, Algorithms 1–2, data prediction). Step i
    evaluates D_i at x̂_i, corrects x̂_i with it (UniC, order of the last predictor,
    no extra NFE), then predicts x̂_{i+1} (UniP, ``unipc_order``), with
    D1_k = (D_{i−k} − D_i)/r_k and r_k = (λ_{i−k} − λ_i)/h."""
    loop_defaults("unipc", order=order)
    sigmas = as_sigmas(sigmas)
    n = len(sigmas) - 1
    lam = [-math.log(s) for s in sigmas[:-1]]
    x = start_state(x)
    Ds: list[torch.Tensor] = []  # newest first
    prev = None  # (j, p, x̂_j, h_φ₁, B(h), ρ^c) of the last predictor step

    def base(j: int, x_j: torch.Tensor, p: int, h_phi_1: float, B_h: float, rhos) -> torch.Tensor:
        """(σ_{j+1}/σ_j)·x̂_j − h_φ₁·D_j − B(h)·Σ_{k<p} ρ_k·D1_k."""
        h = lam[j + 1] - lam[j]
        out = (sigmas[j + 1] / sigmas[j]) * x_j - h_phi_1 * Ds[0]
        for k in range(1, p):
            r_k = (lam[j - k] - lam[j]) / h
            out = out - B_h * rhos[k - 1] * (Ds[k] - Ds[0]) / r_k
        return out

    for i in range(n):
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(denoiser, x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        if prev is not None:  # UniC
            j, p_j, x_j, h_phi_1, B_h, rhos_c = prev
            x = base(j, x_j, p_j, h_phi_1, B_h, rhos_c) - B_h * rhos_c[-1] * (denoised - Ds[0])
        Ds = [denoised, *Ds][:order]
        p = unipc_order(order, i, n)
        h = lam[i + 1] - lam[i]
        h_phi_1, B_h, rhos_p, rhos_c = unipc_coefficients(
            h, [(lam[i - k] - lam[i]) / h for k in range(1, p)], p)
        prev = (i, p, x, h_phi_1, B_h, rhos_c)
        x = base(i, x, p, h_phi_1, B_h, rhos_p)  # UniP
    raise AssertionError("unreachable: σ grids end in 0")
