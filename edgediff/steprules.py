"""Single-step rules shared by the NumPy runtime and the torch reference: plain
float64 scalars from the σ grid and the schedule, so both implementations step
with the very same numbers and differ only in how they combine arrays."""

from __future__ import annotations

import numpy as np

from edgediff.schedules import EDMSchedule, Schedule

EDM_IDENTITY = EDMSchedule()  # σ(t) = t, s = 1: stepping in (x̂, σ)


def ddpm_step(sig: float, sig_next: float, variance: str) -> tuple[float, float]:
    """One DDPM ancestral step from σ_i to σ_j in x̂-coordinates (docs/design.md,
    "Maths"; Ho et al. 2020 eq 6–7):
    x̂' = r·x̂ + (1 − r)·D + std·z with r = σ_j²/σ_i² and std² the posterior
    ("small", σ_j²(1 − r)) or the jump's ("large", (σ_i² − σ_j²)(1 + σ_j²)/(1 + σ_i²))
    variance. Returns (r, std)."""
    r = (sig_next / sig) ** 2
    if variance == "small":
        v = sig_next**2 * (1 - r)
    else:
        v = (sig**2 - sig_next**2) * (1 + sig_next**2) / (1 + sig**2)
    return r, v**0.5


class GridTable:
    """σ(t), σ̇, s, ṡ, f, g at every grid point but the final σ = 0, as float64
    scalars: what the step loops of both implementations read per step."""

    def __init__(self, schedule: Schedule, sigmas: list[float]):
        t = schedule.sigma_inv(np.asarray(sigmas[:-1]))
        self.t = t.tolist()
        self.sigma = schedule.sigma(t).tolist()
        self.sigma_deriv = schedule.sigma_deriv(t).tolist()
        self.s = schedule.s(t).tolist()
        self.s_deriv = schedule.s_deriv(t).tolist()
        self.f = schedule.f(t).tolist()
        self.g = schedule.g(t).tolist()

    def ode_coefficients(self, i: int) -> tuple[float, float]:
        """(a, b) of the PF-ODE (Karras et al. 2022 eq 4) at grid point i:
        dx/dt = (σ̇/σ + ṡ/s)·x − (σ̇·s/σ)·D(x/s; σ) = a·x − b·D."""
        sig, dsig, s, ds = self.sigma[i], self.sigma_deriv[i], self.s[i], self.s_deriv[i]
        return dsig / sig + ds / s, dsig * s / sig

    def heun_step(self, i: int) -> tuple[float, float, float, float, float]:
        """Heun's step i → i+1 on dx/dt = a·x − b·D, written as linear combinations:
        the predictor's model input x_e/s_{i+1} = c_x·x + c_d·D_i, where
        x_e = x + Δt·(a_i·x − b_i·D_i), and the corrected state
        x' = x + Δt/2·(a_i·x − b_i·D_i + a_{i+1}·x_e − b_{i+1}·D_e) = α·x + β·D_i + γ·D_e.
        Returns (c_x, c_d, α, β, γ)."""
        (a, b), (a_e, b_e) = self.ode_coefficients(i), self.ode_coefficients(i + 1)
        dt, s_e = self.t[i + 1] - self.t[i], self.s[i + 1]
        return ((1 + dt * a) / s_e, -dt * b / s_e,
                1 + 0.5 * dt * (a + a_e * (1 + dt * a)), -0.5 * dt * b * (1 + dt * a_e),
                -0.5 * dt * b_e)

