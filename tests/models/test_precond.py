"""Preconditioning wrappers against the closed forms of docs/design.md ("Maths"),
written here in NumPy."""

import numpy as np
import pytest
import torch
from torch import nn

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.models.precond import (
    EDMPrecond,
    EpsilonPrecond,
    SamplePrecond,
    VEPrecond,
    VPPrecond,
    VPredictionPrecond,
    make_precond,
)
from edgediff.schedules import VPSchedule
from edgediff.tolerance import EPS32, ULPS_PER_CALL

DDPM = DiscreteSchedule.from_betas()
SIGMAS = np.array([0.002, 0.02, 0.3, 1.0, 7.5, 80.0])


class Probe(nn.Module):
    """F returning a constant, recording what it was given."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x, c_noise, class_labels=None):
        self.x_in, self.c_noise = x, c_noise
        return torch.full_like(x, self.value)


def closed_forms(name, s):
    sd = 0.5
    if name == "vp":
        return 1 + 0 * s, -s, 1 / np.sqrt(s**2 + 1), 999 * VPSchedule().sigma_inv(s)
    if name == "ve":
        return 1 + 0 * s, s, 1 + 0 * s, np.log(s / 2)
    if name == "edm":
        return (sd**2 / (s**2 + sd**2), s * sd / np.sqrt(s**2 + sd**2),
                1 / np.sqrt(s**2 + sd**2), np.log(s) / 4)
    t = DDPM.sigma_inv(s)  # the NumPy schedule's σ → t map
    c_in = 1 / np.sqrt(s**2 + 1)
    return {"epsilon": (1 + 0 * s, -s, c_in, t),
            "v_prediction": (1 / (s**2 + 1), -s / np.sqrt(s**2 + 1), c_in, t),
            "sample": (0 * s, 1 + 0 * s, c_in, t)}[name]


def wrap(name, F):
    if name in ("epsilon", "v_prediction", "sample"):
        return make_precond(name, F, alphas_cumprod=DDPM.alphas_cumprod)
    return make_precond(name, F)


@pytest.mark.parametrize("name", ["vp", "ve", "edm", "epsilon", "v_prediction", "sample"])
def test_coefficients_match_the_closed_forms(name):
    """Read c_skip, c_out, c_in, c_noise off D with constant networks F ≡ 0, F ≡ 1."""
    sigma = torch.from_numpy(SIGMAS)
    x = torch.full((len(SIGMAS), 2), 3.0, dtype=torch.float64)
    zero, one = wrap(name, Probe(0.0)), wrap(name, Probe(1.0))
    c_skip = zero(x, sigma)[:, 0] / 3
    c_out = one(x, sigma)[:, 0] - 3 * c_skip
    c_in = zero.model.x_in[:, 0] / 3
    expect = closed_forms(name, SIGMAS)
    for got, want, label in zip((c_skip, c_out, c_in, zero.model.c_noise), expect,
                                ("c_skip", "c_out", "c_in", "c_noise"), strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12, err_msg=label)


def test_discrete_sigma_to_t_hits_integer_timesteps_and_clamps():
    p = EpsilonPrecond(Probe(0.0), DDPM.alphas_cumprod)
    i = np.array([0, 1, 17, 500, 998, 999])
    t = p.sigma_to_t(torch.from_numpy(DDPM.sigma_table[i]))
    np.testing.assert_allclose(t.numpy(), i, atol=1e-9)
    edges = p.sigma_to_t(torch.tensor([1e-6, 1e6], dtype=torch.float64))
    assert edges.tolist() == [0.0, 999.0]


def test_discrete_sigma_to_t_in_float32_stays_close():
    p = EpsilonPrecond(Probe(0.0), DDPM.alphas_cumprod)
    s = np.exp(np.linspace(np.log(0.02), np.log(150), 97))
    t32 = p.sigma_to_t(torch.from_numpy(s).float()).double().numpy()
    # float32 resolution × what the map amplifies: log σ (|log σ| ≤ 5) and the table's
    # log σ_i are each rounded to a few ulps, an error δ in log σ moves t by δ divided
    # by the table's narrowest log-σ spacing, and t itself (up to 999) is float32 too
    log_table = np.log(DDPM.sigma_table)
    amplified = 2 * np.abs(np.log(s)).max() / np.diff(log_table).min() + DDPM.num_train_timesteps
    bound = ULPS_PER_CALL * EPS32 * amplified
    assert np.abs(t32 - DDPM.sigma_inv(s)).max() <= bound


class IdealPredictor(nn.Module):
    """The exact ε, v or x0 of a Gaussian mixture, as a discrete-time network sees it:
    input x_t = x̂/sqrt(1+σ²) and the fractional timestep t."""

    def __init__(self, mixture, target):
        super().__init__()
        self.mixture, self.target = mixture, target

    def forward(self, x_t, t, class_labels=None):
        sigma = DDPM.sigma(t.numpy())[:, None]
        x_hat = x_t.numpy() * np.sqrt(1 + sigma**2)
        x0 = self.mixture.denoise(x_hat, sigma[:, 0])
        eps = (x_hat - x0) / sigma
        alpha, sig_vp = 1 / np.sqrt(1 + sigma**2), sigma / np.sqrt(1 + sigma**2)
        out = {"epsilon": eps, "v_prediction": alpha * eps - sig_vp * x0, "sample": x0}
        return torch.from_numpy(out[self.target])


def test_epsilon_v_and_x0_wrappers_of_one_ideal_predictor_agree(mixture_2d):
    rng = np.random.default_rng(0)
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(150), 200))
    x = torch.from_numpy(rng.standard_normal((200, 2)) * np.sqrt(1 + sigma[:, None] ** 2))
    s = torch.from_numpy(sigma)
    exact = mixture_2d.denoise(x.numpy(), sigma)
    for cls, target in ((EpsilonPrecond, "epsilon"), (VPredictionPrecond, "v_prediction"),
                        (SamplePrecond, "sample")):
        D = cls(IdealPredictor(mixture_2d, target), DDPM.alphas_cumprod)
        np.testing.assert_allclose(D(x, s).numpy(), exact, rtol=1e-8, atol=1e-8, err_msg=target)


def test_coefficients_stay_float32_when_the_network_is_half():
    net = nn.Linear(2, 2).half()

    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, c_noise, class_labels=None):
            assert x.dtype == torch.float16 and c_noise.dtype == torch.float32
            return torch.zeros_like(x)

    D = EDMPrecond(F())
    x = torch.full((1, 2), 1000.0)
    out = D(x, torch.tensor([0.002]))
    assert out.dtype == torch.float32
    # c_skip·x in float32: 1000·0.25²/(0.25² + 4e-6) — float16 would round it to 1000 − 0.
    # Four correctly rounded float32 operations (σ², +, /, ×), ½ ulp each: ≤ 2 ulps
    expect = 1000 * 0.25 / (0.25 + 0.002**2)
    assert out[0, 0].item() == pytest.approx(expect, rel=2 * EPS32)
    assert abs(1000.0 - expect) > 2 * EPS32 * expect  # and the check can tell c_skip from 1


def test_vp_precond_uses_the_vp_inverse():
    p = VPPrecond(Probe(0.0))
    t = np.array([1e-3, 0.3, 1.0])
    got = p.sigma_inv(torch.from_numpy(VPSchedule().sigma(t)))
    np.testing.assert_allclose(got.numpy(), t, rtol=1e-10)
    assert isinstance(make_precond("ve", Probe(0.0)), VEPrecond)


def test_unknown_parameterization_is_refused():
    with pytest.raises(EdgediffError, match="epsilon"):
        make_precond("score", Probe(0.0))


def test_the_consistency_boundary_condition_against_diffusers_scalings():
    """c_skip, c_out as CMStochasticIterativeScheduler computes them, c_in EDM's,
    c_noise 250·ln σ at noise_scale 1000; and f(x, σ_min) = x for any F."""
    pytest.importorskip("diffusers", reason="diffusers is not installed")
    from diffusers import CMStochasticIterativeScheduler

    from edgediff.models.precond import ConsistencyPrecond

    sched = CMStochasticIterativeScheduler(sigma_min=0.002, sigma_data=0.5)
    sigma = torch.from_numpy(SIGMAS)
    x = torch.full((len(SIGMAS), 2), 3.0, dtype=torch.float64)
    zero = ConsistencyPrecond(Probe(0.0), 0.002, 0.5, noise_scale=1000.0)
    one = ConsistencyPrecond(Probe(1.0), 0.002, 0.5, noise_scale=1000.0)
    c_skip = zero(x, sigma)[:, 0] / 3
    c_out = one(x, sigma)[:, 0] - 3 * c_skip
    want_skip, want_out = sched.get_scalings_for_boundary_condition(sigma)
    np.testing.assert_allclose(c_skip.numpy(), want_skip.numpy(), rtol=1e-12)
    np.testing.assert_allclose(c_out.numpy(), want_out.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(zero.model.x_in[:, 0].numpy() / 3,
                               1 / np.sqrt(SIGMAS**2 + 0.25), rtol=1e-12)
    np.testing.assert_allclose(zero.model.c_noise.numpy(), sched.sigma_to_t(SIGMAS),
                               rtol=1e-12)
    at_min = torch.tensor([0.002], dtype=torch.float64)
    assert torch.equal(one(x[:1], at_min), x[:1])  # the boundary: f(x, σ_min) = x exactly
