"""The one place a step loop meets the denoiser: float64 state in, float32 at
the call, a NaN/Inf guard on the way out, no per-step allocation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError

Callback = Callable[[dict[str, Any]], None] | None
NoiseFn = Callable[[int], np.ndarray]


class Denoiser(Protocol):
    """A backend: ``D(x float32 [B, *sample_shape], σ float32 [B]) -> denoised``.
    The returned array may be reused by the next call."""

    info: ArtifactInfo

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray: ...


class NonFiniteOutputError(EdgediffError):
    """The denoiser returned NaN or Inf: sampling stops rather than write garbage."""


class Call:
    """Calls ``denoiser`` on float64 state at scalar σ through reused float32 buffers."""

    def __init__(self, denoiser: Denoiser, shape: tuple[int, ...]):
        self.denoiser = denoiser
        self.x32 = np.empty(shape, dtype=np.float32)
        self.sigma32 = np.empty(shape[:1], dtype=np.float32)
        self.step = 0

    def __call__(self, x: np.ndarray, sigma: float, scale: float = 1.0) -> np.ndarray:
        """D(x / scale; σ) as float32 (valid until the next call)."""
        if scale == 1.0:
            np.copyto(self.x32, x, casting="same_kind")
        else:
            np.divide(x, scale, out=self.x32, casting="same_kind")
        self.sigma32.fill(sigma)
        out = self.denoiser(self.x32, self.sigma32)
        # one float64 reduction: NaN and ±Inf propagate, finite float32 cannot overflow it
        if not math.isfinite(out.sum(dtype=np.float64)):
            raise NonFiniteOutputError(
                f"the denoiser returned NaN/Inf at step {self.step} (σ = {sigma:.6g}); sampling "
                f"stopped. An fp16 engine overflowing does this: rebuild it without --fp16, or "
                f"check the model on 'edgediff check'")
        return out


def report(callback: Callback, i: int, x: np.ndarray, sigma: float, sigma_next: float,
           denoised: np.ndarray, scale: float = 1.0) -> None:
    """Hand step i to the callback: x̂ (= x / scale), σ, the next σ, and D."""
    if callback is not None:
        callback({"i": i, "x": x / scale, "sigma": sigma, "sigma_next": sigma_next,
                  "denoised": denoised})


def check_inputs(info: ArtifactInfo, x, sigma) -> tuple[np.ndarray, np.ndarray]:
    """Cast to float32 and check shapes: a clear message instead of a backend's own."""
    if (type(x) is np.ndarray and type(sigma) is np.ndarray and x.dtype == np.float32
            and sigma.dtype == np.float32 and x.shape[1:] == info.sample_shape
            and sigma.shape == x.shape[:1] and x.shape[0] > 0):
        return x, sigma  # the step loops' own calls: already right
    x = np.asarray(x)
    if x.ndim != 1 + len(info.sample_shape) or tuple(x.shape[1:]) != info.sample_shape:
        want = ", ".join(map(str, info.sample_shape))
        raise EdgediffError(f"x has shape {tuple(x.shape)}; this model takes [batch, {want}]")
    if x.shape[0] < 1:
        raise EdgediffError("x is an empty batch")
    if not np.issubdtype(x.dtype, np.floating):
        raise EdgediffError(f"x has dtype {x.dtype}; pass floating-point samples")
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float32), (x.shape[0],)) \
        if np.ndim(sigma) == 0 else np.asarray(sigma)
    if sigma.shape != (x.shape[0],):
        raise EdgediffError(f"sigma has shape {tuple(sigma.shape)}; it takes one σ per sample, "
                            f"shape ({x.shape[0]},)")
    if not np.issubdtype(sigma.dtype, np.floating):
        raise EdgediffError(f"sigma has dtype {sigma.dtype}; pass floating-point noise levels")
    return x.astype(np.float32, copy=False), sigma.astype(np.float32, copy=False)
