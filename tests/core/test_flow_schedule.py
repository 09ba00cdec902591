"""The flow schedule's facts (docs/flow.md), derived in float64 and checked, not trusted:
σ(t) = t/(1−t), s = 1−t, the preconditioning row of docs/design.md, the PF-ODE being
x' = v, rectified-flow Euler = DDIM = Euler in (x̂, σ), the shift and its inverse,
and the exact velocity oracle against the mixture's denoiser."""

import numpy as np
import pytest

from edgediff.errors import EdgediffError
from edgediff.grids import sigma_grid
from edgediff.metadata import schedule_from_dict
from edgediff.mixture import default_mixture_2d
from edgediff.schedules import FlowSchedule
from edgediff.sigmas import dynamic_shift, flow_times, shift_time
from edgediff.steprules import GridTable

EPS64 = np.finfo(np.float64).eps
T = np.linspace(0.01, 0.99, 41)


class Info:
    def __init__(self, schedule):
        self.schedule = schedule
        self.sigma_min, self.sigma_max = schedule.sigma_min, schedule.sigma_max


def test_sigma_s_and_inverse():
    f = FlowSchedule()
    assert np.allclose(f.sigma_inv(f.sigma(T)), T, rtol=8 * EPS64, atol=0)
    h = 1e-6  # central difference: error O(h²·σ''') ≪ 1e-6 here
    assert np.allclose(f.sigma_deriv(T), (f.sigma(T + h) - f.sigma(T - h)) / (2 * h), rtol=1e-6)
    # x_t = (1−t)x0 + tε = s·(x0 + σε)
    assert np.allclose(f.s(T) * f.sigma(T), T, rtol=4 * EPS64)
    assert schedule_from_dict(f.to_dict()).to_dict() == f.to_dict()


def test_pf_ode_is_the_velocity():
    """dx/dt = a·x − b·D with a = b = 1/t: (x − D)/t = v for D = x0-estimate."""
    f = FlowSchedule(t_min=0.01, t_max=0.99)
    table = GridTable(f, np.append(f.sigma(T), 0.0).tolist())
    for i, t in enumerate(T):
        a, b = table.ode_coefficients(i)
        assert a == pytest.approx(1 / t, rel=16 * EPS64)
        assert b == pytest.approx(1 / t, rel=16 * EPS64)


def test_precond_row_gives_x_t_minus_t_v():
    """c_skip·x̂ + c_out·F(c_in·x̂, c_noise) with F = v is D = x_t − t·v = the mixture's D."""
    torch = pytest.importorskip("torch")
    from edgediff.models.analytic import GaussianMixtureVelocity
    from edgediff.models.precond import FlowPrecond

    mix = default_mixture_2d()
    D = FlowPrecond(GaussianMixtureVelocity(mix)).double()
    x = np.random.default_rng(0).standard_normal((len(T), 2)) * 3
    sigma = FlowSchedule().sigma(T)
    got = D(torch.from_numpy(x), torch.from_numpy(sigma)).numpy()
    assert np.allclose(got, mix.denoise(x, sigma), atol=1e-12 * (1 + np.abs(x).max()))


def test_velocity_oracle_matches_the_denoiser():
    mix = default_mixture_2d()
    x = np.random.default_rng(1).standard_normal((len(T), 2))
    sigma = T / (1 - T)
    v = mix.velocity(x, T)
    assert np.allclose(v, (x - mix.denoise(x / (1 - T)[:, None], sigma)) / T[:, None],
                       atol=1e-11)
    assert np.allclose(mix.velocity(x, 1.0), x - (mix.weights[:, None] * mix.means).sum(0))


def test_rectified_flow_euler_is_ddim_and_sigma_euler():
    """x ← x + (t'−t)·v equals DDIM x̂' = D + (σ'/σ)(x̂ − D) and Euler in (x̂, σ),
    x̂' = x̂ + (σ'−σ)(x̂ − D)/σ, with x = (1−t)·x̂ — for any D."""
    rng = np.random.default_rng(2)
    x, D = rng.standard_normal((2, 5))
    t, t2 = 0.8, 0.3
    sig, sig2 = t / (1 - t), t2 / (1 - t2)
    v = (x - D) / t
    rf = x + (t2 - t) * v
    xh = x / (1 - t)
    ddim = D + sig2 / sig * (xh - D)
    euler = xh + (sig2 - sig) * (xh - D) / sig
    assert np.allclose(rf, (1 - t2) * ddim, atol=1e-14) and np.allclose(ddim, euler, atol=1e-14)


def test_shift_and_grids():
    t = np.linspace(0, 1, 11)
    assert np.allclose(shift_time(shift_time(t, 3.0), 1 / 3.0), t, atol=4 * EPS64)
    assert np.allclose(shift_time(t, 3.0), 3 * t / (1 + 2 * t))
    ts = flow_times(8, 1e-3, 0.999, 3.0)
    assert ts[0] == pytest.approx(0.999) and ts[-1] == pytest.approx(1e-3)
    assert np.allclose(shift_time(ts, 1 / 3.0), np.linspace(ts[0] / (3 - 2 * ts[0]),
                                                             ts[-1] / (3 - 2 * ts[-1]), 8))
    info = Info(FlowSchedule())
    for kw in ({}, {"shift": 3.0}, {"mu": 1.0}):
        g = sigma_grid(info, 10, **kw)
        assert g[-1] == 0 and g[0] == pytest.approx(info.sigma_max) and np.all(np.diff(g) < 0)
    assert np.allclose(sigma_grid(info, 10, mu=np.log(3.0)), sigma_grid(info, 10, shift=3.0))
    with pytest.raises(EdgediffError, match="not both"):
        sigma_grid(info, 10, shift=2.0, mu=1.0)
    with pytest.raises(EdgediffError, match="flow schedule"):
        from edgediff.schedules import EDMSchedule
        sigma_grid(Info(EDMSchedule()), 10, shift=2.0)
    # diffusers' calculate_shift: base 0.5 at 256 tokens, 1.15 at 4096
    assert dynamic_shift(256) == 0.5 and dynamic_shift(4096) == pytest.approx(1.15)


def test_prior_endpoint():
    """The start rule: x̂ ~ N(0, 1 + σ_max²) at t_max < 1, i.e. x_t = sqrt((1−t)² + t²)·z,
    the exact std there for unit-variance data, and x_t → z (diffusers' x = ε at t = 1)."""
    f = FlowSchedule()
    t = f.t_max
    assert f.s(t) * f.prior_std(f.sigma(t)) == pytest.approx(np.sqrt((1 - t) ** 2 + t**2),
                                                              rel=1e-12)
    assert abs(f.s(t) * f.prior_std(f.sigma(t)) - 1) <= 1 - t
    with pytest.raises(EdgediffError):
        FlowSchedule(t_max=1.0)
