"""NumPy step loops, multistep few-step solvers: DPM-Solver++(3M), iPNDM, DEIS-tAB
and UniPC. Same algorithms, conventions and coefficients
(``edgediff.coefficients``) as the torch reference (``edgediff.samplers.multistep``):
``x`` is x̂ at ``sigmas[0]``, state is float64, the last step returns
D(x̂; σ_{N−1}). Each keeps the last few D (or ε̂) in buffers of its own, since the
call's output buffer is reused.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from edgediff.catalogue import implements, loop_defaults
from edgediff.coefficients import (
    D2_WEIGHT,
    deis_coefficients,
    dpmpp_3m_weights,
    ipndm_coefficients,
    unipc_coefficients,
    unipc_order,
)
from edgediff.runtime._call import Call, Callback, Denoiser, report
from edgediff.schedules import Schedule
from edgediff.sigmas import check_sigmas
from edgediff.steprules import EDM_IDENTITY


class _History:
    """The last ``n`` arrays pushed, newest first, in preallocated buffers."""

    def __init__(self, n: int, like: np.ndarray):
        self._free = [np.empty_like(like) for _ in range(n)]
        self.items: deque[np.ndarray] = deque()

    def push(self, a: np.ndarray) -> np.ndarray:
        buf = self._free.pop() if self._free else self.items.pop()
        np.copyto(buf, a)
        self.items.appendleft(buf)
        return buf

    def __getitem__(self, j: int) -> np.ndarray:
        return self.items[j]


def _combine(out: np.ndarray, weights, arrays, tmp: np.ndarray) -> None:
    """out += Σ_j w_j·a_j."""
    for w, a in zip(weights, arrays, strict=False):
        np.multiply(a, w, out=tmp)
        out += tmp


@implements("dpmpp_3m", "numpy")
def dpmpp_3m(denoiser: Denoiser, x: np.ndarray, sigmas, *, weights: str = "third_order",
             callback: Callback = None) -> np.ndarray:
    """DPM-Solver++(3M) (Lu et al. 2022) in (x̂, σ), λ = −log σ: orders 1, 2, then 3,
    x̂' = (σ'/σ)·x̂ + Σ_j w_j·D_{i−j} (``edgediff.coefficients.dpmpp_3m_weights``);
    ``weights="published"`` is k-diffusion's, diffusers' and A1111's D2 weight."""
    d2 = D2_WEIGHT[loop_defaults("dpmpp_3m", weights=weights)["weights"]]
    sigmas = check_sigmas(sigmas)
    call = Call(denoiser, x.shape)
    x = np.array(x, dtype=np.float64)
    hist, tmp = _History(3, x), np.empty_like(x)
    hs: list[float] = []  # earlier step sizes in λ, newest first
    for i in range(len(sigmas) - 1):
        call.step = i
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = call(x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        hist.push(denoised)
        h = math.log(sig / sig_next)
        w = dpmpp_3m_weights(h, *[*hs, None, None][:2], d2_weight=d2)
        x *= sig_next / sig
        _combine(x, w, hist.items, tmp)
        hs.insert(0, h)
    raise AssertionError("unreachable: σ grids end in 0")


def _eps_multistep(denoiser: Denoiser, x: np.ndarray, sigmas: list[float],
                   C: list[list[float]], order: int, callback: Callback) -> np.ndarray:
    """x̂_{i+1} = x̂_i + Σ_j C_ij·ε̂_{i−j}, ε̂ = (x̂ − D)/σ: the loop iPNDM and DEIS
    share; they differ only in their weights C."""
    call = Call(denoiser, x.shape)
    x = np.array(x, dtype=np.float64)
    hist, eps, tmp = _History(order, x), np.empty_like(x), np.empty_like(x)
    for i in range(len(sigmas) - 1):
        call.step = i
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = call(x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        np.subtract(x, denoised, out=eps)
        eps /= sig
        hist.push(eps)
        _combine(x, C[i], hist.items, tmp)
    raise AssertionError("unreachable: σ grids end in 0")


@implements("ipndm", "numpy")
def ipndm(denoiser: Denoiser, x: np.ndarray, sigmas, *, order: int = 4,
          callback: Callback = None) -> np.ndarray:
    """Improved PNDM (Zhang & Chen 2023, App. D; Zhou et al. 2024) in (x̂, σ):
    x̂' = x̂ + (σ' − σ)·Σ_j a_j·ε̂_{i−j}, ε̂ = (x̂ − D)/σ, with the equal-step
    Adams–Bashforth weights a of order min(order, i + 1)."""
    loop_defaults("ipndm", order=order)
    sigmas = check_sigmas(sigmas)
    return _eps_multistep(denoiser, x, sigmas, ipndm_coefficients(sigmas, order), order,
                          callback)


@implements("deis", "numpy")
def deis(denoiser: Denoiser, x: np.ndarray, sigmas, *, order: int = 3, basis: str = "t",
         schedule: Schedule | None = None, callback: Callback = None) -> np.ndarray:
    """DEIS (Zhang & Chen 2023, eq 15): x̂' = x̂ + Σ_j C_ij·ε̂_{i−j}, the polynomial
    through the last ε̂ in the schedule's time t (tAB) or in log σ (``basis``),
    integrated over the step by quadrature (``edgediff.coefficients``)."""
    loop_defaults("deis", order=order, basis=basis)
    sigmas = check_sigmas(sigmas)
    schedule = schedule or EDM_IDENTITY
    C = deis_coefficients(sigmas, order, basis, sigma_deriv=schedule.sigma_deriv,
                          t_of=schedule.sigma_inv)
    return _eps_multistep(denoiser, x, sigmas, C, order, callback)


@implements("unipc", "numpy")
def unipc(denoiser: Denoiser, x: np.ndarray, sigmas, *, order: int = 3,
          callback: Callback = None) -> np.ndarray:
    """UniPC-bh2 (Zhao et al. 2023) in (x̂, σ) with data prediction: each new D first
    corrects the state it was evaluated at (UniC, one order up, no extra NFE), then
    the predictor (UniP) steps on; orders warm up from 1 and fall on the final steps
    (``edgediff.coefficients.unipc_order``)."""
    loop_defaults("unipc", order=order)
    sigmas = check_sigmas(sigmas)
    n = len(sigmas) - 1
    lam = [-math.log(s) for s in sigmas[:-1]]
    call = Call(denoiser, x.shape)
    x = np.array(x, dtype=np.float64)
    hist, x_prev = _History(order, x), np.empty_like(x)
    d1, tmp = np.empty_like(x), np.empty_like(x)
    last = None  # the previous step: (i, p, h_φ₁, B(h), ρ^p, ρ^c)

    def update(out, base, j, p, h_phi_1, B_h, rhos, new=None):
        """out = (σ_j+1/σ_j)·base − h_φ₁·D_j − B(h)·(Σ_k ρ_k·D1_k [+ ρ_p·(new − D_j)])."""
        D_j = hist[0]  # D_j and the earlier D_{j−k} = hist[k] (D_{j+1} is ``new``)
        np.multiply(base, sigmas[j + 1] / sigmas[j], out=out)
        np.multiply(D_j, -h_phi_1, out=tmp)
        out += tmp
        for k in range(1, p):
            r_k = (lam[j - k] - lam[j]) / (lam[j + 1] - lam[j])
            np.subtract(hist[k], D_j, out=d1)
            _combine(out, [-B_h * rhos[k - 1] / r_k], [d1], tmp)
        if new is not None:
            np.subtract(new, D_j, out=d1)
            _combine(out, [-B_h * rhos[-1]], [d1], tmp)

    for i in range(n):
        call.step = i
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = call(x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        if last is not None:  # UniC: correct x̂_i with D_i
            j, p, h_phi_1, B_h, _, rhos_c = last
            update(x, x_prev, j, p, h_phi_1, B_h, rhos_c, new=denoised)
        hist.push(denoised)
        p = unipc_order(order, i, n)
        h = lam[i + 1] - lam[i]
        rks = [(lam[i - k] - lam[i]) / h for k in range(1, p)]
        h_phi_1, B_h, rhos_p, rhos_c = unipc_coefficients(h, rks, p)
        np.copyto(x_prev, x)
        update(x, x_prev, i, p, h_phi_1, B_h, rhos_p)  # UniP
        last = (i, p, h_phi_1, B_h, rhos_p, rhos_c)
    raise AssertionError("unreachable: σ grids end in 0")
