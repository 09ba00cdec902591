"""Torch reference samplers: the ground truth the NumPy runtime is tested against.

Each sampler is ``sampler(denoiser, x_hat_T, sigmas, **options) -> x̂_0``; see
``edgediff.samplers._common`` for the conventions they share.
"""

from edgediff.samplers._common import at_precision
from edgediff.samplers.ancestral import ddim, ddpm
from edgediff.samplers.ode import dpmpp_2m, euler, heun
from edgediff.samplers.sde import edm, euler_maruyama

SAMPLERS = {
    "ddpm": ddpm,
    "euler_maruyama": euler_maruyama,
    "euler": euler,
    "heun": heun,
    "edm": edm,
    "ddim": ddim,
    "dpmpp_2m": dpmpp_2m,
}

__all__ = ["SAMPLERS", "at_precision", "ddim", "ddpm", "dpmpp_2m", "edm", "euler",
           "euler_maruyama", "heun"]
