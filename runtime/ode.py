"""NumPy step loops, deterministic: PF-ODE Euler and Heun, DPM-Solver++(2M).

Same algorithms and conventions as the torch reference (``edgediff.samplers``):
``x`` is x̂ at ``sigmas[0]``, state is float64, the last step returns
D(x̂; σ_{N−1}). Arithmetic is in place on preallocated buffers.
"""

from __future__ import annotations

import math

import numpy as np

from edgediff.runtime._call import Call, Callback, Denoiser, report
from edgediff.schedules import Schedule
from edgediff.solvers import EDM_IDENTITY, GridTable, check_sigmas


def _ode_derivative(call: Call, tab: GridTable, x: np.ndarray, i: int, out: np.ndarray,
                    tmp: np.ndarray) -> np.ndarray:
    """out = dx/dt = a·x − b·D(x/s; σ) at grid point i (seed 003 eq 11); returns D."""
    a, b = tab.ode_coefficients(i)
    denoised = call(x, tab.sigma[i], tab.s[i])
    np.multiply(x, a, out=out)
    np.multiply(denoised, b, out=tmp)
    out -= tmp
    return denoised


def euler(denoiser: Denoiser, x: np.ndarray, sigmas, *, schedule: Schedule | None = None,
          callback: Callback = None) -> np.ndarray:
    """Euler's method on the PF-ODE (seed 003 eq 11) in the schedule's own time t;
    ``schedule=None`` steps in (x̂, σ)."""
    sigmas = check_sigmas(sigmas)
    tab = GridTable(schedule or EDM_IDENTITY, sigmas)
    call = Call(denoiser, x.shape)
    x = np.multiply(x, tab.s[0], dtype=np.float64)
    d, tmp = np.empty_like(x), np.empty_like(x)
    for i in range(len(sigmas) - 1):
        call.step = i
        denoised = _ode_derivative(call, tab, x, i, d, tmp)
        report(callback, i, x, sigmas[i], sigmas[i + 1], denoised, tab.s[i])
        if sigmas[i + 1] == 0:
            return denoised.astype(np.float64)
        d *= tab.t[i + 1] - tab.t[i]
        x += d  # Euler step
    raise AssertionError("unreachable: σ grids end in 0")


def heun(denoiser: Denoiser, x: np.ndarray, sigmas, *, schedule: Schedule | None = None,
         callback: Callback = None) -> np.ndarray:
    """Heun's 2nd-order method on the PF-ODE with arbitrary σ(t), s(t)
    (Karras et al. 2022, Algorithm 1); Euler on the last step, to σ = 0."""
    sigmas = check_sigmas(sigmas)
    tab = GridTable(schedule or EDM_IDENTITY, sigmas)
    call = Call(denoiser, x.shape)
    x = np.multiply(x, tab.s[0], dtype=np.float64)
    d_cur, d_prime, x_next, tmp = (np.empty_like(x) for _ in range(4))
    for i in range(len(sigmas) - 1):
        call.step = i
        denoised = _ode_derivative(call, tab, x, i, d_cur, tmp)
        report(callback, i, x, sigmas[i], sigmas[i + 1], denoised, tab.s[i])
        if sigmas[i + 1] == 0:
            return denoised.astype(np.float64)
        dt = tab.t[i + 1] - tab.t[i]
        np.multiply(d_cur, dt, out=x_next)
        x_next += x  # Euler step
        _ode_derivative(call, tab, x_next, i + 1, d_prime, tmp)
        d_cur += d_prime
        d_cur *= 0.5 * dt
        x += d_cur  # 2nd-order correction
    raise AssertionError("unreachable: σ grids end in 0")


def dpmpp_2m(denoiser: Denoiser, x: np.ndarray, sigmas, *, callback: Callback = None
             ) -> np.ndarray:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in (x̂, σ), λ = −log σ:
    first order on the first step, then D extrapolated linearly in λ."""
    sigmas = check_sigmas(sigmas)
    call = Call(denoiser, x.shape)
    x = np.array(x, dtype=np.float64)
    d, old_denoised, tmp = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    h_last = None
    for i in range(len(sigmas) - 1):
        call.step = i
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = call(x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised.astype(np.float64)
        h = math.log(sig / sig_next)  # λ_next − λ
        if h_last is None:
            np.copyto(d, denoised)  # 1st-order step
        else:
            r = h_last / h  # 2nd-order: (1 + 1/2r)·D − (1/2r)·D_old
            np.multiply(denoised, 1 + 1 / (2 * r), out=d)
            np.multiply(old_denoised, 1 / (2 * r), out=tmp)
            d -= tmp
        np.copyto(old_denoised, denoised)
        x *= sig_next / sig
        d *= math.expm1(-h)
        x -= d
        h_last = h
    raise AssertionError("unreachable: σ grids end in 0")
