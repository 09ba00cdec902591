"""The comparator: polygraphy decides; edgediff's reported worst ratio agrees."""

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("polygraphy", reason="polygraphy is not installed")

from edgediff.export.validation import compare
from edgediff.schedules import EDMSchedule

INFO = SimpleNamespace(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, sample_shape=(2, 3),
                       num_classes=0, guidance_input=False, tensors=(),
                       schedule=EDMSchedule())


def perturbed(scale):
    rng = np.random.default_rng(1)

    def got(x, sigma):
        return x * 0.5 + scale * rng.standard_normal(x.shape).astype(np.float32)
    return got


def reference(x, sigma):
    return x * 0.5


@pytest.mark.parametrize("tol", [1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3])
def test_polygraphy_verdict_and_the_worst_ratio_agree(tol):
    v = compare(perturbed(1e-5), reference, INFO, atol=tol, rtol=tol)
    assert v.passed == (v.worst <= 1.0)
    assert v.cases == 7 and v.max_abs > 0


def test_tight_and_loose_tolerances_decide_both_ways():
    assert not compare(perturbed(1e-3), reference, INFO, atol=1e-5, rtol=1e-5).ok
    assert compare(perturbed(1e-6), reference, INFO, atol=1e-4, rtol=1e-4).ok


def test_nan_never_passes():
    def nan(x, sigma):
        out = x * 0.5
        out[0, 0, 0] = np.nan
        return out
    v = compare(nan, reference, INFO, atol=1e9, rtol=1e9)
    assert not v.ok and v.worst == np.inf
