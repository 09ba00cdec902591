import numpy as np
import pytest

from edgediff.lab.features import DigitsFeatures
from edgediff.lab.metrics import (
    frechet_distance,
    frechet_distance_from_moments,
    sliced_wasserstein,
)


def test_frechet_distance_matches_the_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))  # shared eigenvectors: Σ₁Σ₂ = Σ₂Σ₁
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    expect = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance_from_moments(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expect, rel=1e-10)


def test_frechet_distance_is_symmetric_and_zero_on_itself():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((500, 8))
    g = rng.standard_normal((400, 8)) @ rng.standard_normal((8, 8))
    assert frechet_distance(f, f) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(f, g) == pytest.approx(frechet_distance(g, f), rel=1e-9)
    assert frechet_distance(f, g) > 1


def test_sliced_wasserstein_of_a_shift():
    x = np.random.default_rng(2).standard_normal((2000, 2))
    # projections of a shift by v onto unit u move by u·v; the root mean of (u·v)² over
    # random directions in 2-D is |v|/sqrt(2)
    assert sliced_wasserstein(x, x + np.array([3.0, 0.0]), n_projections=4096) == \
        pytest.approx(3 / np.sqrt(2), rel=0.02)


def test_the_shipped_digits_features_separate_real_from_fake():
    from edgediff.datasets import load_dataset

    feats = DigitsFeatures()
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert feats.test_accuracy > 0.95
    assert feats(test).shape == (len(test), 64)
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1, 1, test.shape).astype(np.float32)
    blurred = (test + 0.5 * rng.standard_normal(test.shape)).clip(-1, 1)
    real = frechet_distance(feats(train[: len(test)]), feats(test))
    assert real < frechet_distance(feats(blurred), feats(test)) < \
        frechet_distance(feats(noise), feats(test))
