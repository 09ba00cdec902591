"""Guidance as a denoiser (``edgediff.runtime.guidance``), on the exact
class-conditional mixture: its classes are its components, D given class k is
that Gaussian's exact denoiser, and the null label gives the mixture's D."""

import math

import numpy as np
import pytest

from edgediff import runtime
from edgediff.artifact import ArtifactInfo
from edgediff.conditioning import check_guidance
from edgediff.errors import EdgediffError
from edgediff.mixture import GaussianMixture, default_mixture_2d
from edgediff.runtime import RunOptions
from edgediff.runtime.guidance import Guided
from edgediff.schedules import EDMSchedule

MIXTURE = default_mixture_2d()
INFO = ArtifactInfo("analytic", EDMSchedule(), 0.002, 80.0, 0.5, (2,), (-4.0, 4.0), "unknown",
                    {"solver": "heun", "steps": 18}, "fp32")


class Labelled:
    """The exact mixture denoiser for one label, as a float32 backend; counts calls."""

    def __init__(self, label, mixture=MIXTURE):
        self.label, self.mixture, self.info, self.calls = label, mixture, INFO, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.mixture.denoise_given(x, sigma, self.label).astype(np.float32)


def test_the_conditional_oracle_is_each_components_own_denoiser():
    x = np.random.default_rng(0).standard_normal((5, 2)) * 3
    s = np.geomspace(0.01, 50, 5)
    for k in range(3):
        alone = GaussianMixture(np.array([1.0]), MIXTURE.means[k:k + 1], MIXTURE.stds[k:k + 1])
        np.testing.assert_allclose(MIXTURE.denoise_given(x, s, k), alone.denoise(x, s),
                                   rtol=1e-12)
    np.testing.assert_array_equal(MIXTURE.denoise_given(x, s, MIXTURE.null_label),
                                  MIXTURE.denoise(x, s))
    with pytest.raises(EdgediffError, match=r"integers 0…2, or 3 for none"):
        MIXTURE.denoise_given(x, s, 4)


@pytest.mark.parametrize("w", [0.0, 1.0])
def test_w_0_and_1_are_one_pass(w):
    c, u = Labelled(1), Labelled(MIXTURE.null_label)
    G = Guided(c, u, w)
    x, s = np.ones((3, 2), np.float32), np.ones(3, np.float32)
    got = G(x, s)
    want = (c if w == 1 else u)(x, s)
    assert G.passes == 1 and np.array_equal(got, want)
    assert (c.calls, u.calls) == ((2, 0) if w == 1 else (0, 2))


def test_the_combination_is_made_in_float64():
    c, u = Labelled(2), Labelled(MIXTURE.null_label)
    G = Guided(c, u, 3.5)
    x = np.random.default_rng(1).standard_normal((6, 2)).astype(np.float32)
    s = np.full(6, 0.7, np.float32)
    d_c, d_u = c(x, s).astype(np.float64), u(x, s).astype(np.float64)
    got = G(x, s)
    assert got.dtype == np.float64 and G.passes == 2
    assert np.array_equal(got, d_u + 3.5 * (d_c - d_u))


@pytest.mark.parametrize("w", [-0.5, math.nan, math.inf, True, "2"])
def test_a_bad_guidance_scale_is_refused(w):
    with pytest.raises(EdgediffError, match="finite number ≥ 0"):
        check_guidance(w)


def test_the_nan_guard_names_the_step_through_the_wrapper():
    class Breaks(Labelled):
        def __call__(self, x, sigma):
            out = super().__call__(x, sigma)
            return out * np.nan if self.calls > 4 else out

    G = Guided(Breaks(0), Labelled(MIXTURE.null_label), 2.0)
    with pytest.raises(runtime.NonFiniteOutputError, match=r"at step 4 \(σ = "):
        runtime.sample(G, 4, solver="euler", steps=10)


N, Z, B = 8000, 5.0, 0.05  # samples; standard errors; discretisation allowance (variance)


STOCHASTIC = {"edm": (64, {"S_churn": 40.0, "S_tmin": 0.05, "S_tmax": 50.0}),
              "ddpm": (256, {})}


@pytest.mark.parametrize("solver", sorted(STOCHASTIC))
@pytest.mark.parametrize("k", [0, 1, 2])
def test_guidance_1_samples_the_requested_component(k, solver):
    """w = 1 is the conditional model: the stochastic solvers reproduce component
    k's mean within Z standard errors τ/√n and its variance within Z·τ²·√(2/(n−1))
    plus a stated 5 % allowance for discretisation (as the unconditional moments
    test). Every sample is at its own component: none strays to another mode."""
    G = Guided(Labelled(k), Labelled(MIXTURE.null_label), 1.0)
    steps, options = STOCHASTIC[solver]
    x = runtime.sample(G, N, solver=solver, steps=steps, options=options, run=RunOptions(batch=N))
    mu, tau2 = MIXTURE.means[k], MIXTURE.stds[k] ** 2
    assert np.all(MIXTURE.responsibilities(x).argmax(1) == k)
    assert np.abs(x.mean(0) - mu).max() <= Z * math.sqrt(tau2 / N)
    assert np.abs(x.var(0) - tau2).max() <= Z * tau2 * math.sqrt(2 / (N - 1)) + B * tau2


def test_the_component_check_fails_on_the_unconditional_model():
    """The check above has teeth: w = 0 (null label) samples the whole mixture, whose
    weights it reproduces, and so fails "every sample at component 0"."""
    G = Guided(Labelled(0), Labelled(MIXTURE.null_label), 0.0)
    x = runtime.sample(G, N, solver="edm", steps=64, run=RunOptions(batch=N),
                       options={"S_churn": 40.0, "S_tmin": 0.05, "S_tmax": 50.0})
    share = np.bincount(MIXTURE.responsibilities(x).argmax(1), minlength=3) / N
    assert not np.all(MIXTURE.responsibilities(x).argmax(1) == 0)
    w = MIXTURE.weights
    assert np.all(np.abs(share - w) <= Z * np.sqrt(w * (1 - w) / N))


def guidance_direction_holds(x, k) -> bool:
    """The prediction for w > 1, tested with Z standard errors to spare.

    In the one-Gaussian picture of the unconditional data (mean m, variance
    s² > τ_k²), D_u = m + s²/(s² + σ²)·(x̂ − m) and D_k = μ_k + τ_k²/(τ_k² + σ²)·(x̂ − μ_k),
    so the guided D_u + w·(D_k − D_u) is linear in x̂ with slope
    w·τ_k²/(τ_k² + σ²) + (1 − w)·s²/(s² + σ²), below component k's own for w > 1:
    the flow contracts more, so the variance falls below τ_k²; and its offset
    carries (w − 1)·(μ_k − m), so the mean moves off μ_k *away from* the data mean m.
    """
    n, tau2 = len(x), MIXTURE.stds[k] ** 2
    m = (MIXTURE.weights[:, None] * MIXTURE.means).sum(0)
    away = MIXTURE.means[k] - m
    shift = (x.mean(0) - MIXTURE.means[k]) @ away / np.linalg.norm(away)
    sharper = np.all(x.var(0) < tau2 * (1 - Z * math.sqrt(2 / (n - 1))))
    return bool(sharper and shift > Z * math.sqrt(tau2 / n))


@pytest.mark.parametrize("k", [0, 1, 2])
def test_guidance_above_1_sharpens_and_pushes_away_from_the_other_classes(k):
    x = runtime.sample(Guided(Labelled(k), Labelled(MIXTURE.null_label), 3.0), 4000,
                       run=RunOptions(batch=4000), solver="heun", steps=32)
    assert guidance_direction_holds(x, k)
    # the sign flipped (guiding toward the unconditional model) must fail the check
    flipped = runtime.sample(Guided(Labelled(MIXTURE.null_label), Labelled(k), 3.0), 4000,
                             run=RunOptions(batch=4000), solver="heun", steps=32)
    assert not guidance_direction_holds(flipped, k)
