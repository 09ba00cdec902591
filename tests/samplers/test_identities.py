"""Exact identities between samplers, given identical noise."""

import math

import numpy as np
import pytest
import torch

from edgediff.catalogue import SOLVER_NAMES, Churn, nfe
from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.models.analytic import GaussianMixtureDenoiser
from edgediff.samplers import SOLVERS, ddim, ddpm, edm, euler, euler_maruyama, heun
from edgediff.schedules import EDMSchedule, VPSchedule

EDM = EDMSchedule()
DDPM = DiscreteSchedule.from_betas()
GRIDS = {"edm-18": EDM.sigmas(18), "ddpm-trailing-25": DDPM.sigmas(25, "trailing")}


def start(mixture, sigmas, batch=64, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((batch, mixture.dim)) * sigmas[0])
    z = torch.from_numpy(rng.standard_normal((len(sigmas) - 1, batch, mixture.dim)))
    return x, z


@pytest.mark.parametrize("grid", GRIDS)
def test_ddim_eta_0_is_euler_in_x_hat_sigma(mixture_2d, grid):
    D, sigmas = GaussianMixtureDenoiser(mixture_2d), GRIDS[grid]
    x, _ = start(mixture_2d, sigmas)
    torch.testing.assert_close(ddim(D, x, sigmas, eta=0.0), euler(D, x, sigmas),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid", GRIDS)
def test_ddim_eta_1_is_ddpm_given_the_same_noise(mixture_2d, grid):
    D, sigmas = GaussianMixtureDenoiser(mixture_2d), GRIDS[grid]
    x, z = start(mixture_2d, sigmas)
    torch.testing.assert_close(ddim(D, x, sigmas, eta=1.0, noise=z), ddpm(D, x, sigmas, noise=z),
                               rtol=0, atol=1e-12)


def test_ddim_intermediate_eta_differs_from_both_ends(mixture_2d):
    D, sigmas = GaussianMixtureDenoiser(mixture_2d), GRIDS["edm-18"]
    x, z = start(mixture_2d, sigmas)
    half = ddim(D, x, sigmas, eta=0.5, noise=z)
    assert (half - ddim(D, x, sigmas, eta=0.0)).abs().max() > 1e-2
    assert (half - ddim(D, x, sigmas, eta=1.0, noise=z)).abs().max() > 1e-2


@pytest.mark.parametrize("grid", GRIDS)
def test_edm_without_churn_is_heun(mixture_2d, grid):
    D, sigmas = GaussianMixtureDenoiser(mixture_2d), GRIDS[grid]
    x, z = start(mixture_2d, sigmas)
    expect = heun(D, x, sigmas)
    torch.testing.assert_close(edm(D, x, sigmas, churn=Churn(S_churn=0.0), noise=z), expect,
                               rtol=0, atol=1e-12)
    # churn confined to a σ window the grid never enters is no churn either
    outside = edm(D, x, sigmas, churn=Churn(S_churn=40.0, S_tmin=500.0, S_tmax=1000.0), noise=z)
    torch.testing.assert_close(outside, expect, rtol=0, atol=1e-12)
    assert (edm(D, x, sigmas, churn=Churn(S_churn=40.0), noise=z) - expect).abs().max() > 1e-2


@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_on_consecutive_indices_is_the_textbook_update(mixture_2d, variance):
    """Ho et al. 2020 Algorithm 2 in x-space with ᾱ, written independently:
    x_{t−1} = (x_t − β_t/sqrt(1 − ᾱ_t)·ε̂)/sqrt(α_t) + σ_t z, σ_t² = β̃_t or β_t."""
    T = 1000
    betas = np.linspace(1e-4, 0.02, T)
    abar = np.cumprod(1 - betas)
    sch = DiscreteSchedule.from_betas("linear", 1e-4, 0.02, T)
    D = GaussianMixtureDenoiser(mixture_2d)
    batch, rng = 16, np.random.default_rng(3)
    x_T = rng.standard_normal((batch, 2))          # x_T ~ N(0, I) in x-space
    z = rng.standard_normal((T, batch, 2))
    x = x_T.copy()
    for i, t in enumerate(range(T - 1, -1, -1)):
        x_hat = x / math.sqrt(abar[t])
        sig = torch.full((batch,), sch.sigma_table[t], dtype=torch.float64)
        d = D(torch.from_numpy(x_hat), sig).numpy()
        eps = (x - math.sqrt(abar[t]) * d) / math.sqrt(1 - abar[t])
        mean = (x - betas[t] / math.sqrt(1 - abar[t]) * eps) / math.sqrt(1 - betas[t])
        if t == 0:
            x = mean
            break
        var = betas[t] if variance == "large" else (1 - abar[t - 1]) / (1 - abar[t]) * betas[t]
        x = mean + math.sqrt(var) * z[i]
    # edgediff works in x̂ = x/sqrt(ᾱ) on the σ grid of the whole chain
    sigmas = sch.sigmas(T, "trailing")
    ours = ddpm(D, torch.from_numpy(x_T / math.sqrt(abar[-1])), sigmas,
                variance=variance, noise=torch.from_numpy(z))
    np.testing.assert_allclose(ours.numpy(), x, rtol=0, atol=1e-11)


def test_noise_is_drawn_only_where_used(mixture_2d):
    D, sigmas = GaussianMixtureDenoiser(mixture_2d), GRIDS["edm-18"]
    x, _ = start(mixture_2d, sigmas)

    def never(i):
        raise AssertionError(f"noise drawn at step {i}")

    edm(D, x, sigmas, churn=Churn(S_churn=0.0), noise=never)
    ddim(D, x, sigmas, eta=0.0, noise=never)
    drawn = []
    ddpm(D, x, sigmas, noise=lambda i: drawn.append(i) or torch.zeros_like(x))
    assert drawn == list(range(len(sigmas) - 2))       # no noise on the step to σ = 0


def test_registry_matches_the_core_catalogue_and_nfe(mixture_2d):
    assert tuple(SOLVERS) == SOLVER_NAMES
    base = GaussianMixtureDenoiser(mixture_2d)
    sigmas, vp = EDM.sigmas(7), VPSchedule()
    for name, sampler in SOLVERS.items():
        calls, steps = [], []

        def D(x, s, calls=calls):
            calls.append(1)
            return base(x, s)

        kw = {"schedule": vp} if name == "euler_maruyama" else {}
        sampler(D, torch.zeros(2, 2, dtype=torch.float64) + 80.0, sigmas,
                callback=lambda info, steps=steps: steps.append(info["i"]), **kw)
        assert len(calls) == nfe(name, 7), name
        assert steps == list(range(7)), name


def test_samplers_keep_float64_state_and_return_the_input_shape(mixture_2d):
    D = GaussianMixtureDenoiser(mixture_2d, sample_shape=(1, 2))
    x = torch.randn(3, 1, 2, dtype=torch.float32) * 80
    for name, sampler in SOLVERS.items():
        kw = {"schedule": EDM} if name == "euler_maruyama" else {}
        out = sampler(D, x, EDM.sigmas(4), **kw)
        assert out.dtype == torch.float64 and out.shape == x.shape, name


@pytest.mark.parametrize("sigmas", [[1.0], [1.0, 0.5], [0.5, 1.0, 0.0], [1.0, -0.5, 0.0],
                                    [float("nan"), 0.0]])
def test_bad_sigma_grids_are_refused(mixture_2d, sigmas):
    with pytest.raises(EdgediffError):
        euler(GaussianMixtureDenoiser(mixture_2d), torch.zeros(1, 2), sigmas)


def test_bad_options_are_refused(mixture_2d):
    D, x, sigmas = GaussianMixtureDenoiser(mixture_2d), torch.zeros(2, 2), EDM.sigmas(3)
    with pytest.raises(EdgediffError, match="small, large"):
        ddpm(D, x, sigmas, variance="medium")
    with pytest.raises(EdgediffError, match="eta"):
        ddim(D, x, sigmas, eta=-1.0)
    with pytest.raises(EdgediffError, match="S_churn"):
        edm(D, x, sigmas, churn=Churn(S_churn=-1.0))
    with pytest.raises(EdgediffError, match="shape"):
        ddpm(D, x, sigmas, noise=torch.zeros(3, 5, 2))
    with pytest.raises(TypeError):
        euler_maruyama(D, x, sigmas)  # the reverse SDE needs its schedule's f and g
