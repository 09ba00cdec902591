"""Magnitude-preserving primitives of the EDM2 network (Karras et al. 2024, "Analyzing
and Improving the Training Dynamics of Diffusion Models", section 2.3 and appendix B).

Each operation keeps the expected magnitude of unit-variance inputs at one: a
rescaled SiLU, sums and concatenations whose weights are normalised, Fourier
features scaled by √2, and convolutions whose weights are normalised per output
channel before every use. They are plain torch ops, export to ONNX (opset 17) and
branch only on Python values, never on a tensor's contents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SILU_MAGNITUDE = 0.596  # E[silu(z)²]^½ for z ~ N(0, 1), eq 81


def normalize(x: torch.Tensor, dim: int | Sequence[int] | None = None,
              eps: float = 1e-4) -> torch.Tensor:
    """x divided by its RMS over ``dim`` (all but the first axis by default), with
    ``eps`` added to the RMS so that an all-zero slice stays finite (eq 66's
    normalisation; also the pixel norm of figure 21). The norm is taken in float32."""
    dims = list(range(1, x.ndim)) if dim is None else [dim] if isinstance(dim, int) else list(dim)
    count = math.prod(x.shape[d] for d in dims)
    norm = torch.linalg.vector_norm(x.to(torch.float32), dim=dims, keepdim=True)
    rms = eps + norm * math.sqrt(1 / count)
    return x / rms.to(x.dtype)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU divided by its output magnitude for standard normal input (eq 81)."""
    return F.silu(x) / SILU_MAGNITUDE


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """(1−t)·a + t·b, rescaled by 1/sqrt((1−t)² + t²) so that two independent
    unit-magnitude inputs give a unit-magnitude sum (eq 88)."""
    return torch.lerp(a, b, t) / math.sqrt((1 - t) ** 2 + t ** 2)


def mp_cat(a: torch.Tensor, b: torch.Tensor, dim: int = 1, t: float = 0.5) -> torch.Tensor:
    """Concatenation along ``dim`` where a carries weight (1−t) and b weight t of
    the result's magnitude, whatever their channel counts N_a and N_b (eq 103)."""
    n_a, n_b = a.shape[dim], b.shape[dim]
    scale = math.sqrt((n_a + n_b) / ((1 - t) ** 2 + t ** 2))
    return torch.cat([a * (scale * (1 - t) / math.sqrt(n_a)),
                      b * (scale * t / math.sqrt(n_b))], dim=dim)


def resample(x: torch.Tensor, f: Sequence[float] = (1, 1), mode: str = "keep") -> torch.Tensor:
    """2× down- or upsampling of [B, C, H, W] with the separable filter f (normalised
    to unit sum; an upsampling kernel is scaled by 4 to keep the mean), or x itself
    for ``mode="keep"``. The default box filter [1, 1] makes "down" a 2×2 average
    and "up" a nearest-neighbour upsampling."""
    if mode == "keep":
        return x
    taps = np.asarray(f, dtype=np.float32)
    taps = taps / taps.sum()
    channels, pad = x.shape[1], (len(taps) - 1) // 2
    # one depthwise kernel per channel, built whole so that export sees its shape
    kernel = np.tile(np.outer(taps, taps), (channels, 1, 1, 1))
    if mode == "down":
        return F.conv2d(x, torch.as_tensor(kernel, dtype=x.dtype, device=x.device),
                        groups=channels, stride=2, padding=pad)
    return F.conv_transpose2d(x, torch.as_tensor(kernel * 4, dtype=x.dtype, device=x.device),
                              groups=channels, stride=2, padding=pad)


class MPFourier(nn.Module):
    """Fourier features √2·cos(2π(f·x + φ)) of a scalar per sample, with random
    frequencies f ~ N(0, bandwidth²) and phases φ ~ U[0, 1) held as buffers (eq 75).
    Computed in float32, returned in the input's dtype."""

    def __init__(self, num_channels: int, bandwidth: float = 1):
        super().__init__()
        self.register_buffer("freqs", 2 * np.pi * torch.randn(num_channels) * bandwidth)
        self.register_buffer("phases", 2 * np.pi * torch.rand(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to(torch.float32)[:, None] * self.freqs.to(torch.float32)[None, :]
        y = y + self.phases.to(torch.float32)
        return (y.cos() * math.sqrt(2)).to(x.dtype)


class MPConv(nn.Module):
    """Magnitude-preserving convolution (kernel [k, k]) or linear layer (kernel [])
    with forced weight normalisation (eqs 47 and 66).

    The stored weight w is used as ŵ = gain · normalize(w) / sqrt(fan-in): each output
    channel's weights have unit RMS, so unit-magnitude input gives output of
    magnitude ``gain``. In training mode w itself is also overwritten by normalize(w)
    before use (the "forced" part, which controls the effective learning rate);
    that step changes nothing that an eval-mode forward returns.

    After ``fold()`` the parameter holds normalize(w)/sqrt(fan-in) and is used as
    it is, times ``gain``: for inference and export only.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int]):
        super().__init__()
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *kernel))
        self.folded = False

    def forward(self, x: torch.Tensor, gain: float | torch.Tensor = 1) -> torch.Tensor:
        w = self.used_weight(gain).to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return F.conv2d(x, w, padding=w.shape[-1] // 2)

    def used_weight(self, gain: float | torch.Tensor = 1) -> torch.Tensor:
        """ŵ, the weight this layer's forward applies (float32 unless folded)."""
        if self.folded:
            unit_gain = not isinstance(gain, torch.Tensor) and gain == 1
            return self.weight if unit_gain else self.weight * gain
        if self.training:
            with torch.no_grad():  # forced weight normalisation, eq 66
                self.weight.copy_(normalize(self.weight.to(torch.float32)))
        return self._normalized(gain)

    @torch.no_grad()
    def fold(self) -> None:
        """Store ŵ at gain 1, computed exactly as an eval-mode forward computes it,
        and stop renormalising. Idempotent."""
        if not self.folded:
            self.weight.copy_(self._normalized(1))
            self.folded = True

    def _normalized(self, gain: float | torch.Tensor) -> torch.Tensor:
        w = self.weight.to(torch.float32)
        return normalize(w) * (gain / math.sqrt(w[0].numel()))
