"""``edgediff demo``: compare the reference solvers on the exact 2-D mixture and
sample the bundled digits model.

Until export and the runtime land, the demo runs the torch reference samplers:
every solver on the analytic Gaussian mixture, scored against exact samples
(sliced Wasserstein distance, mode weights), then three solvers on the bundled
digits model, scored by Fréchet distance to held-out digits, with PNG grids.
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
@click.option("-o", "--out", type=click.Path(file_okay=False), default="out/demo",
              show_default=True, help="Folder for the sample grids.")
def command(num: int, seed: int, out: str) -> None:
    """Sample the analytic 2-D mixture with every reference solver and compare.

    \b
    Example:
      edgediff demo --num 20000 --seed 0 -o out/demo
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
        samples = SAMPLERS[name](D, x, sigmas, **opts).numpy()
        ms = (time.perf_counter() - t0) * 1e3
        w = np.bincount(mixture.responsibilities(samples).argmax(1), minlength=3) / num
        click.echo(f"{name:<16}{steps:>6}{nfe(name, steps):>6}{ms:>10.1f}"
                   f"{sliced_wasserstein(samples, exact):>9.4f}  {np.array2string(w, precision=3)}")
    click.echo(f"true mode weights: {np.array2string(mixture.weights, precision=3)}")
    _digits(seed, out)


def _digits(seed: int, out: str) -> None:
    """Bundled digits model: three solvers at comparable NFE, FD to held-out digits."""
    from pathlib import Path

    import torch

    from edgediff.features import DigitsFeatures
    from edgediff.images import grid, to_uint8, write_png
    from edgediff.metrics import frechet_distance
    from edgediff.models.bundled import load_bundled
    from edgediff.models.training import load_dataset
    from edgediff.samplers import SAMPLERS, at_precision

    model, feats = load_bundled(), DigitsFeatures()
    test = load_dataset("digits", "test")
    train = load_dataset("digits", "train")
    f_test = feats(test)
    floor = frechet_distance(feats(train[: len(test)]), f_test)
    D, edm = at_precision(model.denoiser), EDMSchedule()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    click.echo(f"\nbundled digits model, {len(test)} samples per solver; FD between "
               f"{len(test)} train and held-out digits: {floor:.3f}")
    click.echo(f"{'solver':<16}{'steps':>6}{'NFE':>6}{'ms total':>10}{'FD':>9}  grid")
    for name, steps in (("heun", 18), ("euler", 35), ("dpmpp_2m", 10)):
        sigmas = edm.sigmas(steps)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(len(test), 1, 8, 8, generator=g, dtype=torch.float64) * sigmas[0]
        t0 = time.perf_counter()
        gen = SAMPLERS[name](D, x, sigmas).float().numpy()
        ms = (time.perf_counter() - t0) * 1e3
        png = folder / f"digits-{name}-{steps}.png"
        write_png(png, grid(to_uint8(gen[:100]), columns=10, scale=4))
        click.echo(f"{name:<16}{steps:>6}{nfe(name, steps):>6}{ms:>10.1f}"
                   f"{frechet_distance(feats(gen), f_test):>9.3f}  {png}")
