"""Building blocks shared by the EDM U-Nets (Karras et al. 2022, "Elucidating the
Design Space of Diffusion-Based Generative Models", Appendix F).

The residual block covers the union of DDPM++ / NCSN++ (Song et al. 2021,
"Score-Based Generative Modeling through Stochastic Differential Equations") and
ADM (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis"):
group norm, SiLU, 3×3 convolutions with optional FIR up/down-sampling, the noise
embedding as an additive bias or as adaptive scale and shift, and optional
multi-head self-attention. Attribute names (``weight``, ``bias``,
``resample_filter``, ``norm0``, ``conv0``, ``affine``, ``skip``, ``qkv``, ``proj``
...) follow NVlabs' snapshots so that their state dicts load strictly.

Weights are cast to the input's dtype at each layer, so a float32 embedding can
drive a half-precision body; the attention softmax is always taken in float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgediff.errors import EdgediffError


def initial_weight(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    """A random tensor under one of the Glorot (xavier_*) or He (kaiming_*) schemes."""
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (2 * torch.rand(*shape) - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (2 * torch.rand(*shape) - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise ValueError(f"unknown init mode {mode!r}")


class Linear(nn.Module):
    """y = x·Wᵀ + b, W of shape [out, in]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init_mode: str = "kaiming_normal", init_weight: float = 1,
                 init_bias: float = 0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        fans = {"mode": init_mode, "fan_in": in_features, "fan_out": out_features}
        self.weight = nn.Parameter(initial_weight([out_features, in_features], **fans)
                                   * init_weight)
        self.bias = (nn.Parameter(initial_weight([out_features], **fans) * init_bias)
                     if bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight.to(x.dtype).t()
        return y if self.bias is None else y + self.bias.to(x.dtype)


class Conv2d(nn.Module):
    """A k×k convolution (k = 0: none) preceded by 2× up- or down-sampling through the
    separable FIR filter f·fᵀ/(Σf)², as in StyleGAN2 and NCSN++. With
    ``fused_resample`` the down-sampling follows the convolution instead (and the
    up-sampling precedes it with overlapping padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True,
                 up: bool = False, down: bool = False,
                 resample_filter: Sequence[float] = (1, 1), fused_resample: bool = False,
                 init_mode: str = "kaiming_normal", init_weight: float = 1,
                 init_bias: float = 0):
        if up and down:
            raise ValueError("a convolution resamples up or down, not both")
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        fans = {"mode": init_mode, "fan_in": in_channels * kernel * kernel,
                "fan_out": out_channels * kernel * kernel}
        self.weight = (nn.Parameter(initial_weight([out_channels, in_channels, kernel, kernel],
                                                   **fans) * init_weight)
                       if kernel else None)
        self.bias = (nn.Parameter(initial_weight([out_channels], **fans) * init_bias)
                     if kernel and bias else None)
        taps = torch.as_tensor(resample_filter, dtype=torch.float32)
        fir = torch.outer(taps, taps)[None, None] / taps.sum().square()
        self.register_buffer("resample_filter", fir if up or down else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.to(x.dtype)
        fir = None if self.resample_filter is None else self.resample_filter.to(x.dtype)
        w_pad = 0 if w is None else w.shape[-1] // 2
        f_pad = 0 if fir is None else (fir.shape[-1] - 1) // 2
        if w is not None and self.fused_resample and self.up:
            x = _upsample(x, fir, self.in_channels, max(f_pad - w_pad, 0))
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif w is not None and self.fused_resample and self.down:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, fir.repeat([self.out_channels, 1, 1, 1]), groups=self.out_channels,
                         stride=2)
        else:
            if self.up:
                x = _upsample(x, fir, self.in_channels, f_pad)
            if self.down:
                x = F.conv2d(x, fir.repeat([self.in_channels, 1, 1, 1]), groups=self.in_channels,
                             stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        return x if self.bias is None else x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)


def _upsample(x: torch.Tensor, fir: torch.Tensor, channels: int, pad: int) -> torch.Tensor:
    """Zero-insertion 2× up-sampling filtered by 4·fir, one channel at a time."""
    return F.conv_transpose2d(x, (4 * fir).repeat([channels, 1, 1, 1]), groups=channels,
                              stride=2, padding=pad)


class GroupNorm(nn.Module):
    """Group normalisation with min(num_groups, C/min_channels_per_group) groups."""

    def __init__(self, num_channels: int, num_groups: int = 32,
                 min_channels_per_group: int = 4, eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        if self.num_groups < 1 or num_channels % self.num_groups:
            raise EdgediffError(
                f"{num_channels} channels cannot be normalised in groups of at least "
                f"{min_channels_per_group}: min({num_groups}, {num_channels}//"
                f"{min_channels_per_group}) groups must divide them; choose model_channels "
                "and channel_mult so that every level's channel count does")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype),
                            self.bias.to(x.dtype), self.eps)


class UNetBlock(nn.Module):
    """Pre-activation residual block, optionally resampling, optionally followed by
    self-attention (φ = SiLU, s = ``skip_scale``):

        h = conv0(φ(norm0 x));  h = φ(norm1(h + a))            (DDPM++: a = affine(emb))
                            or  h = φ((1 + a₁)·norm1(h) + a₂)  (ADM, ``adaptive_scale``)
        x ← s·(skip(x) + conv1(dropout h));  x ← s·(x + proj(attention(norm2 x)))
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *,
                 up: bool = False, down: bool = False, attention: bool = False,
                 num_heads: int | None = None, channels_per_head: int = 64,
                 dropout: float = 0, skip_scale: float = 1, eps: float = 1e-5,
                 resample_filter: Sequence[float] = (1, 1), resample_proj: bool = False,
                 adaptive_scale: bool = True, init: dict | None = None,
                 init_zero: dict | None = None, init_attn: dict | None = None):
        super().__init__()
        init = init or {}
        init_zero = {"init_weight": 0} if init_zero is None else init_zero
        self.in_channels, self.out_channels, self.emb_channels = (
            in_channels, out_channels, emb_channels)
        heads = num_heads if num_heads is not None else out_channels // channels_per_head
        self.num_heads = heads if attention else 0
        self.dropout, self.skip_scale, self.adaptive_scale = dropout, skip_scale, adaptive_scale
        resample = {"up": up, "down": down, "resample_filter": resample_filter}

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, **resample, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, **resample, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1,
                              **(init if init_attn is None else init_attn))
            self.proj = Conv2d(out_channels, out_channels, 1, **init_zero)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(h.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        else:
            h = F.silu(self.norm1(h + params))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        h = (h + (x if self.skip is None else self.skip(x))) * self.skip_scale
        if self.num_heads:
            h = (self.proj(self._attend(self.norm2(h))) + h) * self.skip_scale
        return h

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled dot-product attention over the H·W positions, one softmax per head;
        the qkv channels are laid out as (head, channel, q|k|v)."""
        c_head = self.out_channels // self.num_heads
        n_pix = x.shape[2] * x.shape[3]
        q, k, v = self.qkv(x).reshape(-1, c_head, 3, n_pix).unbind(2)
        logits = torch.einsum("ncq,nck->nqk", q.float(), (k / math.sqrt(c_head)).float())
        weights = logits.softmax(dim=2).type_as(q)
        return torch.einsum("nqk,nck->ncq", weights, v).reshape(x.shape)


class PositionalEmbedding(nn.Module):
    """Transformer sinusoids of the noise label (Vaswani et al. 2017, as in DDPM):
    [cos(c·ω_i), sin(c·ω_i)] with ω_i = max_positions^(−i/(n/2 − endpoint))."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = (
            num_channels, max_positions, endpoint)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        # ω in float32 whatever the module's dtype: c_noise reaches ~10³ (VP)
        half = self.num_channels // 2
        exponents = torch.arange(half, dtype=torch.float32, device=c_noise.device)
        omega = (1 / self.max_positions) ** (exponents / (half - (1 if self.endpoint else 0)))
        phase = c_noise[:, None] * omega.to(c_noise.dtype)[None, :]
        return torch.cat([phase.cos(), phase.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of the noise label (Tancik et al. 2020, as in NCSN++):
    [cos(2π·c·f_i), sin(2π·c·f_i)], f ~ N(0, scale²) stored as the buffer ``freqs``."""

    def __init__(self, num_channels: int, scale: float = 16):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def _apply(self, fn, recurse=True):
        # follow device moves, not dtype casts: a half network (export's fp16) would
        # round f ≈ 50 to 2⁻¹¹ relative, turning phases of ~10³ into noise
        exact = self.freqs
        super()._apply(fn, recurse)
        if self.freqs is not None and self.freqs.dtype != exact.dtype:
            self.freqs = exact.to(self.freqs.device)
        return self

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        phase = c_noise[:, None] * (2 * math.pi * self.freqs).to(c_noise.dtype)[None, :]
        return torch.cat([phase.cos(), phase.sin()], dim=1)


def label_input(layer: Linear, class_labels: torch.Tensor | None, p_drop: float,
                training: bool, like: torch.Tensor) -> torch.Tensor:
    """The class-label rows fed to ``layer`` (map_label), in ``like``'s dtype. None
    means no class: one zero row, broadcast over the batch. While training, whole
    rows are zeroed with probability ``p_drop`` (classifier-free guidance's
    label dropout, Ho & Salimans 2022)."""
    if class_labels is None:
        return torch.zeros([1, layer.in_features], dtype=like.dtype, device=like.device)
    labels = class_labels.to(like.dtype)
    if training and p_drop:
        keep = torch.rand([labels.shape[0], 1], device=labels.device) >= p_drop
        labels = labels * keep.to(labels.dtype)
    return labels


def reject_unknown(owner: str, unknown: dict, accepted: Iterable[str]) -> None:
    """EdgediffError naming keyword arguments ``owner`` does not take."""
    if unknown:
        raise EdgediffError(
            f"{owner} got unknown keyword argument(s) {', '.join(map(repr, sorted(unknown)))}; "
            f"it accepts {', '.join(accepted)} (NVlabs/edm's names)")


def require_choice(owner: str, name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise EdgediffError(f"{owner}: {name}={value!r} is not supported; choose one of "
                            f"{', '.join(map(repr, choices))}")


def check_levels(owner: str, img_resolution: int, channel_mult: Sequence[int]) -> None:
    """The resolution must halve cleanly once per level after the first."""
    if not channel_mult or any(int(m) < 1 for m in channel_mult):
        raise EdgediffError(f"{owner}: channel_mult={list(channel_mult)!r} must be a non-empty "
                            "list of positive multipliers, one per resolution level")
    steps = 2 ** (len(channel_mult) - 1)
    if img_resolution < steps or img_resolution % steps:
        raise EdgediffError(
            f"{owner}: img_resolution={img_resolution} cannot be halved "
            f"{len(channel_mult) - 1} times for {len(channel_mult)} levels; use a multiple "
            f"of {steps} or a shorter channel_mult")
