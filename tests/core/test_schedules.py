import numpy as np
import pytest

from edgediff.discrete import DiscreteSchedule, ddpm_betas
from edgediff.errors import EdgediffError
from edgediff.metadata import schedule_from_dict
from edgediff.schedules import EDMSchedule, VESchedule, VPSchedule
from edgediff.sigmas import ddpm_timesteps, edm_sigmas, geometric_sigmas

SCHEDULES = {
    "vp": VPSchedule(),
    "ve": VESchedule(),
    "edm": EDMSchedule(),
    "ddpm": DiscreteSchedule.from_betas(),
}


def interior_times(schedule, n=57):
    lo, hi = schedule.t_range
    t = np.linspace(lo, hi, n)
    if isinstance(schedule, DiscreteSchedule):  # stay off the knots of the log-σ interpolation
        t = np.floor(t[:-1]) + 0.37
    return t


def test_vp_general_f_g_equal_the_seed_forms():
    """f = ṡ/s and g = s·sqrt(2σσ̇) (eq 4–5) must reproduce f = −½β(t), g = sqrt(β(t))."""
    vp = VPSchedule(beta_min=0.1, beta_d=19.9)
    t = np.linspace(1e-3, 1.0, 101)
    beta = 0.1 + 19.9 * t
    np.testing.assert_allclose(vp.f(t), -0.5 * beta, rtol=1e-12)
    np.testing.assert_allclose(vp.g(t), np.sqrt(beta), rtol=1e-12)


def test_vp_sigma_and_s_solve_eq_4_and_5_from_the_seed_sde():
    """Integrate the seed's SDE coefficients: s = exp(∫f), σ² = ∫ g²/s² (eq 4–5)."""
    vp = VPSchedule()
    r = np.linspace(0.0, 1.0, 200_001)
    beta = 0.1 + 19.9 * r
    int_f = np.concatenate([[0], np.cumsum(0.5 * (beta[1:] + beta[:-1]) * np.diff(r))]) * -0.5
    s = np.exp(int_f)
    integrand = beta / s**2
    sigma2 = np.concatenate([[0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(r))])
    idx = np.arange(1000, r.size, 10_000)
    np.testing.assert_allclose(vp.s(r[idx]), s[idx], rtol=1e-9)
    np.testing.assert_allclose(vp.sigma(r[idx]) ** 2, sigma2[idx], rtol=1e-7)


@pytest.mark.parametrize("name", SCHEDULES)
def test_sigma_inverse_round_trips(name):
    sch = SCHEDULES[name]
    t = interior_times(sch)
    np.testing.assert_allclose(sch.sigma_inv(sch.sigma(t)), t, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
def test_derivatives_match_finite_differences(name):
    sch = SCHEDULES[name]
    t = interior_times(sch)
    h = 1e-6 * t
    fd_sigma = (sch.sigma(t + h) - sch.sigma(t - h)) / (2 * h)
    fd_s = (sch.s(t + h) - sch.s(t - h)) / (2 * h)
    np.testing.assert_allclose(sch.sigma_deriv(t), fd_sigma, rtol=1e-5)
    np.testing.assert_allclose(sch.s_deriv(t), fd_s, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
def test_variance_preserving_schedules_have_s_squared_times_one_plus_sigma_squared_one(name):
    sch = SCHEDULES[name]
    t = interior_times(sch)
    if name in ("vp", "ddpm"):
        np.testing.assert_allclose(sch.s(t) ** 2 * (1 + sch.sigma(t) ** 2), 1.0, rtol=1e-12)
        np.testing.assert_allclose(sch.prior_std(sch.sigma(t)), 1 / sch.s(t), rtol=1e-12)
    else:
        assert np.all(sch.s(t) == 1.0) and np.all(sch.f(t) == 0.0)


def test_ddpm_sigma_table_matches_alpha_bar_of_the_beta_schedule():
    T = 1000
    betas = 1e-4 + (0.02 - 1e-4) * np.arange(T) / (T - 1)
    alpha_bar, prod = [], 1.0
    for b in betas:  # ᾱ_i = Π_{j≤i} (1 − β_j), written as the definition
        prod *= 1.0 - b
        alpha_bar.append(prod)
    alpha_bar = np.array(alpha_bar)
    sch = DiscreteSchedule.from_betas("linear", 1e-4, 0.02, T)
    np.testing.assert_allclose(sch.sigma_table, np.sqrt((1 - alpha_bar) / alpha_bar), rtol=1e-12)
    i = np.arange(T, dtype=np.float64)
    np.testing.assert_allclose(sch.sigma(i), sch.sigma_table, rtol=1e-12)
    np.testing.assert_allclose(sch.s(i), np.sqrt(alpha_bar), rtol=1e-12)


def test_ddpm_chain_approaches_the_continuous_vp_schedule():
    """β_i ≈ β(t_i)/T: DDPM's linear chain discretises VP(0.1, 19.9). They differ by
    log(1 − β) ≠ −β: Σβ²/2 ≈ 0.07 in the exponent, so σ agrees to a few percent."""
    ddpm, vp = DiscreteSchedule.from_betas(), VPSchedule()
    i = np.arange(1000)
    np.testing.assert_allclose(ddpm.sigma_table[i], vp.sigma((i + 1) / 1000), rtol=0.05)
    ddpm_exp = -np.cumsum(np.log1p(-ddpm_betas()))      # the exact exponent, log(1 + σ²)
    np.testing.assert_allclose(np.log1p(ddpm.sigma_table**2), ddpm_exp, rtol=1e-12)


def test_beta_schedules():
    np.testing.assert_allclose(ddpm_betas("scaled_linear", 0.00085, 0.012, 1000)[[0, -1]],
                               [0.00085, 0.012], rtol=1e-12)
    cos = ddpm_betas("squaredcos_cap_v2", num_train_timesteps=1000)
    assert cos.max() <= 0.999 and np.all(np.diff(cos) > 0)
    with pytest.raises(EdgediffError, match="squaredcos_cap_v2"):
        ddpm_betas("cosine")


@pytest.mark.parametrize("n", [1, 2, 18, 256])
def test_edm_grid_matches_eq_12(n):
    s = edm_sigmas(n, 0.002, 80.0, rho=7.0)
    assert s.shape == (n + 1,) and s[-1] == 0.0 and s[0] == pytest.approx(80.0, rel=1e-12)
    if n > 1:
        assert s[n - 1] == pytest.approx(0.002, rel=1e-12)
        i = np.arange(n)
        expect = (80 ** (1 / 7) + i / (n - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
        np.testing.assert_allclose(s[:-1], expect, rtol=1e-12)
    assert np.all(np.diff(s) < 0)


def test_edm_grid_with_rho_one_is_linear():
    np.testing.assert_allclose(edm_sigmas(5, 1.0, 5.0, rho=1.0), [5, 4, 3, 2, 1, 0], rtol=1e-12)


def test_ve_grid_is_geometric_and_vp_grid_is_uniform_in_t():
    s = geometric_sigmas(10, 0.02, 100.0)
    ratios = s[1:-1] / s[:-2]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    assert s[0] == pytest.approx(100.0) and s[-2] == pytest.approx(0.02) and s[-1] == 0
    vp = VPSchedule()
    np.testing.assert_allclose(vp.sigma_inv(vp.sigmas(50)[:-1]), np.linspace(1, 1e-3, 50),
                               rtol=1e-10)


# Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2
# (T = 1000, 10 steps).
@pytest.mark.parametrize("spacing,expected", [
    ("linspace", [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]),
    ("leading", [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]),
    ("trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]),
])
def test_ddpm_timestep_spacings(spacing, expected):
    assert ddpm_timesteps(10, 1000, spacing).tolist() == expected


def test_ddpm_leading_offset_and_full_chain():
    assert ddpm_timesteps(10, 1000, "leading", steps_offset=1).tolist()[0] == 901
    for spacing in ("leading", "trailing", "linspace"):
        assert ddpm_timesteps(1000, 1000, spacing).tolist() == list(range(999, -1, -1))


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_dict_round_trip(name):
    sch = SCHEDULES[name]
    again = schedule_from_dict(sch.to_dict())
    t = interior_times(sch)
    assert type(again) is type(sch)
    np.testing.assert_array_equal(again.sigma(t), sch.sigma(t))
    np.testing.assert_array_equal(again.s(t), sch.s(t))
    np.testing.assert_array_equal(again.sigmas(10), sch.sigmas(10))


@pytest.mark.parametrize("call", [
    lambda: edm_sigmas(0, 0.002, 80),
    lambda: edm_sigmas(-3, 0.002, 80),
    lambda: edm_sigmas(2.5, 0.002, 80),
    lambda: edm_sigmas(10, 80, 0.002),
    lambda: ddpm_timesteps(1001, 1000),
    lambda: ddpm_timesteps(10, 1000, "uniform"),
    lambda: ddpm_timesteps(10, 1000, "leading", steps_offset=200),
    lambda: VPSchedule(beta_min=-1),
    lambda: schedule_from_dict({"name": "cosine"}),
    lambda: schedule_from_dict({"name": "edm", "sigma_maximum": 3}),
])
def test_bad_input_raises_the_project_error(call):
    with pytest.raises(EdgediffError):
        call()
