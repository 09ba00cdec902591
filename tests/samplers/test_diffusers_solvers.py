"""The few-step solvers against diffusers' schedulers, an external reference, in
float64 on the same discrete σ grid with the same noise.

diffusers runs each scheduler's own loop with its tables promoted to float64 (as
tests/models/test_diffusers_unet.py does) and with the float32 casts it
applies to the state for fp16 pipelines ("upcast") made no-ops on float64
tensors. The model is the exact 2-D mixture denoiser in float64, handed to
diffusers as an x0 prediction (ε for EulerAncestral, which takes no x0 model),
and to edgediff's torch reference as D(x̂; σ). The grid is diffusers' own σ
table; 20 steps, so DPMSolverMultistep and DEIS run without their
lower-order-final rule for short schedules (< 15 steps). Everything agrees to
≤ 1e-6 (measured: float64 round-off, ~1e-13).

Where diffusers differs by design, the part that should agree is tested:
- DPM-Solver++(3M): diffusers (like the DPM-Solver reference code and
  k-diffusion) weights the second divided difference D2 ≈ h²D''/2 by φ₃ where
  the Taylor term needs 2φ₃ (``edgediff.coefficients.dpmpp_3m_weights``); with
  edgediff's option ``weights="published"`` the runs agree. Its order-2 warm-up step is
  diffusers' ``solver_type="heun"`` (k-diffusion's φ₂ form).
- DEIS: diffusers extrapolates ε̂ in log σ (edgediff's ``basis="log_rho"``; the
  default, DEIS-tAB, uses the schedule's time) and ends at σ(t = 0) > 0
  ("sigma_last"), not at D: edgediff runs the same grid with a final 0 appended
  and its state at sigma_last is compared.
- EulerAncestral is η = 1.
"""


import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea_module
from diffusers import (
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    UniPCMultistepScheduler,
)

from edgediff.coefficients import dpmpp_3m_weights
from edgediff.mixture import default_mixture_2d
from edgediff.models.analytic import GaussianMixtureDenoiser
from edgediff.samplers import SOLVERS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' NumPy 2 use

STEPS, BATCH, BOUND = 20, 16, 1e-6
TABLE = {"num_train_timesteps": 1000, "beta_schedule": "linear"}

CASES = {  # name -> (scheduler, its config, edgediff solver, options)
    "unipc-bh2-3": (UniPCMultistepScheduler, {"solver_order": 3, "solver_type": "bh2",
                                              "predict_x0": True}, "unipc", {"order": 3}),
    "unipc-bh2-2": (UniPCMultistepScheduler, {"solver_order": 2, "solver_type": "bh2",
                                              "predict_x0": True}, "unipc", {"order": 2}),
    "dpmpp-3m": (DPMSolverMultistepScheduler, {"solver_order": 3, "solver_type": "heun",
                                               "algorithm_type": "dpmsolver++"}, "dpmpp_3m",
                 {"weights": "published"}),
    "dpmpp-2m": (DPMSolverMultistepScheduler, {"solver_order": 2, "solver_type": "midpoint",
                                               "algorithm_type": "dpmsolver++"}, "dpmpp_2m", {}),
    "dpmpp-2m-sde": (DPMSolverMultistepScheduler, {"solver_order": 2, "solver_type": "midpoint",
                                                   "algorithm_type": "sde-dpmsolver++"},
                     "dpmpp_2m_sde", {"eta": 1.0}),
    "deis-3": (DEISMultistepScheduler, {"solver_order": 3}, "deis",
               {"order": 3, "basis": "log_rho"}),
    "euler-ancestral": (EulerAncestralDiscreteScheduler, {}, "euler_ancestral", {"eta": 1.0}),
}


@pytest.fixture
def keep_float64(monkeypatch):
    """diffusers casts the state to float32 before a step (for fp16 pipelines):
    leave float64 tensors in float64."""
    to = torch.Tensor.to

    def to_keeping_float64(self, *args, **kwargs):
        if self.dtype == torch.float64:
            args = tuple(a for a in args if a is not torch.float32)
            if kwargs.get("dtype") is torch.float32:
                kwargs.pop("dtype")
        return to(self, *args, **kwargs)
    monkeypatch.setattr(torch.Tensor, "to", to_keeping_float64)


def promoted(sched):
    for name, value in list(vars(sched).items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            setattr(sched, name, value.double())
    return sched


def run_diffusers(sched, D, x_hat_T, Z, monkeypatch):  # Z: per-step noise or None
    """diffusers' loop; returns x̂ at its last σ (x / α for the VP-scaled ones)."""
    ancestral = isinstance(sched, EulerAncestralDiscreteScheduler)
    sigmas = sched.sigmas
    vp = not ancestral  # the multistep schedulers' state is x_t = α·x̂
    x = x_hat_T / (1 + sigmas[0] ** 2).sqrt() if vp else x_hat_T.clone()
    if Z is not None:  # the noise diffusers draws is ours
        draws = iter(Z)
        monkeypatch.setattr(ea_module, "randn_tensor", lambda *a, **k: next(draws))
    for i, t in enumerate(sched.timesteps):
        sig = sigmas[i]
        x_hat = x * (1 + sig**2).sqrt() if vp else x
        denoised = D(x_hat, sig.expand(len(x)))
        out = (x_hat - denoised) / sig if ancestral else denoised  # ε or x0
        sde = "sde" in getattr(sched.config, "algorithm_type", "")
        kwargs = {"variance_noise": Z[i]} if sde else {}
        x = sched.step(out, t, x, **kwargs).prev_sample
    return x * (1 + sigmas[-1] ** 2).sqrt() if vp else x


@pytest.mark.parametrize("case", list(CASES))
def test_edgediff_matches_diffusers(case, keep_float64, monkeypatch):
    cls, config, solver, options = CASES[case]
    prediction = "epsilon" if cls is EulerAncestralDiscreteScheduler else "sample"
    sched = cls(**TABLE, prediction_type=prediction, **config)
    sched.set_timesteps(STEPS)
    promoted(sched)
    D = GaussianMixtureDenoiser(default_mixture_2d()).double()
    gen = torch.Generator().manual_seed(0)
    x_hat_T = torch.randn(BATCH, 2, generator=gen, dtype=torch.float64) \
        * (1 + sched.sigmas[0] ** 2).sqrt()
    Z = torch.randn(STEPS + 1, BATCH, 2, generator=gen, dtype=torch.float64)
    want = run_diffusers(sched, D, x_hat_T, Z, monkeypatch)

    sigmas = sched.sigmas.tolist()
    last = sigmas[-1]
    if last != 0:  # DEIS: diffusers stops at sigma_last; edgediff's state there
        sigmas.append(0.0)
    states = {}
    kwargs = {"noise": lambda i: Z[i]} if solver in ("dpmpp_2m_sde", "euler_ancestral") else {}
    got = SOLVERS[solver](D, x_hat_T, sigmas, callback=lambda s: states.__setitem__(
        s["sigma"], s["x"].clone()), **options, **kwargs)
    if last != 0:
        got = states[last]
    err = (got - want).abs().max().item()
    print(f"{case}: max abs diff {err:.2e}, max |x| {want.abs().max().item():.3g}")
    assert err <= BOUND
    # and the comparison has teeth: the run one order lower is far off
    if options.get("order", 0) > 1:
        other = SOLVERS[solver](D, x_hat_T, sigmas, **{**options, "order": options["order"] - 1})
        if last == 0:
            assert (other - want).abs().max().item() > 1e3 * BOUND


def test_edgediff_dpmpp_3m_is_not_diffusers_variant(keep_float64, monkeypatch):
    """The one designed difference is real: with the default weights the runs part."""
    cls, config, solver, _ = CASES["dpmpp-3m"]
    sched = promoted(cls(**TABLE, prediction_type="sample", **config))
    sched.set_timesteps(STEPS)
    promoted(sched)
    D = GaussianMixtureDenoiser(default_mixture_2d()).double()
    x_hat_T = torch.randn(BATCH, 2, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64) * (1 + sched.sigmas[0] ** 2).sqrt()
    want = run_diffusers(sched, D, x_hat_T, None, monkeypatch)
    got = SOLVERS[solver](D, x_hat_T, sched.sigmas.tolist())
    assert (got - want).abs().max().item() > 1e3 * BOUND


def test_dpmpp_3m_weights_integrate_a_quadratic_exactly():
    """x̂' − (σ'/σ)x̂ = e^{−h}∫_0^h e^u·D(λ_i + u) du is exact for D quadratic in λ
    with the D2 weight 2φ₃; with diffusers' φ₃ it is not (O(h³) local error)."""
    D = np.polynomial.Polynomial([0.3, 0.7, 0.5])  # D(λ)
    lam, h, h_1, h_2 = 0.2, 0.3, 0.25, 0.35
    # p(u) = D(λ + u) = c0 + c1·u + c2·u², and ∫ e^u·p du = e^u·(p − p' + p'')
    p = np.polynomial.Polynomial([D(lam), D.deriv(1)(lam), D.deriv(2)(lam) / 2])
    anti = p - p.deriv(1) + p.deriv(2)
    exact = anti(h) - np.exp(-h) * anti(0)
    nodes = [D(lam), D(lam - h_1), D(lam - h_1 - h_2)]
    for weight, is_exact in ((2.0, True), (1.0, False)):
        w = dpmpp_3m_weights(h, h_1, h_2, d2_weight=weight)
        err = abs(sum(a * b for a, b in zip(w, nodes, strict=True)) - exact)
        assert (err < 1e-15) == is_exact, (weight, err)
