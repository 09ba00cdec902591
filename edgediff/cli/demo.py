"""``edgediff demo``: compare the reference solvers on the exact 2-D mixture.

Until the bundled model and the runtime land, the demo samples the analytic
Gaussian mixture with every torch reference sampler and scores each against
exact samples (sliced Wasserstein distance, mode weights).
"""

from __future__ import annotations

import time

import click
import numpy as np

from edgediff.errors import missing_extra
from edgediff.metrics import sliced_wasserstein
from edgediff.mixture import default_mixture_2d
from edgediff.schedules import DiscreteSchedule, EDMSchedule, VPSchedule
from edgediff.solvers import nfe


@click.command("demo")
@click.option("--num", type=click.IntRange(100, 1_000_000), default=20_000, show_default=True,
              help="Samples per solver.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial noise.")
def command(num: int, seed: int) -> None:
    """Sample the analytic 2-D mixture with every reference solver and compare.

    \b
    Example:
      edgediff demo --num 20000 --seed 0
    """
    try:
        import torch

        from edgediff.models.analytic import GaussianMixtureDenoiser
        from edgediff.samplers import SAMPLERS
    except ImportError:
        raise missing_extra("torch", "torch") from None

    mixture = default_mixture_2d()
    D = GaussianMixtureDenoiser(mixture)
    edm_s, vp = EDMSchedule(), VPSchedule()
    ddpm_s = DiscreteSchedule.from_betas()
    runs = [  # (solver, steps, schedule of the prior, σ grid, options)
        ("euler", 35, edm_s, edm_s.sigmas(35), {}),
        ("heun", 18, edm_s, edm_s.sigmas(18), {}),
        ("dpmpp_2m", 10, edm_s, edm_s.sigmas(10), {}),
        ("ddim", 50, ddpm_s, ddpm_s.sigmas(50, "trailing"), {"eta": 0.0}),
        ("edm", 64, edm_s, edm_s.sigmas(64), {"S_churn": 40, "S_tmin": 0.05, "S_tmax": 50}),
        ("euler_maruyama", 500, vp, vp.sigmas(500), {"schedule": vp}),
        ("ddpm", 1000, ddpm_s, ddpm_s.sigmas(1000, "trailing"), {}),
    ]
    exact, _ = mixture.sample(num, np.random.default_rng(seed + 1))
    floor = sliced_wasserstein(exact, mixture.sample(num, np.random.default_rng(seed + 2))[0])
    click.echo(f"exact 2-D mixture, {num} samples per solver; SW2 between two exact sample sets: "
               f"{floor:.4f}")
    click.echo(f"{'solver':<16}{'steps':>6}{'NFE':>6}{'ms total':>10}{'SW2':>9}  mode weights")
    for name, steps, schedule, sigmas, opts in runs:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(num, 2, generator=g, dtype=torch.float64)
        x *= float(schedule.prior_std(sigmas[0]))
        if name in ("ddpm", "ddim", "edm", "euler_maruyama"):
            opts = {**opts, "generator": g}
        t0 = time.perf_counter()
        out = SAMPLERS[name](D, x, sigmas, **opts).numpy()
        ms = (time.perf_counter() - t0) * 1e3
        w = np.bincount(mixture.responsibilities(out).argmax(1), minlength=3) / num
        click.echo(f"{name:<16}{steps:>6}{nfe(name, steps):>6}{ms:>10.1f}"
                   f"{sliced_wasserstein(out, exact):>9.4f}  {np.array2string(w, precision=3)}")
    click.echo(f"true mode weights: {np.array2string(mixture.weights, precision=3)}")
