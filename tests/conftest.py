import numpy as np
import pytest

from edgediff.mixture import GaussianMixture, default_mixture_2d


@pytest.fixture
def mixture_2d() -> GaussianMixture:
    return default_mixture_2d()


@pytest.fixture
def single_gaussian() -> GaussianMixture:
    return GaussianMixture(np.array([1.0]), np.array([[0.3, -0.2, 1.0]]), np.array([0.5]))
