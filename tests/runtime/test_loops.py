"""The NumPy step loops against textbook forms of themselves, on a closed-form
denoiser, in float64 where both should agree to rounding."""

import numpy as np
import pytest

from edgediff.runtime import ode
from edgediff.schedules import EDMSchedule, VESchedule, VPSchedule
from edgediff.sigmas import edm_sigmas
from edgediff.tolerance import EPS32, WEIGHT

SIGMA_DATA = 0.5


class GaussianDenoiser:
    """D(x; σ) = σ_d²/(σ² + σ_d²)·x: the ideal denoiser of N(0, σ_d² I) data. It
    returns float32, like any backend, so both loops see the same rounding."""

    info = None

    def __call__(self, x, sigma):
        k = SIGMA_DATA**2 / (sigma.astype(np.float64) ** 2 + SIGMA_DATA**2)
        return (x * k.reshape(-1, *([1] * (x.ndim - 1)))).astype(np.float32)


def textbook_heun(denoiser, x, sigmas, schedule):
    """Karras et al. 2022, Algorithm 1 with general σ(t), s(t), unfused."""
    t = schedule.sigma_inv(np.asarray(sigmas[:-1]))
    x = x * schedule.s(t[0])

    def slope(x, k):
        sig, dsig = schedule.sigma(t[k]), schedule.sigma_deriv(t[k])
        s, ds = schedule.s(t[k]), schedule.s_deriv(t[k])
        d = denoiser((x / s).astype(np.float32), np.full(len(x), sig, np.float32))
        return (dsig / sig + ds / s) * x - dsig * s / sig * d.astype(np.float64), d

    for i in range(len(sigmas) - 1):
        d_cur, denoised = slope(x, i)
        if sigmas[i + 1] == 0:
            return denoised.astype(np.float64)
        x_next = x + (t[i + 1] - t[i]) * d_cur
        d_prime, _ = slope(x_next, i + 1)
        x = x + (t[i + 1] - t[i]) * 0.5 * (d_cur + d_prime)
    raise AssertionError("grids end in 0")


@pytest.mark.parametrize("schedule", [EDMSchedule(), VESchedule(0.02, 100.0), VPSchedule()],
                         ids=["edm", "ve", "vp"])
def test_fused_heun_is_textbook_heun(schedule):
    """The runtime's Heun writes the predictor into the model input and the
    corrector as α·x + β·D_i + γ·D_e; that algebra must be Heun's, on every clock."""
    sigmas = schedule.sigmas(12).tolist()
    x = np.random.default_rng(0).standard_normal((4, 3, 5)) * sigmas[0]
    got = ode.heun(GaussianDenoiser(), x, sigmas, schedule=schedule)
    want = textbook_heun(GaussianDenoiser(), x, sigmas, schedule)
    # the only difference: float32 rounding of model inputs formed in another order —
    # ½ ulp of |x̂| per call on each side (the denoiser is exact but for its float32
    # output), 23 calls, weights ≤ 1.5 (edgediff.tolerance, point 2)
    bound = WEIGHT * 1.0 * EPS32 * 23 * np.abs(x).max()
    assert np.abs(got - want).max() <= bound
    # and a grid Heun does not step on (here: ρ = 3 instead of the schedule's own) differs
    other = edm_sigmas(12, sigmas[-2], sigmas[0], rho=3.0).tolist()
    assert np.abs(textbook_heun(GaussianDenoiser(), x, other, schedule) - want).max() > bound
