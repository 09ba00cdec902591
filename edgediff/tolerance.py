"""How far apart two float32 runs of one solver may end, from an argument.

Two runs that differ only in their float32 kernels — ONNX Runtime against
torch, AVX2 against AVX-512, one batch size against another (kernels block and
vectorise by batch) — round differently. Bounds on their difference are made
here, from float32's resolution and what the solver amplifies, never copied
from what one machine printed. The argument:

1. *Per call.* A denoiser call rounds its input x̂ to float32 and returns a
   float32 D. Two kernels' results differ by a few ulps of the largest
   magnitude in the call: ``ULPS_PER_CALL · eps32 · m``, with
   m = max(|x̂|, |D|, the data range's magnitude). The network's own
   reassociation error is relative to its scaled output c_out·F: at most σ_data
   for EDM, v and x0 models, and σ·|ε̂| ≈ |x̂| for ε-prediction — within m
   either way.
2. *Across calls.* Every step here is x̂' = a·x̂ + Σ_j b_j·D_{i−j} (+ identical
   noise) with |a| ≤ 1. A one-step solver uses each D once with |b| ≤ 1 (Heun's
   correction and DPM-Solver++(2M)'s extrapolation reach 1.5); a multistep solver
   uses each D in several steps, so its error reaches the final sample with the
   sum of its weights: the solver's ``error_gain`` in the catalogue (for iPNDM-4
   the Adams–Bashforth weights' Σ|a_j| = 160/24 ≈ 6.7). Errors of different calls
   add at most linearly, so the final difference is at most
   ``error_gain · ULPS_PER_CALL · eps32 · Σ_calls m``.
3. *What amplifies it*: the number of calls (NFE), and the size of |x̂| along
   the way — σ_max·|z| at the start, raised by EDM's churn, which adds noise
   until the state sits at t̂ = (1 + γ)·t. ``TrajectoryScale`` reads both off
   the run itself: its per-step |x̂| and |D| (after churn), times the calls per
   step.

Summing m per call rather than taking NFE × max m keeps the bound honest for
long runs whose state shrinks from σ_max·|z| to the data's scale; real runs
stay well inside it because steps also contract (an error made at σ_i is
damped by the flow toward σ = 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2⁻²³ ≈ 1.19e-7, float32's relative resolution
ULPS_PER_CALL = 4  # ½ ulp input cast + ½ ulp output + ~3 ulps of reassociation (point 1)
WEIGHT = 1.5  # the largest weight an update gives x̂ or D (point 2)


def drift_bound(call_scales: float | list[float] | np.ndarray, weight: float = WEIGHT) -> float:
    """The bound of point 2 for calls whose magnitudes m are ``call_scales``
    (a sum, or the per-call values); ``weight``: the solver's ``error_gain``."""
    return weight * ULPS_PER_CALL * EPS32 * float(np.sum(call_scales))


class TrajectoryScale:
    """A sampling callback that records, per step, the largest |x̂| and |D| (the
    state after EDM's churn), and turns them into ``drift_bound``. Steps seen
    more than once (several batches) keep their largest value."""

    def __init__(self, calls_per_step: int = 1, data_range: tuple[float, float] = (-1.0, 1.0),
                 weight: float = WEIGHT):
        self.calls_per_step = calls_per_step
        self.weight = weight
        self.floor = max(abs(data_range[0]), abs(data_range[1]))
        self.steps: dict[int, float] = {}

    def __call__(self, step: dict[str, Any]) -> None:
        m = max(float(np.abs(step["x"]).max()), float(np.abs(step["denoised"]).max()),
                self.floor)
        self.steps[step["i"]] = max(self.steps.get(step["i"], 0.0), m)

    def bound(self) -> float:
        """How far another float32 run of the same trajectory may end from this one.
        A Heun-type step calls twice, on states no larger than its own and its
        successor's (so ``calls_per_step`` × the larger of the two)."""
        if not self.steps:
            raise ValueError("no steps recorded: pass this object as the sampling callback")
        m = [self.steps[i] for i in sorted(self.steps)]
        per_step = [max(a, b) for a, b in zip(m, m[1:] + m[-1:], strict=True)]
        return drift_bound(np.multiply(per_step, self.calls_per_step), self.weight)

    @classmethod
    def for_solver(cls, spec, data_range: tuple[float, float] = (-1.0, 1.0)) -> TrajectoryScale:
        """For a catalogue solver (``edgediff.catalogue.SolverSpec``): its calls per step and
        its error gain."""
        return cls(spec.calls_per_step, data_range, spec.error_gain)


def mixture_denoiser_bound(mixture, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per sample, how far a float32 evaluation of a Gaussian mixture's exact
    denoiser (``edgediff.mixture``) may be from the float64 one.

    D mixes the components' posterior means with weights r_k = softmax of the
    log-weights ℓ_k = log π_k − ‖x̂ − μ_k‖²/(2v_k) − …, v_k = τ_k² + σ². Each ℓ_k
    is computed to a few ulps of its own size E = max_k ‖x̂ − μ_k‖²/(2v_k), and
    an absolute error δ in the ℓ's moves D by at most δ·(the spread of the
    posterior means) ≤ δ·2m, with m = max(|x̂|, |μ|). The shrinkage itself adds a
    few ulps of m. So ≤ ULPS_PER_CALL·eps32·m·(1 + 2E): the far tails of
    a sharp mode (large E) are where float32 loses the most.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1, mixture.dim)
    sigma = np.asarray(sigma, dtype=np.float64).reshape(-1, 1, 1)
    var = mixture.stds**2 + sigma**2  # [B, 1, K]
    sq = ((x[..., None, :] - mixture.means) ** 2).sum(-1)  # [B, N, K]
    E = (sq / (2 * var)).max(axis=(1, 2))
    m = np.maximum(np.abs(x).max(axis=(1, 2)), np.abs(mixture.means).max())
    return ULPS_PER_CALL * EPS32 * m * (1 + 2 * E)
