import importlib.util

import numpy as np
import pytest

from edgediff.errors import EXTRAS
from edgediff.mixture import GaussianMixture, default_mixture_2d


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "extra(name): needs that extra of pyproject.toml (lab, ray, diffusers, train, "
        "trt, ...); skipped with its install line when one of its modules is absent")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """No test writes to the user's cache (~/.cache/edgediff): every export a test
    caches (snapshots given to sample/bench/check, TensorRT-EP engines) goes to a
    folder of the session's, for this process and the commands it starts."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEDIFF_CACHE", str(tmp_path_factory.mktemp("edgediff-cache")))
    yield
    mp.undo()


def missing_from(extra: str) -> list[str]:
    """The modules of ``extra`` (edgediff.errors.EXTRAS) that are not installed here."""
    modules = {module: shown for module, (shown, owner) in EXTRAS.items() if owner == extra}
    if not modules:
        raise ValueError(f"no extra {extra!r} in edgediff.errors.EXTRAS")
    return [shown for module, shown in modules.items() if importlib.util.find_spec(module) is None]


def pytest_runtest_setup(item):
    for mark in item.iter_markers("extra"):
        for extra in mark.args:
            missing = missing_from(extra)
            if missing:
                pytest.skip(f"{', '.join(missing)} not installed (the {extra} extra): "
                            f'pip install "edgediff[{extra}]"')


@pytest.fixture
def mixture_2d() -> GaussianMixture:
    return default_mixture_2d()


@pytest.fixture
def single_gaussian() -> GaussianMixture:
    return GaussianMixture(np.array([1.0]), np.array([[0.3, -0.2, 1.0]]), np.array([0.5]))
