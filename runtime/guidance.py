"""Guidance is a denoiser, not a solver option (DESIGN.md §5).

``Guided`` wraps a conditional and an unconditional (or weaker) denoiser and is
itself a denoiser: D = D_u + w·(D_c − D_u), combined in float64 on the host, so
every step loop, present and future, gets guidance without being touched.

- classifier-free guidance (Ho & Salimans 2022): D_c and D_u are one network
  with the requested labels and with the null label;
- autoguidance (Karras et al. 2024, EDM2): D_u is a second, weaker network
  conditioned on the same labels.

w = 1 is the conditional model alone and w = 0 the unconditional one: each is
one pass. The step loops' NaN/Inf guard sees the combined D, so it names the
step and σ as for any backend.
"""

from __future__ import annotations

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.guidance import check_guidance
from edgediff.runtime._call import Denoiser


class Guided:
    """D(x̂; σ) = D_u + w·(D_c − D_u) in float64, from two denoisers that share
    the artifact contract (same sample shape; ``info`` is the conditional one's)."""

    def __init__(self, conditional: Denoiser, unconditional: Denoiser, w: float):
        self.w = check_guidance(w)
        self.conditional, self.unconditional = conditional, unconditional
        self.info = conditional.info
        if unconditional.info.sample_shape != self.info.sample_shape:
            raise EdgediffError(f"the guiding model takes samples of shape "
                                f"{unconditional.info.sample_shape}, the guided one "
                                f"{self.info.sample_shape}")
        self._out: np.ndarray | None = None

    @property
    def passes(self) -> int:
        """Denoiser passes per call: 1 at w = 0 or 1, else 2."""
        return 1 if self.w in (0.0, 1.0) else 2

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        if self.w == 1.0:
            return self.conditional(x, sigma)
        if self.w == 0.0:
            return self.unconditional(x, sigma)
        if self._out is None or self._out.shape != x.shape:
            self._out = np.empty(x.shape, dtype=np.float64)
        out = self._out
        np.copyto(out, self.conditional(x, sigma))  # D_c (a backend may reuse its buffer)
        d_u = self.unconditional(x, sigma)
        out -= d_u  # D_c − D_u
        out *= self.w
        out += d_u
        return out
