"""The torch reference of ``edgediff.runtime.guidance``: guidance as a denoiser,
D = D_u + w·(D_c − D_u) in float64, one pass at w = 0 or 1, and with an interval
(LO, HI) only for LO < σ ≤ HI (the conditional model alone elsewhere)."""

from __future__ import annotations

import torch

from edgediff.conditioning import check_guidance, check_interval, inside
from edgediff.samplers._common import Denoiser


def guided(conditional: Denoiser, unconditional: Denoiser, w: float,
           interval: tuple[float, float] | None = None) -> Denoiser:
    """Classifier-free guidance (Ho & Salimans 2022) or autoguidance (Karras et al.
    2024) around two reference denoisers ``D(x̂, σ) -> denoised``; with ``interval``,
    limited to LO < σ ≤ HI (Kynkäänniemi et al. 2024), per sample."""
    w, interval = check_guidance(w), check_interval(interval)
    if w == 1.0:
        return conditional
    if w == 0.0 and interval is None:
        return unconditional

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        d_c = conditional(x, sigma).double()
        d_u = unconditional(x, sigma).double()
        d = d_u + w * (d_c - d_u)
        if interval is None:
            return d
        mask = inside(interval, sigma.float()).reshape(  # σ as the runtime's call has it
            -1, *[1] * (x.ndim - 1))
        return torch.where(mask, d, d_c)

    return D
