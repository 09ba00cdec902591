"""Stochastic samplers reproduce a 2-D, 3-mode mixture of unequal weights and spreads.

Statistics, per mode k (samples assigned to their most probable component; the
modes are ≥ 8 combined stds apart, so misassignment is negligible):
  weight   |ŵ_k − π_k|  ≤ Z·sqrt(π_k(1 − π_k)/n)           (binomial)
  mean     |m̂_kj − μ_kj| ≤ Z·τ_k/sqrt(n_k)                  (per coordinate)
  variance |v̂_kj − τ_k²| ≤ Z·τ_k²·sqrt(2/(n_k − 1)) + B·τ_k²   (Gaussian sample variance)
with n = 20,000 samples and Z = 5. B = 5 % allows for discretisation bias: the
exact variance recursion of a 1000-step DDPM chain on an isolated mode with
τ² = 0.04 ends 3.7 % low with the "small" variance β̃ (it drops Var(x0 | x_t))
and 0.9 % high with the "large" one; a sign or scale error moves it far more.
The same check on exact samples passes, and on every sampler run with the
score's sign flipped (D → 2x̂ − D) it fails.
"""

import numpy as np
import pytest
import torch

from edgediff.catalogue import Churn
from edgediff.discrete import DiscreteSchedule
from edgediff.lab.metrics import mode_statistics
from edgediff.models.analytic import GaussianMixtureDenoiser
from edgediff.samplers import ddpm, edm, euler_maruyama
from edgediff.schedules import EDMSchedule, VESchedule, VPSchedule

N, Z, B = 20_000, 5.0, 0.05
DDPM, EDM, VP, VE = DiscreteSchedule.from_betas(), EDMSchedule(), VPSchedule(), VESchedule()

RUNS = {  # name -> (sampler, schedule for the prior, σ grid, options)
    "ddpm-small-1000": (ddpm, DDPM, DDPM.sigmas(1000, "trailing"), {"variance": "small"}),
    "ddpm-large-1000": (ddpm, DDPM, DDPM.sigmas(1000, "trailing"), {"variance": "large"}),
    "euler_maruyama-vp-1000": (euler_maruyama, VP, VP.sigmas(1000), {"schedule": VP}),
    "euler_maruyama-ve-1000": (euler_maruyama, VE, VE.sigmas(1000), {"schedule": VE}),
    "euler_maruyama-edm-1000": (euler_maruyama, EDM, EDM.sigmas(1000), {"schedule": EDM}),
    "edm-churn40-128": (edm, EDM, EDM.sigmas(128),
                        {"churn": Churn(S_churn=40.0, S_tmin=0.05, S_tmax=50.0, S_noise=1.0)}),
}


def moment_failures(samples, mixture, n=N, z=Z, b=B):
    """Every statistic outside its tolerance, as readable lines (empty: all pass)."""
    if not np.all(np.isfinite(samples)):
        return [f"{int((~np.isfinite(samples)).any(1).sum())} non-finite samples"]
    st, out = mode_statistics(samples, mixture), []
    for k in range(mixture.num_components):
        w, tau2, nk = mixture.weights[k], mixture.stds[k] ** 2, st["count"][k]
        if abs(st["fraction"][k] - w) > z * np.sqrt(w * (1 - w) / n):
            out.append(f"mode {k}: weight {st['fraction'][k]:.4f} vs {w:.4f}")
        if nk < 2:
            out.append(f"mode {k}: {nk} samples")
            continue
        err_mean = np.abs(st["mean"][k] - mixture.means[k]).max()
        if err_mean > z * np.sqrt(tau2 / nk):
            out.append(f"mode {k}: mean off by {err_mean:.4f}")
        err_var = np.abs(st["var"][k] - tau2).max()
        if err_var > z * tau2 * np.sqrt(2 / (nk - 1)) + b * tau2:
            out.append(f"mode {k}: variance {st['var'][k]} vs {tau2:.4f}")
    return out


def run(name, mixture, flip=False):
    sampler, prior, sigmas, opts = RUNS[name]
    base = GaussianMixtureDenoiser(mixture)
    D = (lambda x, s: 2 * x - base(x, s)) if flip else base  # flipping D flips the score
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(N, mixture.dim, generator=g, dtype=torch.float64) * float(
        prior.prior_std(sigmas[0]))
    return sampler(D, x, sigmas, generator=g, **opts).numpy()


def test_exact_samples_pass_the_check(mixture_2d):
    samples, _ = mixture_2d.sample(N, np.random.default_rng(0))
    assert moment_failures(samples, mixture_2d) == []


@pytest.mark.parametrize("name", RUNS)
def test_stochastic_samplers_reproduce_the_mixture(mixture_2d, name):
    samples = run(name, mixture_2d)
    st = mode_statistics(samples, mixture_2d)
    print(f"\n{name}: weights {st['fraction']}, means {st['mean'].tolist()}, "
          f"vars {st['var'].tolist()}")
    assert moment_failures(samples, mixture_2d) == []


@pytest.mark.parametrize("name", RUNS)
def test_a_flipped_score_fails_the_same_check(mixture_2d, name):
    with np.errstate(all="ignore"):
        failures = run(name, mixture_2d, flip=True)
        failures = moment_failures(failures, mixture_2d)
    print(f"\n{name} with flipped score: {failures[:3]}")
    assert failures
