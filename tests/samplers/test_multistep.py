"""The few-step solvers: convergence order on the single Gaussian's closed-form
PF-ODE, and the identities that tie them to the older solvers.

Order. Each method's error at N steps against the exact solution (the oracle of
test_convergence.py), observed as log2(e_N / e_2N) at the last doubling, 256 →
512 steps. What each should reach, and why:
- DPM-Solver++(3M) 3, DEIS (tAB in σ for EDM's t = σ, or in log σ) 3: the
  extrapolating polynomial of degree 2 is integrated exactly;
- UniPC of order p: p + 1 (the corrector UniC raises the order by one);
- iPNDM-k: k on a grid uniform in σ ("time" for EDM). Its Adams–Bashforth
  weights assume equal steps, so on EDM's ρ-grid its local error carries
  Δσ·(mean of ε̂) − ∫ε̂ dσ = O(Δu³) (u the uniform ramp the ρ-grid maps): order 2
  there, whatever k;
- Euler ancestral with η = 0: 1 (Euler in σ); DPM-Solver++(2M) SDE with η = 0: 2.

Warm-up. The multistep methods start at orders 1, 2, …; a first-order first step
has an O(h²) local error, which would cap every global order at 2 as N → ∞. It
is taken at σ_max = 80, where D hardly moves (dD/dλ ∝ τ²/(τ² + σ²) ≈ 4e-5 for
τ = 0.5), so its error is far below the measured ones across the range measured:
the full orders appear, and the test checks them there.

Not measured: DEIS-tAB in VP time. There ε̂ ∝ σ/sqrt(τ² + σ²) and σ(t) ≈
sqrt(β_min·t) near t = ε_s, so ε̂ behaves like sqrt(t) over the last steps and
the polynomial in t converges at its full order only once the steps are well
below ε_s = 1e-3 (over 1,000 steps; 1.3–1.7 observed up to 512).
"""

import numpy as np
import pytest
import torch

from edgediff.grids import time_uniform_sigmas
from edgediff.models.analytic import GaussianMixtureDenoiser
from edgediff.samplers import SOLVERS
from edgediff.schedules import EDMSchedule

EDM = EDMSchedule()
GRIDS = {"rho": EDM.sigmas, "time": lambda n: time_uniform_sigmas(n, EDM)}
STEPS = [64, 128, 256, 512]

# (solver, options, grid, the order it should reach)
ORDERS = [
    ("dpmpp_3m", {}, "rho", 3),
    ("deis", {"order": 3}, "rho", 3),
    ("deis", {"order": 3, "basis": "log_rho"}, "rho", 3),
    ("unipc", {"order": 3}, "rho", 4),
    ("unipc", {"order": 2}, "rho", 3),
    ("ipndm", {"order": 4}, "time", 4),
    ("ipndm", {"order": 3}, "time", 3),
    ("ipndm", {"order": 4}, "rho", 2),
    ("euler_ancestral", {"eta": 0.0}, "rho", 1),
    ("dpmpp_2m_sde", {"eta": 0.0}, "rho", 2),
]


def exact_final(mixture, x_T, sigmas):
    mu, tau = mixture.means[0], mixture.stds[0]
    s0, s_last = sigmas[0], sigmas[-2]
    x_last = mu + (x_T - mu) * np.sqrt(tau**2 + s_last**2) / np.sqrt(tau**2 + s0**2)
    return mixture.denoise(x_last, np.full(len(x_T), s_last))


@pytest.mark.parametrize("solver,options,grid,order", ORDERS,
                         ids=[f"{s}-{'-'.join(map(str, o.values()))}-{g}"
                              for s, o, g, _ in ORDERS])
def test_observed_order(single_gaussian, solver, options, grid, order):
    D = GaussianMixtureDenoiser(single_gaussian)
    errs = []
    for n in STEPS:
        sigmas = GRIDS[grid](n)
        x_T = np.random.default_rng(0).standard_normal((8, single_gaussian.dim)) * sigmas[0]
        got = SOLVERS[solver](D, torch.from_numpy(x_T), sigmas, **options).numpy()
        errs.append(np.abs(got - exact_final(single_gaussian, x_T, sigmas)).max())
    errs = np.array(errs)
    observed = np.log2(errs[:-1] / errs[1:])
    print(f"{solver} {options} on the {grid} grid: errors {errs}, orders {observed.round(2)}")
    assert errs[-1] > 1e-12  # above float64 round-off, so the order is the method's
    assert order - 0.3 < observed[-1] < order + 0.5


def noise_for(shape, steps, seed=0):
    z = torch.randn(steps, *shape, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    return lambda i: z[i]


@pytest.fixture
def mixture_run(mixture_2d):
    D = GaussianMixtureDenoiser(mixture_2d)
    sigmas = EDM.sigmas(12)
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((64, 2)) * sigmas[0])

    def run(solver, **options):
        return SOLVERS[solver](D, x, sigmas, **options)
    return run


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_euler_ancestral_is_ddim_in_sigma_space(mixture_run, eta):
    """σ_up = η·σ_j·sqrt(1 − σ_j²/σ_i²) is DDIM's c, and the Euler step to σ_down is
    DDIM's sqrt(σ_j² − c²)·ε̂: the same update, given the same noise."""
    a = mixture_run("euler_ancestral", eta=eta, noise=noise_for((64, 2), 12))
    b = mixture_run("ddim", eta=eta, noise=noise_for((64, 2), 12))
    assert (a - b).abs().max().item() < 1e-12
    c = mixture_run("ddim", eta=eta, noise=noise_for((64, 2), 12, seed=1))
    assert (a - c).abs().max().item() > 1e-2


def test_dpmpp_2m_sde_without_noise_is_dpmpp_2m(mixture_run):
    a = mixture_run("dpmpp_2m_sde", eta=0.0)
    assert (a - mixture_run("dpmpp_2m")).abs().max().item() < 1e-12
    assert (a - mixture_run("dpmpp_2m_sde", eta=0.5, noise=noise_for((64, 2), 12))
            ).abs().max().item() > 1e-2


def test_first_order_multistep_methods_are_euler_in_sigma(mixture_run):
    """Order 1 of iPNDM and DEIS is one Euler step in σ, which is DDIM(0)."""
    ddim = mixture_run("ddim", eta=0.0)
    for solver in ("ipndm", "deis"):
        assert (mixture_run(solver, order=1) - ddim).abs().max().item() < 1e-12
    assert (mixture_run("ipndm", order=2) - ddim).abs().max().item() > 1e-3


def test_the_common_3m_weighting_is_second_order(single_gaussian):
    """The D2 weight of DPM-Solver's reference code, diffusers and k-diffusion (φ₃
    where 2φ₃ is exact; edgediff.coefficients.dpmpp_3m_weights; the solver's
    ``weights="published"``) costs a full order."""
    import edgediff.samplers.multistep as reference

    D = GaussianMixtureDenoiser(single_gaussian)
    errs = []
    for n in (256, 512):
        sigmas = EDM.sigmas(n)
        x_T = np.random.default_rng(0).standard_normal((8, single_gaussian.dim)) * sigmas[0]
        got = reference.dpmpp_3m(D, torch.from_numpy(x_T), sigmas, weights="published").numpy()
        errs.append(np.abs(got - exact_final(single_gaussian, x_T, sigmas)).max())
    observed = np.log2(errs[0] / errs[1])
    print(f"dpmpp_3m with φ₃ on D2: errors {errs}, order {observed:.2f}")
    assert 1.7 < observed < 2.3
