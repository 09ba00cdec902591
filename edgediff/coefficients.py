"""Step coefficients of the few-step solvers, shared by the NumPy runtime and the
torch reference: plain float64 scalars from the σ grid alone, so both
implementations step with the very same numbers and differ only in how they
combine arrays.

Conventions (docs/design.md, "Maths"): the state is x̂, the PF-ODE is dx̂/dσ = ε̂ with
ε̂ = (x̂ − D)/σ, and λ = −log σ (log-SNR up to a factor 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

# Adams–Bashforth weights for equal steps, newest first (iPNDM, Zhang & Chen 2023 App. D)
ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}
_GAUSS = np.polynomial.legendre.leggauss(16)  # exact for polynomials of degree ≤ 31


def warmup_order(order: int, i: int) -> int:
    """A multistep method's order at step i: it has only i earlier evaluations."""
    return min(order, i + 1)


def ancestral_step(sig: float, sig_next: float, eta: float) -> tuple[float, float]:
    """(σ_down, σ_up) of an ancestral step σ_i → σ_j (k-diffusion's
    ``get_ancestral_step``): σ_up = min(σ_j, η·sqrt(σ_j²(σ_i² − σ_j²)/σ_i²)),
    σ_down = sqrt(σ_j² − σ_up²). The deterministic part ends at σ_down, fresh noise
    σ_up·z brings the variance back to σ_j²."""
    if sig_next == 0:
        return 0.0, 0.0
    up = min(sig_next, eta * math.sqrt(sig_next**2 * (sig**2 - sig_next**2) / sig**2))
    return math.sqrt(sig_next**2 - up**2), up


def ipndm_coefficients(sigmas: Sequence[float], order: int) -> list[list[float]]:
    """Per step i (σ_i → σ_{i+1} > 0), iPNDM's weights of
    x̂_{i+1} = x̂_i + Σ_j C_ij·ε̂_{i−j}: (σ_{i+1} − σ_i)·a_j, with a the equal-step
    Adams–Bashforth weights of order warmup_order(order, i)."""
    return [[(sigmas[i + 1] - sigmas[i]) * a for a in ADAMS_BASHFORTH[warmup_order(order, i)]]
            for i in range(len(sigmas) - 2)]


def lagrange_integrals(nodes: Sequence[float], a: float, b: float,
                       weight: Callable[[np.ndarray], np.ndarray]) -> list[float]:
    """∫_a^b ℓ_j(u)·weight(u) du for the Lagrange basis ℓ_j through ``nodes``, by
    16-point Gauss–Legendre quadrature (DEIS's coefficients, Zhang & Chen 2023 eq 15)."""
    x, w = _GAUSS
    u = 0.5 * (b - a) * x + 0.5 * (a + b)
    wu = 0.5 * (b - a) * w * weight(u)
    out = []
    for j, uj in enumerate(nodes):
        basis = np.ones_like(u)
        for k, uk in enumerate(nodes):
            if k != j:
                basis *= (u - uk) / (uj - uk)
        out.append(float(np.sum(wu * basis)))
    return out


def deis_coefficients(sigmas: Sequence[float], order: int, basis: str,
                      sigma_deriv: Callable[[np.ndarray], np.ndarray] | None = None,
                      t_of: Callable[[np.ndarray], np.ndarray] | None = None
                      ) -> list[list[float]]:
    """Per step i (σ_i → σ_{i+1} > 0), the weights C_ij of
    x̂_{i+1} = x̂_i + Σ_j C_ij·ε̂_{i−j}, j < warmup_order(order, i):
    ε̂ extrapolated by the polynomial through the last evaluations in the variable u
    and integrated exactly, C_ij = ∫_{σ_i}^{σ_{i+1}} ℓ_j(u(σ)) dσ.

    ``basis`` "t": u is the schedule's own time (DEIS-tAB; t_of = σ⁻¹ and the
    integrand carries dσ/dt); "log_rho": u = log σ (diffusers' DEIS, ρ = σ)."""
    if basis == "t":
        u = list(np.asarray(t_of(np.asarray(sigmas[:-1], dtype=np.float64)), dtype=np.float64))
        weight = sigma_deriv
    elif basis == "log_rho":
        u = [math.log(s) for s in sigmas[:-1]]
        weight = np.exp
    else:
        raise ValueError(f"unknown DEIS basis {basis!r}")
    table = []
    for i in range(len(sigmas) - 2):  # the last step, to σ = 0, returns D
        p = warmup_order(order, i)
        nodes = [u[i - j] for j in range(p)]
        table.append(lagrange_integrals(nodes, u[i], u[i + 1], weight))
    return table


D2_WEIGHT = {"third_order": 2.0, "published": 1.0}  # dpmpp_3m's ``weights`` option


def dpmpp_3m_weights(h: float, h_1: float | None, h_2: float | None, *,
                     d2_weight: float = 2.0) -> tuple[float, ...]:
    """DPM-Solver++(3M) (Lu et al. 2022, multistep data prediction) as
    x̂' = (σ'/σ)·x̂ + Σ_j w_j·D_{i−j}, with h = λ_{i+1} − λ_i and the earlier step
    sizes h_1, h_2 (None during warm-up: orders 1, then 2).

    D is extrapolated by its Taylor polynomial in λ, D + u·D' + u²/2·D'', and
    integrated exactly: x̂' = (σ'/σ)x̂ + (1 − e^{−h})·D + φ₂·(h·D') − φ₃·(h²·D''),
    φ₂ = (e^{−h} − 1)/h + 1, φ₃ = φ₂/h − ½. The divided differences give
    D1 = d1_0 + (d1_0 − d1_1)·r0/(r0 + r1) ≈ h·D' and D2 = (d1_0 − d1_1)/(r0 + r1)
    ≈ h²·D''/2, so the D2 term takes 2φ₃ (``d2_weight``). The DPM-Solver
    reference code, diffusers and k-diffusion weight it by φ₃ alone, which leaves
    an O(h³) local error: second order (tests/samplers/test_multistep.py shows
    both; ``d2_weight=1`` is their variant, the solver's ``weights="published"``)."""
    w0 = -math.expm1(-h)
    if h_1 is None:
        return (w0,)
    phi_2 = math.expm1(-h) / h + 1
    r0 = h_1 / h
    if h_2 is None:  # D1 = (D_i − D_{i−1})/r0
        return (w0 + phi_2 / r0, -phi_2 / r0)
    phi_3 = phi_2 / h - 0.5
    r1 = h_2 / h
    # d1_0 = (D_i − D_{i−1})/r0 and d1_1 = (D_{i−1} − D_{i−2})/r1, as rows over
    # (D_i, D_{i−1}, D_{i−2})
    d1_0 = np.array([1 / r0, -1 / r0, 0.0])
    d1_1 = np.array([0.0, 1 / r1, -1 / r1])
    D1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
    D2 = (d1_0 - d1_1) / (r0 + r1)
    w = phi_2 * D1 - d2_weight * phi_3 * D2
    return (w0 + float(w[0]), float(w[1]), float(w[2]))


def unipc_coefficients(h: float, rks: Sequence[float], order: int
                       ) -> tuple[float, float, list[float], list[float]]:
    """UniPC with B(h) = e^{−h} − 1 ("bh2"; Zhao et al. 2023, Algorithm 2 with the
    data-prediction model) at ``order`` p, for a step of λ-size h whose earlier
    evaluations sit at r_k = (λ_{i−k} − λ_i)/h, k = 1 … p−1.

    Returns (h_φ₁, B(h), ρ^p, ρ^c): the predictor is
    x̂' = (σ'/σ)x̂ − h_φ₁·D_i − B(h)·Σ_k ρ^p_k·D1_k and the corrector
    x̂'_c = (σ'/σ)x̂ − h_φ₁·D_i − B(h)·(Σ_k ρ^c_k·D1_k + ρ^c_p·(D_{i+1} − D_i)), with
    D1_k = (D_{i−k} − D_i)/r_k. ρ solves R·ρ = b, R_jk = r_k^j, b_j = j!·φ_{j+1}(−h)/B(h),
    φ the exponential-integrator functions; the predictor at order 2 takes ρ = ½."""
    hh = -h
    h_phi_1 = math.expm1(hh)
    B_h = math.expm1(hh)
    r = np.array([*rks, 1.0])
    R, b = [], []
    h_phi_k, factorial = h_phi_1 / hh - 1, 1
    for j in range(1, order + 1):
        R.append(r ** (j - 1))
        b.append(h_phi_k * factorial / B_h)
        factorial *= j + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    R, b = np.array(R), np.array(b)
    if order == 1:
        rhos_p = []
    elif order == 2:
        rhos_p = [0.5]
    else:
        rhos_p = np.linalg.solve(R[:-1, :-1], b[:-1]).tolist()
    rhos_c = [0.5] if order == 1 else np.linalg.solve(R, b).tolist()
    return h_phi_1, B_h, rhos_p, rhos_c


def unipc_order(order: int, i: int, steps: int) -> int:
    """UniPC's order at step i of ``steps``: warm-up from 1, and lower orders on the
    final steps (``lower_order_final``, as its authors and diffusers run it)."""
    return min(order, i + 1, steps - i)
