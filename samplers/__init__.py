"""Torch reference samplers: the ground truth the NumPy runtime is tested against.

Each sampler is ``sampler(denoiser, x_hat_T, sigmas, **options) -> x̂_0``; see
``edgediff.samplers._common`` for the conventions they share. Each registers
itself with the solver catalogue (``edgediff.catalogue.implements``).
"""

from edgediff.catalogue import SOLVER_NAMES, spec
from edgediff.samplers._common import at_precision
from edgediff.samplers.ancestral import ddim, ddpm, euler_ancestral
from edgediff.samplers.multistep import deis, dpmpp_3m, ipndm, unipc
from edgediff.samplers.ode import dpmpp_2m, euler, heun
from edgediff.samplers.sde import dpmpp_2m_sde, edm, euler_maruyama

# every catalogue solver's torch reference (an unregistered one fails here, at import)
SOLVERS = {name: spec(name).loop("torch") for name in SOLVER_NAMES}

__all__ = ["SOLVERS", "at_precision", "ddim", "ddpm", "deis", "dpmpp_2m", "dpmpp_2m_sde",
           "dpmpp_3m", "edm", "euler", "euler_ancestral", "euler_maruyama", "heun", "ipndm",
           "unipc"]
