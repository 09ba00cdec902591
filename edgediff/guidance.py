"""What both guided denoisers share (the runtime's and the torch reference's)."""

from __future__ import annotations

import math

import numpy as np

from edgediff.errors import EdgediffError


def check_guidance(w) -> float:
    """A guidance scale: finite and ≥ 0 (w < 0 would guide away from the condition)."""
    if isinstance(w, bool) or not isinstance(w, int | float | np.integer | np.floating) \
            or not math.isfinite(w) or w < 0:
        raise EdgediffError(f"the guidance scale must be a finite number ≥ 0 (1: the "
                            f"conditional model alone, 0: the unconditional one), got {w!r}")
    return float(w)


def guidance_gain(w: float) -> float:
    """How much D = w·D_c + (1 − w)·D_u amplifies errors in D_c and D_u: |w| + |1 − w|
    (1 for 0 ≤ w ≤ 1). Multiply a float32 drift bound by it (edgediff.tolerance)."""
    return abs(w) + abs(1 - w)
