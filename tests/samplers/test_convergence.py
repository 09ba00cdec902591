"""Single Gaussian N(μ, τ²I): the PF-ODE has the closed form
x̂(σ) − μ = (x̂_T − μ)·sqrt(τ² + σ²)/sqrt(τ² + σ_T²), whatever s(t) is.

Every sampler's last step returns D(x̂; σ_{N−1}), an exact function of x̂ at the
last grid point, so the oracle is D applied to the exact x̂(σ_{N−1})."""

import numpy as np
import pytest
import torch

from edgediff.models.analytic import GaussianMixtureDenoiser
from edgediff.samplers import dpmpp_2m, euler, heun
from edgediff.schedules import EDMSchedule, VESchedule, VPSchedule

SCHEDULES = {"edm": EDMSchedule(), "vp": VPSchedule(), "ve": VESchedule()}
STEPS = [16, 32, 64, 128, 256]


def exact_final(mixture, x_T, sigmas):
    mu, tau = mixture.means[0], mixture.stds[0]
    s0, s_last = sigmas[0], sigmas[-2]
    x_last = mu + (x_T - mu) * np.sqrt(tau**2 + s_last**2) / np.sqrt(tau**2 + s0**2)
    return mixture.denoise(x_last, np.full(len(x_T), s_last))


def errors(sampler, mixture, grid, **kw):
    D = GaussianMixtureDenoiser(mixture)
    out = []
    for n in STEPS:
        sigmas = grid.sigmas(n)
        x_T = np.random.default_rng(0).standard_normal((8, mixture.dim)) * sigmas[0]
        got = sampler(D, torch.from_numpy(x_T), sigmas, **kw).numpy()
        out.append(np.abs(got - exact_final(mixture, x_T, sigmas)).max())
    return np.array(out)


def observed_orders(errs):
    return np.log2(errs[:-1] / errs[1:])


# (sampler, bounds on the observed order at 128 → 256 steps)
ODE_ORDERS = {"euler": (euler, 0.9, 1.1), "heun": (heun, 1.8, 2.3)}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", ODE_ORDERS)
def test_pf_ode_solvers_converge_at_their_order(single_gaussian, name, schedule):
    sampler, lo, hi = ODE_ORDERS[name]
    errs = errors(sampler, single_gaussian, SCHEDULES[schedule], schedule=SCHEDULES[schedule])
    orders = observed_orders(errs)
    print(f"{name}/{schedule}: errors {errs}, orders {orders}")
    assert np.all(np.diff(errs) < 0)
    assert lo < orders[-1] < hi


def test_dpmpp_2m_is_second_order(single_gaussian):
    errs = errors(dpmpp_2m, single_gaussian, SCHEDULES["edm"])
    orders = observed_orders(errs)
    print(f"dpmpp_2m/edm: errors {errs}, orders {orders}")
    assert 1.7 < orders[-1] < 2.5


def test_the_schedule_changes_the_discretisation_not_the_limit(single_gaussian):
    """Euler in VP time and in σ differ at 16 steps but share the exact limit."""
    D = GaussianMixtureDenoiser(single_gaussian)
    vp = VPSchedule()
    sigmas = vp.sigmas(16)
    x_T = torch.from_numpy(np.random.default_rng(1).standard_normal((4, 3)) * sigmas[0])
    a, b = euler(D, x_T, sigmas, schedule=vp), euler(D, x_T, sigmas)
    assert (a - b).abs().max() > 1e-3
