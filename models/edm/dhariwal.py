"""ADM, the U-Net of Dhariwal & Nichol 2021 ("Diffusion Models Beat GANs on Image
Synthesis", Section 3 and Appendix, after Nichol & Dhariwal 2021's improved DDPM),
as Karras et al. 2022 (EDM) trained it for ImageNet-64: residual blocks with
adaptive group-norm scale and shift from the embedding, 64-channel attention
heads, average-pool / nearest up-sampling inside the resampling blocks, and a
class embedding added to the noise embedding. Module names equal NVlabs/edm's
``DhariwalUNet`` so that its snapshots load strictly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgediff.models.edm.layers import (
    Conv2d,
    GroupNorm,
    Linear,
    PositionalEmbedding,
    UNetBlock,
    check_levels,
    label_input,
    reject_unknown,
)

ACCEPTED = ("img_resolution", "in_channels", "out_channels", "label_dim", "augment_dim",
            "model_channels", "channel_mult", "channel_mult_emb", "num_blocks",
            "attn_resolutions", "dropout", "label_dropout")


class DhariwalUNet(nn.Module):
    """F(x, c_noise, class_labels, augment_labels) for ADM; the keyword arguments and
    their defaults are NVlabs/edm's."""

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int,
                 label_dim: int = 0, augment_dim: int = 0, model_channels: int = 192,
                 channel_mult: Sequence[int] = (1, 2, 3, 4), channel_mult_emb: int = 4,
                 num_blocks: int = 3, attn_resolutions: Sequence[int] = (32, 16, 8),
                 dropout: float = 0.10, label_dropout: float = 0, **unknown):
        reject_unknown("DhariwalUNet", unknown, ACCEPTED)
        check_levels("DhariwalUNet", img_resolution, channel_mult)
        super().__init__()
        self.img_resolution, self.in_channels, self.out_channels = (
            img_resolution, in_channels, out_channels)
        self.label_dim, self.label_dropout = label_dim, label_dropout
        emb_channels = model_channels * channel_mult_emb
        init = {"init_mode": "kaiming_uniform", "init_weight": math.sqrt(1 / 3),
                "init_bias": math.sqrt(1 / 3)}
        init_zero = {"init_mode": "kaiming_uniform", "init_weight": 0, "init_bias": 0}
        block = {"emb_channels": emb_channels, "channels_per_head": 64, "dropout": dropout,
                 "init": init, "init_zero": init_zero}

        # Mapping network: noise (+ augmentation) embedding → MLP, + class embedding
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = (Linear(augment_dim, model_channels, bias=False, **init_zero)
                            if augment_dim else None)
        self.map_layer0 = Linear(model_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)
        self.map_label = (Linear(label_dim, emb_channels, bias=False, init_mode="kaiming_normal",
                                 init_weight=math.sqrt(label_dim)) if label_dim else None)

        # Encoder
        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cout = model_channels * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(in_channels, cout, 3, **init)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=res in attn_resolutions, **block)
        skips = [m.out_channels for m in self.enc.values()]

        # Decoder; its `_block` entries take the matching encoder output alongside
        self.dec, self.concat = nn.ModuleDict(), set()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=res in attn_resolutions, **block)
                self.concat.add(f"{res}x{res}_block{idx}")
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, 3, **init_zero)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, in, H, W], noise_labels [B] (float32), class_labels [B, label_dim]
        one-hot or None (no class), augment_labels [B, augment_dim] or None."""
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype))
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            emb = emb + self.map_label(label_input(self.map_label, class_labels,
                                                   self.label_dropout, self.training, emb))
        emb = F.silu(emb)

        skips = []
        for layer in self.enc.values():
            x = layer(x, emb) if isinstance(layer, UNetBlock) else layer(x)
            skips.append(x)
        for name, layer in self.dec.items():
            if name in self.concat:
                x = torch.cat([x, skips.pop()], dim=1)
            x = layer(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))
