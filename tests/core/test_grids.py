"""σ grids chosen apart from the solver: each grid is what its name says, on every
schedule, and every solver runs on every grid."""

import numpy as np
import pytest

from edgediff.artifact import ArtifactInfo
from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.grids import sigma_grid
from edgediff.schedules import EDMSchedule, VESchedule, VPSchedule

SCHEDULES = {"edm": EDMSchedule(), "vp": VPSchedule(), "ve": VESchedule(),
             "ddpm": DiscreteSchedule.from_betas()}


def info_for(schedule) -> ArtifactInfo:
    return ArtifactInfo("edm", schedule, schedule.sigma_min, schedule.sigma_max, 0.5, (2,),
                        (-1.0, 1.0), "0" * 64, {"solver": "euler", "steps": 10}, "fp32")


@pytest.mark.parametrize("name", SCHEDULES)
def test_each_grid_is_what_its_name_says(name):
    schedule = SCHEDULES[name]
    info, n = info_for(schedule), 12
    lo, hi = schedule.sigma_min, schedule.sigma_max
    for grid in ("rho", "lambda", "time"):
        s = sigma_grid(info, n, grid=grid)
        assert s[-1] == 0 and len(s) == n + 1 and np.all(np.diff(s) < 0)
        assert s[0] == pytest.approx(hi, rel=1e-12) and s[-2] == pytest.approx(lo, rel=1e-9)
    # λ = −log σ uniform
    lam = -np.log(sigma_grid(info, n, grid="lambda")[:-1])
    assert np.allclose(np.diff(lam), np.diff(lam)[0], rtol=1e-9)
    # the schedule's own t uniform
    t = schedule.sigma_inv(sigma_grid(info, n, grid="time")[:-1])
    assert np.allclose(np.diff(t), np.diff(t)[0], rtol=1e-6, atol=1e-9)
    # σ^(1/ρ) uniform, ρ as asked
    r = sigma_grid(info, n, grid="rho", rho=3.0)[:-1] ** (1 / 3.0)
    assert np.allclose(np.diff(r), np.diff(r)[0], rtol=1e-9)


def test_the_default_grid_is_the_schedules_own():
    assert np.array_equal(sigma_grid(info_for(VPSchedule()), 9, grid="time"),
                          sigma_grid(info_for(VPSchedule()), 9))  # VP: uniform t
    assert np.array_equal(sigma_grid(info_for(EDMSchedule()), 9, grid="rho"),
                          sigma_grid(info_for(EDMSchedule()), 9))
    assert np.allclose(sigma_grid(info_for(EDMSchedule()), 9, grid="time")[:-1],
                       np.linspace(80.0, 0.002, 9))  # EDM's t is σ


@pytest.mark.parametrize("kw,match", [
    ({"grid": "time", "spacing": "trailing"}, "spacing applies to discrete"),
    ({"grid": "lambda", "rho": 3.0}, "rho shapes ρ-grids"),
    ({"grid": "cosine"}, "unknown grid"),
])
def test_grid_options_that_do_not_fit_are_refused(kw, match):
    with pytest.raises(EdgediffError, match=match):
        sigma_grid(info_for(DiscreteSchedule.from_betas()), 10, **kw)


def test_a_tiny_rho_is_refused_not_overflowed():
    """σ_max^(1/ρ) leaves float64 for ρ ≈ 0.004 (Hypothesis found it through an
    artifact's schedule): one EdgediffError line, which the metadata check reports."""
    from edgediff.errors import EdgediffError
    from edgediff.sigmas import edm_sigmas

    with pytest.raises(EdgediffError, match=r"rho = 0\.00390625 is too small"):
        edm_sigmas(4, 0.002, 80.0, 0.00390625)
