import numpy as np
import pytest
import torch

from edgediff.errors import EdgediffError
from edgediff.mixture import GaussianMixture
from edgediff.models.analytic import GaussianMixtureDenoiser
from edgediff.tolerance import mixture_denoiser_bound


def test_torch_module_equals_the_numpy_oracle(mixture_2d):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)) * 3
    sigma = np.exp(rng.uniform(np.log(0.002), np.log(80), 64))
    got = GaussianMixtureDenoiser(mixture_2d)(torch.from_numpy(x), torch.from_numpy(sigma))
    np.testing.assert_allclose(got.numpy(), mixture_2d.denoise(x, sigma), rtol=1e-12, atol=1e-12)


def test_single_gaussian_denoiser_is_the_linear_shrinkage(single_gaussian):
    mu, tau = single_gaussian.means[0], single_gaussian.stds[0]
    x = np.random.default_rng(1).standard_normal((8, 3))
    for sigma in (0.01, 0.5, 10.0):
        expect = mu + tau**2 / (tau**2 + sigma**2) * (x - mu)
        np.testing.assert_allclose(single_gaussian.denoise(x, sigma), expect, rtol=1e-12)


def test_denoiser_satisfies_tweedie(mixture_2d):
    """D(x; σ) = x + σ²·∇ log p(x; σ) (Karras et al. 2022 eq 3), by autograd
    through an independent log-density."""
    x = torch.tensor(np.random.default_rng(2).standard_normal((32, 2)) * 2, requires_grad=True)
    w, mu = torch.tensor(mixture_2d.weights), torch.tensor(mixture_2d.means)
    for sigma in (0.05, 0.7, 5.0):
        var = torch.tensor(mixture_2d.stds) ** 2 + sigma**2
        comp = torch.distributions.MultivariateNormal(
            mu, covariance_matrix=var[:, None, None] * torch.eye(2, dtype=torch.float64))
        logp = torch.logsumexp(comp.log_prob(x[:, None, :]) + w.log(), dim=1)
        (score,) = torch.autograd.grad(logp.sum(), x)
        D = GaussianMixtureDenoiser(mixture_2d)(x.detach(), torch.full((32,), sigma,
                                                                        dtype=torch.float64))
        torch.testing.assert_close(D, x.detach() + sigma**2 * score, rtol=1e-10, atol=1e-10)


def test_float32_input_gives_float32_output_close_to_float64(mixture_2d):
    D = GaussianMixtureDenoiser(mixture_2d, sample_shape=(1, 1, 2))
    x = torch.randn(5, 1, 1, 2) * 3
    s = torch.full((5,), 0.3)
    out = D(x, s)
    assert out.dtype == torch.float32 and out.shape == x.shape
    # float32 against float64: within the mixture's conditioning (edgediff.tolerance)
    err = (out.double() - D(x.double(), s.double())).abs().reshape(5, -1).max(1).values
    assert np.all(err.numpy() <= mixture_denoiser_bound(mixture_2d, x.numpy(), s.numpy()))


def test_exact_samples_have_the_mixture_moments(mixture_2d):
    x, labels = mixture_2d.sample(100_000, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(labels) / 1e5, mixture_2d.weights, atol=0.01)
    for k in range(3):
        np.testing.assert_allclose(x[labels == k].mean(0), mixture_2d.means[k], atol=0.02)
        np.testing.assert_allclose(x[labels == k].std(0), mixture_2d.stds[k], rtol=0.03)


def test_log_prob_integrates_to_one(mixture_2d):
    g = np.linspace(-6, 6, 601)
    xx, yy = np.meshgrid(g, g)
    p = np.exp(mixture_2d.log_prob(np.stack([xx.ravel(), yy.ravel()], 1), 0.1))
    assert p.sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=1e-6)


def test_bad_mixtures_are_refused():
    with pytest.raises(EdgediffError):
        GaussianMixture(np.ones(2), np.zeros((3, 2)), np.ones(3))
    with pytest.raises(EdgediffError):
        GaussianMixture(np.ones(2), np.zeros((2, 2)), np.array([1.0, -1.0]))
    with pytest.raises(EdgediffError):
        GaussianMixture.from_dict({"weights": [1.0]})
