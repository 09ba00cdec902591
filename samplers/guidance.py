"""The torch reference of ``edgediff.runtime.guidance``: guidance as a denoiser,
D = D_u + w·(D_c − D_u) in float64, one pass at w = 0 or 1."""

from __future__ import annotations

import torch

from edgediff.conditioning import check_guidance
from edgediff.samplers._common import Denoiser


def guided(conditional: Denoiser, unconditional: Denoiser, w: float) -> Denoiser:
    """Classifier-free guidance (Ho & Salimans 2022) or autoguidance (Karras et al.
    2024) around two reference denoisers ``D(x̂, σ) -> denoised``."""
    w = check_guidance(w)
    if w == 1.0:
        return conditional
    if w == 0.0:
        return unconditional

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        d_u = unconditional(x, sigma).double()
        return d_u + w * (conditional(x, sigma).double() - d_u)

    return D
