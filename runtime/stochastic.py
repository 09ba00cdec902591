"""NumPy step loops, stochastic: DDPM, DDIM(η), reverse-SDE Euler–Maruyama, EDM,
Euler ancestral and DPM-Solver++(2M) SDE.

Same algorithms, conventions and noise draws as the torch reference
(``edgediff.samplers``): ``noise(i)`` is called only at steps that use it, so
both implementations consume the same per-sample streams
(``edgediff.streams``).
"""

from __future__ import annotations

import math

import numpy as np

from edgediff.catalogue import Churn, implements, loop_defaults
from edgediff.coefficients import ancestral_step
from edgediff.runtime._call import Call, Callback, Denoiser, NoiseFn, report
from edgediff.schedules import Schedule
from edgediff.sigmas import check_sigmas
from edgediff.steprules import GridTable, ddpm_step

Range = tuple[float, float] | None


class _Clamp:
    """D clamped to the data range into a reused buffer (diffusers' ``clip_sample``)."""

    def __init__(self, clip: Range, shape: tuple[int, ...]):
        self.clip = clip
        self.out = None if clip is None else np.empty(shape, dtype=np.float64)

    def __call__(self, denoised: np.ndarray) -> np.ndarray:
        if self.clip is None:
            return denoised
        return np.clip(denoised, self.clip[0], self.clip[1], out=self.out)


def _add_scaled(x: np.ndarray, c: float, z: np.ndarray, tmp: np.ndarray) -> None:
    np.multiply(z, c, out=tmp)
    x += tmp


@implements("ddpm", "numpy")
def ddpm(denoiser: Denoiser, x: np.ndarray, sigmas, *, noise: NoiseFn, variance: str = "small",
         clip: Range = None, callback: Callback = None) -> np.ndarray:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) from σ_i to σ_j:
    x̂' = r·x̂ + (1 − r)·D + sqrt(v)·z, r = σ_j²/σ_i², with the posterior ("small")
    or the jump's ("large") variance v; ``clip=(lo, hi)`` clamps D first."""
    loop_defaults("ddpm", variance=variance)
    sigmas = check_sigmas(sigmas)
    call, clamp = Call(denoiser, x.shape), _Clamp(clip, x.shape)
    x = np.array(x, dtype=np.float64)
    tmp = np.empty_like(x)
    for i in range(len(sigmas) - 1):
        call.step = i
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = clamp(call(x, sig))
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        r, std = ddpm_step(sig, sig_next, variance)
        x *= r
        _add_scaled(x, 1 - r, denoised, tmp)
        _add_scaled(x, std, noise(i), tmp)
    raise AssertionError("unreachable: σ grids end in 0")


@implements("ddim", "numpy")
def ddim(denoiser: Denoiser, x: np.ndarray, sigmas, *, noise: NoiseFn, eta: float = 0.0,
         clip: Range = None, callback: Callback = None) -> np.ndarray:
    """DDIM (Song et al. 2021, eq 12) in x̂-coordinates, c = η·σ_j·sqrt(1 − σ_j²/σ_i²):
    x̂' = D + sqrt(σ_j² − c²)·(x̂ − D)/σ_i + c·z. Noise only when η > 0.
    ``clip=(lo, hi)`` clamps the first D to the data range, not the one in ε̂
    (diffusers' DDIMScheduler with ``clip_sample``)."""
    loop_defaults("ddim", eta=eta)
    sigmas = check_sigmas(sigmas)
    call, clamp = Call(denoiser, x.shape), _Clamp(clip, x.shape)
    x = np.array(x, dtype=np.float64)
    tmp = np.empty_like(x)
    for i in range(len(sigmas) - 1):
        call.step = i
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = call(x, sig)
        clipped = clamp(denoised)
        report(callback, i, x, sig, sig_next, clipped)
        if sig_next == 0:
            return clipped
        c = eta * sig_next * math.sqrt(1 - (sig_next / sig) ** 2)
        x -= denoised  # σ_i·ε̂
        x *= math.sqrt(max(sig_next**2 - c**2, 0.0)) / sig
        x += clipped
        if c > 0:
            _add_scaled(x, c, noise(i), tmp)
    raise AssertionError("unreachable: σ grids end in 0")


@implements("euler_maruyama", "numpy")
def euler_maruyama(denoiser: Denoiser, x: np.ndarray, sigmas, *, schedule: Schedule,
                   noise: NoiseFn, callback: Callback = None) -> np.ndarray:
    """Euler–Maruyama on the reverse SDE (Anderson 1982; Song et al. 2021 eq 6) in the
    schedule's own t: x' = x + [f·x − g²·score]·Δt + g·sqrt(−Δt)·z, with the
    score (D(x/s; σ) − x/s)/(s·σ²) (eq 10)."""
    sigmas = check_sigmas(sigmas)
    tab = GridTable(schedule, sigmas)
    call = Call(denoiser, x.shape)
    x = np.multiply(x, tab.s[0], dtype=np.float64)
    score, tmp = np.empty_like(x), np.empty_like(x)
    for i in range(len(sigmas) - 1):
        call.step = i
        sig, s = tab.sigma[i], tab.s[i]
        denoised = call(x, sig, s)
        report(callback, i, x, sigmas[i], sigmas[i + 1], denoised, s)
        if sigmas[i + 1] == 0:
            return denoised
        np.divide(x, s, out=score)
        np.subtract(denoised, score, out=score)
        score /= s * sig**2
        dt = tab.t[i + 1] - tab.t[i]
        x *= 1 + tab.f[i] * dt  # drift: f·x·Δt
        _add_scaled(x, -tab.g[i] ** 2 * dt, score, tmp)  # drift: −g²·score·Δt
        _add_scaled(x, tab.g[i] * math.sqrt(-dt), noise(i), tmp)  # diffusion
    raise AssertionError("unreachable: σ grids end in 0")


@implements("edm", "numpy")
def edm(denoiser: Denoiser, x: np.ndarray, sigmas, *, noise: NoiseFn, churn: Churn = Churn(),
        callback: Callback = None) -> np.ndarray:
    """EDM's stochastic solver (Karras et al. 2022, Algorithm 2) in (x̂, σ): churn
    to t̂ = (1 + γ)·t_i with γ = min(S_churn/N, √2 − 1) inside [S_tmin, S_tmax],
    then a Heun step to t_{i+1} (Euler on the last). Noise only where γ > 0."""
    sigmas = check_sigmas(sigmas)
    n = len(sigmas) - 1
    call = Call(denoiser, x.shape)
    x = np.array(x, dtype=np.float64)
    d_cur, d_prime, x_next, tmp = (np.empty_like(x) for _ in range(4))
    for i in range(n):
        call.step = i
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        # Increase noise temporarily
        gamma = churn.gamma(t_cur, n)
        t_hat = t_cur + gamma * t_cur
        if gamma > 0:
            _add_scaled(x, math.sqrt(t_hat**2 - t_cur**2) * churn.S_noise, noise(i), tmp)
        # Euler step
        denoised = call(x, t_hat)
        report(callback, i, x, t_hat, t_next, denoised)
        if t_next == 0:
            return denoised
        np.subtract(x, denoised, out=d_cur)
        d_cur /= t_hat
        np.multiply(d_cur, t_next - t_hat, out=x_next)
        x_next += x
        # Apply 2nd order correction
        np.subtract(x_next, call(x_next, t_next), out=d_prime)
        d_prime /= t_next
        d_cur += d_prime
        d_cur *= 0.5 * (t_next - t_hat)
        x += d_cur
    raise AssertionError("unreachable: σ grids end in 0")


@implements("euler_ancestral", "numpy")
def euler_ancestral(denoiser: Denoiser, x: np.ndarray, sigmas, *, noise: NoiseFn,
                    eta: float = 1.0, callback: Callback = None) -> np.ndarray:
    """Euler ancestral (k-diffusion's ``sample_euler_ancestral``): an Euler step of
    the PF-ODE in (x̂, σ) down to σ_down, then fresh noise σ_up·z back up to σ_j
    (``edgediff.coefficients.ancestral_step``). Noise only where σ_up > 0."""
    loop_defaults("euler_ancestral", eta=eta)
    sigmas = check_sigmas(sigmas)
    call = Call(denoiser, x.shape)
    x = np.array(x, dtype=np.float64)
    tmp = np.empty_like(x)
    for i in range(len(sigmas) - 1):
        call.step = i
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = call(x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        sigma_down, sigma_up = ancestral_step(sig, sig_next, eta)
        x -= denoised  # Euler step to σ_down: x̂ + (σ_down − σ)·(x̂ − D)/σ
        x *= sigma_down / sig
        x += denoised
        if sigma_up > 0:
            _add_scaled(x, sigma_up, noise(i), tmp)
    raise AssertionError("unreachable: σ grids end in 0")


@implements("dpmpp_2m_sde", "numpy")
def dpmpp_2m_sde(denoiser: Denoiser, x: np.ndarray, sigmas, *, noise: NoiseFn,
                 eta: float = 1.0, callback: Callback = None) -> np.ndarray:
    """DPM-Solver++(2M) SDE, midpoint form (Lu et al. 2022; k-diffusion's
    ``sample_dpmpp_2m_sde``), λ = −log σ, h = λ_{i+1} − λ_i:
    x̂' = (σ'/σ)e^{−ηh}·x̂ + (1 − e^{−(1+η)h})·(D + (D − D_old)/(2r))
    + σ'·sqrt(1 − e^{−2ηh})·z, r = h_old/h (first step: D alone)."""
    loop_defaults("dpmpp_2m_sde", eta=eta)
    sigmas = check_sigmas(sigmas)
    call = Call(denoiser, x.shape)
    x = np.array(x, dtype=np.float64)
    old_denoised, tmp = np.empty_like(x), np.empty_like(x)
    h_last = None
    for i in range(len(sigmas) - 1):
        call.step = i
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = call(x, sig)
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        h = math.log(sig / sig_next)
        c = -math.expm1(-(1 + eta) * h)
        x *= sig_next / sig * math.exp(-eta * h)
        _add_scaled(x, c, denoised, tmp)
        if h_last is not None:  # 2nd order, midpoint
            np.subtract(denoised, old_denoised, out=old_denoised)
            _add_scaled(x, 0.5 * c * h / h_last, old_denoised, tmp)
        if eta > 0:
            _add_scaled(x, sig_next * math.sqrt(-math.expm1(-2 * eta * h)), noise(i), tmp)
        np.copyto(old_denoised, denoised)
        h_last = h
    raise AssertionError("unreachable: σ grids end in 0")


@implements("cm", "numpy")
def cm(denoiser: Denoiser, x: np.ndarray, sigmas, *, noise: NoiseFn, sigma_min: float = 0.002,
       clip: Range = None, callback: Callback = None) -> np.ndarray:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): x̂ ← D(x̂; σ_i)
    (a consistency model's f, its boundary condition inside the graph), then
    x̂ ← D + sqrt(σ_{i+1}² − σ_min²)·z before the next call; the last call's D is
    the sample, so one step draws no noise. ``clip`` clamps D to the data range
    (diffusers' ``clip_denoised``). σ's below σ_min re-noise by nothing, as
    diffusers' CMStochasticIterativeScheduler clamps them."""
    sigma_min = loop_defaults("cm", sigma_min=sigma_min)["sigma_min"]
    return _consistency(denoiser, x, sigmas, noise, sigma_min, clip, callback)


@implements("lcm", "numpy")
def lcm(denoiser: Denoiser, x: np.ndarray, sigmas, *, noise: NoiseFn, sigma_min: float = 0.0,
        clip: Range = None, callback: Callback = None) -> np.ndarray:
    """``cm`` with σ_min = 0 by default: the loop of LCM's scheduler and of
    k-diffusion's ``sample_lcm`` (x̂ ← D + σ_{i+1}·z)."""
    sigma_min = loop_defaults("lcm", sigma_min=sigma_min)["sigma_min"]
    return _consistency(denoiser, x, sigmas, noise, sigma_min, clip, callback)


def _consistency(denoiser: Denoiser, x: np.ndarray, sigmas, noise: NoiseFn, sigma_min: float,
                 clip: Range, callback: Callback) -> np.ndarray:
    sigmas = check_sigmas(sigmas)
    call, clamp = Call(denoiser, x.shape), _Clamp(clip, x.shape)
    x = np.array(x, dtype=np.float64)
    tmp = np.empty_like(x)
    for i in range(len(sigmas) - 1):
        call.step = i
        sig, sig_next = sigmas[i], sigmas[i + 1]
        denoised = clamp(call(x, sig))
        report(callback, i, x, sig, sig_next, denoised)
        if sig_next == 0:
            return denoised
        np.copyto(x, denoised)
        std = math.sqrt(max(sig_next**2 - sigma_min**2, 0.0))
        if std > 0:
            _add_scaled(x, std, noise(i), tmp)
    raise AssertionError("unreachable: σ grids end in 0")
