"""NumPy step loops, deterministic: PF-ODE Euler and Heun, DPM-Solver++(2M).

Same algorithms and conventions as the torch reference (``edgediff.samplers``):
``x`` is x̂ at ``sigmas[0]``, state is float64, the last step returns
D(x̂; σ_{N−1}). Arithmetic is in place on preallocated buffers.
"""

from __future__ import annotations

import math

import numpy as np

from edgediff.catalogue import implements
from edgediff.runtime._call import Call, Callback, Denoiser, NonFiniteOutputError, report
from edgediff.schedules import Schedule
from edgediff.sigmas import check_sigmas
from edgediff.steprules import EDM_IDENTITY, GridTable


def _ode_derivative(call: Call, tab: GridTable, x: np.ndarray, i: int, out: np.ndarray,
                    tmp: np.ndarray) -> np.ndarray:
    """out = dx/dt = a·x − b·D(x/s; σ) at grid point i (Karras et al. 2022 eq 4); returns D."""
    a, b = tab.ode_coefficients(i)
    denoised = call(x, tab.sigma[i], tab.s[i])
    np.multiply(x, a, out=out)
    np.multiply(denoised, b, out=tmp)
    out -= tmp
    return denoised


@implements("euler", "numpy")
def euler(denoiser: Denoiser, x: np.ndarray, sigmas, *, schedule: Schedule | None = None,
          callback: Callback = None) -> np.ndarray:
    """Euler's method on the PF-ODE (Karras et al. 2022 eq 4) in the schedule's own time t;
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
            return denoised
        d *= tab.t[i + 1] - tab.t[i]
        x += d  # Euler step
    raise AssertionError("unreachable: σ grids end in 0")


@implements("heun", "numpy")
def heun(denoiser: Denoiser, x: np.ndarray, sigmas, *, schedule: Schedule | None = None,
         callback: Callback = None) -> np.ndarray:
    """Heun's 2nd-order method on the PF-ODE with arbitrary σ(t), s(t)
    (Karras et al. 2022, Algorithm 1); Euler on the last step, to σ = 0.

    Fused: the Euler predictor goes straight into the model's float32 input, the
    corrector is one linear combination of x, D_i and D_e (``GridTable.heun_step``),
    and the NaN/Inf guard runs once per step, on x: NaN and Inf in either D reach
    it (even times a zero coefficient), and the guard then names the first.
    """
    sigmas = check_sigmas(sigmas)
    tab = GridTable(schedule or EDM_IDENTITY, sigmas)
    n = len(sigmas) - 1
    # per step, as plain floats: σ_i, s_i, σ_{i+1}, c_x, c_d, α, β, γ
    steps = [(tab.sigma[i], tab.s[i], tab.sigma[i + 1], *tab.heun_step(i))
             for i in range(n - 1)]
    call = Call(denoiser, x.shape)
    x = np.multiply(x, tab.s[0], dtype=np.float64)
    d_i, d_e, tmp = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    x_flat, x32, sigma32, run = x.reshape(-1), call.x32, call.bound.sigma, call.bound.run
    # The call is inlined here (call.run without its guard): this loop is every
    # model's default solver, and after a model call has swept the caches each
    # Python or NumPy operation costs microseconds (benchmarks/runtime_vs_torch.py).
    for i, (sig, s, sig_e, c_x, c_d, alpha, beta, gamma) in enumerate(steps):
        if s == 1.0:
            np.copyto(x32, x, casting="same_kind")
        else:
            np.divide(x, s, out=tmp)
            np.copyto(x32, tmp, casting="same_kind")
        sigma32.fill(sig)
        np.copyto(d_i, run())
        if callback is not None:
            report(callback, i, x, sig, sigmas[i + 1], d_i, s)
        np.multiply(x, c_x, out=tmp)  # Euler step, as the next model input
        np.multiply(d_i, c_d, out=d_e)
        tmp += d_e
        np.copyto(x32, tmp, casting="same_kind")
        sigma32.fill(sig_e)
        np.copyto(d_e, run())
        x *= alpha  # 2nd-order correction
        d_i *= beta
        x += d_i
        d_e *= gamma
        x += d_e
        if not math.isfinite(np.dot(x_flat, x_flat)):
            call.step = i
            call.guard(d_i, sig)  # raises for the first non-finite D
            call.guard(d_e, sig_e)
            raise NonFiniteOutputError(f"the state overflowed at step {i} (σ = {sig_e:.6g}) "
                                       f"with a finite denoiser")
    call.step = n - 1
    denoised = call(x, tab.sigma[n - 1], tab.s[n - 1])
    report(callback, n - 1, x, sigmas[n - 1], 0.0, denoised, tab.s[n - 1])
    return denoised


@implements("dpmpp_2m", "numpy")
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
            return denoised
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
