"""The EDM2 magnitude-preserving U-Net (Karras et al. 2024, "Analyzing and Improving
the Training Dynamics of Diffusion Models", figure 21 and appendix B.7) and the network
part of its preconditioner.

Module and parameter names, constructor arguments and defaults follow NVlabs/edm2's
``training/networks_edm2.py`` so that a snapshot's state dict loads strictly; the
code is edgediff's own. ``fold_weight_norm`` turns a loaded network into one that
applies plain weights, for export.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from edgediff.errors import EdgediffError

from .mp_layers import MPConv, MPFourier, mp_cat, mp_silu, mp_sum, normalize, resample

# what UNet passes on to every Block; flavor, resample_mode and attention it sets itself
BLOCK_OPTIONS = ("resample_filter", "channels_per_head", "dropout", "res_balance",
                 "attn_balance", "clip_act")
PER_BLOCK = ("flavor", "resample_mode", "attention")
PRECOND_OPTIONS = ("use_fp16", "sigma_data")  # the preconditioner's, not the network's


class Block(nn.Module):
    """One encoder ('enc') or decoder ('dec') block of figure 21: optional 2×
    resampling, a residual branch of two 3×3 MPConvs modulated by the embedding,
    magnitude-preserving sums with the main branch, optional self-attention over
    pixels with pixel-normalised q, k, v, and a final clip of the activations.

    An encoder block projects its input with the 1×1 skip conv (when the channel
    count changes) and pixel-normalises it before the residual branch; a decoder
    block projects the main branch only where the branches meet.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int,
                 flavor: str = "enc", resample_mode: str = "keep",
                 resample_filter: Sequence[float] = (1, 1), attention: bool = False,
                 channels_per_head: int = 64, dropout: float = 0, res_balance: float = 0.3,
                 attn_balance: float = 0.3, clip_act: float | None = 256):
        super().__init__()
        if flavor not in ("enc", "dec") or resample_mode not in ("keep", "up", "down"):
            raise EdgediffError(f"EDM2 Block: flavor {flavor!r} / resample_mode "
                                f"{resample_mode!r}; choose 'enc' or 'dec' / 'keep', 'up' "
                                f"or 'down'")
        self.out_channels = out_channels
        self.flavor = flavor
        self.resample_filter = list(resample_filter)
        self.resample_mode = resample_mode
        # fewer channels than one head holds means no attention at all
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.dropout = dropout
        self.res_balance = res_balance
        self.attn_balance = attn_balance
        self.clip_act = clip_act
        self.emb_gain = nn.Parameter(torch.zeros([]))
        res_in = out_channels if flavor == "enc" else in_channels
        self.conv_res0 = MPConv(res_in, out_channels, kernel=[3, 3])
        self.emb_linear = MPConv(emb_channels, out_channels, kernel=[])
        self.conv_res1 = MPConv(out_channels, out_channels, kernel=[3, 3])
        self.conv_skip = (MPConv(in_channels, out_channels, kernel=[1, 1])
                          if in_channels != out_channels else None)
        attend = self.num_heads != 0
        self.attn_qkv = MPConv(out_channels, out_channels * 3, kernel=[1, 1]) if attend else None
        self.attn_proj = MPConv(out_channels, out_channels, kernel=[1, 1]) if attend else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # Main branch
        x = resample(x, f=self.resample_filter, mode=self.resample_mode)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = normalize(x, dim=1)  # pixel norm

        # Residual branch, scaled per channel by 1 + the embedding's projection
        y = self.conv_res0(mp_silu(x))
        scale = self.emb_linear(emb, gain=self.emb_gain) + 1
        y = mp_silu(y * scale[:, :, None, None].to(y.dtype))
        if self.training and self.dropout != 0:
            y = F.dropout(y, p=self.dropout)
        y = self.conv_res1(y)

        # Join the branches
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)

        if self.num_heads != 0:
            x = mp_sum(x, self.attention(x), t=self.attn_balance)
        if self.clip_act is not None:
            x = x.clamp(-self.clip_act, self.clip_act)
        return x

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention over the H·W pixels. The qkv conv's channels are
        laid out (head, channel, q|k|v); q, k and v are pixel-normalised per head."""
        head = self.out_channels // self.num_heads
        qkv = self.attn_qkv(x).reshape(-1, self.num_heads, head, 3, x.shape[2] * x.shape[3])
        q, k, v = normalize(qkv, dim=2).unbind(3)  # each [B, heads, c, pixels]
        logits = q.transpose(2, 3) @ (k / math.sqrt(head))  # [B, heads, q, k]
        y = v @ logits.softmax(dim=3).transpose(2, 3)  # [B, heads, c, q]
        return self.attn_proj(y.reshape(x.shape))


class UNet(nn.Module):
    """EDM2's U-Net F(x, c_noise, class_labels) (figure 21).

    The embedding is mp_silu of the noise level's Fourier features projected to
    ``model_channels·channel_mult_emb`` channels, mp_sum'd with the projected
    one-hot class label (scaled by sqrt(label_dim)) when conditional. The encoder
    starts from x with a constant-one channel appended; the decoder mp_cat's each
    skip before its 'block' stages. The output conv's gain (``out_gain``) starts at
    zero, so a freshly made network returns F = 0.
    """

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int,
                 model_channels: int = 192, channel_mult: Sequence[int] = (1, 2, 3, 4),
                 channel_mult_noise: int | None = None, channel_mult_emb: int | None = None,
                 num_blocks: int = 3, attn_resolutions: Sequence[int] = (16, 8),
                 label_balance: float = 0.5, concat_balance: float = 0.5, **block_kwargs):
        super().__init__()
        _check_block_options(block_kwargs)
        cblock = [model_channels * m for m in channel_mult]
        cnoise = cblock[0] if channel_mult_noise is None else model_channels * channel_mult_noise
        cemb = max(cblock) if channel_mult_emb is None else model_channels * channel_mult_emb
        self.label_balance = label_balance
        self.concat_balance = concat_balance
        self.out_gain = nn.Parameter(torch.zeros([]))

        # Embedding
        self.emb_fourier = MPFourier(cnoise)
        self.emb_noise = MPConv(cnoise, cemb, kernel=[])
        self.emb_label = MPConv(label_dim, cemb, kernel=[]) if label_dim != 0 else None

        # Encoder: a conv at full resolution, then per level a downsampling block
        # and num_blocks blocks
        self.enc = nn.ModuleDict()
        cout = img_channels + 1
        for level, channels in enumerate(cblock):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = MPConv(cout, channels, kernel=[3, 3])
                cout = channels
            else:
                self.enc[f"{res}x{res}_down"] = Block(cout, cout, cemb, flavor="enc",
                                                      resample_mode="down", **block_kwargs)
            for idx in range(num_blocks):
                self.enc[f"{res}x{res}_block{idx}"] = Block(
                    cout, channels, cemb, flavor="enc", attention=res in attn_resolutions,
                    **block_kwargs)
                cout = channels

        # Decoder: two blocks at the lowest resolution (the first attends), then per
        # level an upsampling block and num_blocks + 1 blocks that each take a skip
        self.dec = nn.ModuleDict()
        skips = [block.out_channels for block in self.enc.values()]
        for level, channels in reversed(list(enumerate(cblock))):
            res = img_resolution >> level
            if level == len(cblock) - 1:
                self.dec[f"{res}x{res}_in0"] = Block(cout, cout, cemb, flavor="dec",
                                                     attention=True, **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = Block(cout, cout, cemb, flavor="dec",
                                                     **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = Block(cout, cout, cemb, flavor="dec",
                                                    resample_mode="up", **block_kwargs)
            for idx in range(num_blocks + 1):
                self.dec[f"{res}x{res}_block{idx}"] = Block(
                    cout + skips.pop(), channels, cemb, flavor="dec",
                    attention=res in attn_resolutions, **block_kwargs)
                cout = channels
        self.out_conv = MPConv(cout, img_channels, kernel=[3, 3])

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        # Embedding
        emb = self.emb_noise(self.emb_fourier(noise_labels))
        if self.emb_label is not None:
            label_dim = self.emb_label.weight.shape[1]
            label = self.emb_label(class_labels * math.sqrt(label_dim))
            emb = mp_sum(emb, label, t=self.label_balance)
        emb = mp_silu(emb)

        # Encoder
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        skips = []
        for name, block in self.enc.items():
            x = block(x) if name.endswith("_conv") else block(x, emb)
            skips.append(x)

        # Decoder
        for name, block in self.dec.items():
            if "_block" in name:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = block(x, emb)
        return self.out_conv(x, gain=self.out_gain)


class EDM2Network(nn.Module):
    """The network part of EDM2's ``Precond``: F = unet(c_in·x, c_noise, one-hot
    label), with the submodules ``unet``, ``logvar_fourier`` and ``logvar_linear``
    named as in a snapshot so that its whole state dict loads strictly.

    The preconditioning around it is EDM's (Karras et al. 2022, table 1: c_skip,
    c_out, c_in, c_noise = ln(σ)/4), ``edgediff.models.precond.EDMPrecond``. The
    uncertainty branch u(σ) (eq 21) only weights the training loss: it is not part
    of the denoiser, and is held so that every snapshot tensor is accounted for.
    """

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int,
                 logvar_channels: int = 128, **unet_kwargs):
        super().__init__()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.label_dim = label_dim
        self.unet = UNet(img_resolution=img_resolution, img_channels=img_channels,
                         label_dim=label_dim, **unet_kwargs)
        self.logvar_fourier = MPFourier(logvar_channels)
        self.logvar_linear = MPConv(logvar_channels, 1, kernel=[])

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """F(x_in; c_noise), x_in [B, C, H, W], c_noise [B]; class_labels [B, label_dim]
        (float one-hot) or None, which a conditional network reads as all zeros."""
        if self.label_dim == 0:
            class_labels = None
        elif class_labels is None:
            class_labels = torch.zeros(1, self.label_dim, device=x_in.device)
        else:
            class_labels = class_labels.to(torch.float32).reshape(-1, self.label_dim)
        return self.unet(x_in, c_noise, class_labels)

    def logvar(self, c_noise: torch.Tensor) -> torch.Tensor:
        """The learned log-variance u(σ) of eq 21, [B, 1, 1, 1] (training only)."""
        return self.logvar_linear(self.logvar_fourier(c_noise)).reshape(-1, 1, 1, 1)


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every MPConv's weight normalisation into its parameter, in place, and
    return ``module``.

    An eval-mode MPConv applies ŵ = gain·normalize(w)/sqrt(fan-in), recomputed from
    w at every call; w changes only when training (the forced normalisation of
    eq 66 rewrites w in place before use, and the optimiser steps it). At inference
    w is fixed, so ŵ at gain 1 can be computed once — by the same ops, hence to the
    same float32 values — and stored; forward then multiplies it by the runtime
    gain (the learned ``emb_gain``/``out_gain`` scalars, which ONNX constant folding
    merges into the weights) and normalises nothing. The folded module is for
    inference and export: training it would skip the normalisation.
    """
    for layer in module.modules():
        if isinstance(layer, MPConv):
            layer.fold()
    return module


def _check_block_options(block_kwargs: dict) -> None:
    unknown = sorted(set(block_kwargs) - set(BLOCK_OPTIONS))
    if not unknown:
        return
    notes = [f"{', '.join(k for k in unknown if k in group)} {why}" for group, why in (
        (PER_BLOCK, "the UNet sets per block itself"),
        (PRECOND_OPTIONS, "belongs to the preconditioner, EDMPrecond"))
        if any(k in group for k in unknown)]
    raise EdgediffError(
        f"EDM2 UNet: unknown argument(s) {', '.join(unknown)}"
        f"{' (' + '; '.join(notes) + ')' if notes else ''}; it takes img_resolution, "
        f"img_channels, label_dim, model_channels, channel_mult, channel_mult_noise, "
        f"channel_mult_emb, num_blocks, attn_resolutions, label_balance, concat_balance "
        f"and the block options {', '.join(BLOCK_OPTIONS)}: remove or rename them")
