"""DDPM++ and NCSN++ (Song et al. 2021, "Score-Based Generative Modeling through
Stochastic Differential Equations", Appendix H) in the form Karras et al. 2022
(EDM) trained them: one U-Net whose options select either configuration.

DDPM++ (the VP models): positional embedding, ``resample_filter`` [1, 1], standard
encoder and decoder. NCSN++ (the VE models): Fourier embedding with
``channel_mult_noise`` 2, filter [1, 3, 3, 1], a residual encoder that carries the
down-sampled input alongside (the progressive input of Song et al.), and a skip
decoder that sums an RGB output from every level (progressive output). Module
names equal NVlabs/edm's ``SongUNet`` so that its snapshots load strictly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgediff.models.edm.layers import (
    Conv2d,
    FourierEmbedding,
    GroupNorm,
    Linear,
    PositionalEmbedding,
    UNetBlock,
    check_levels,
    label_input,
    reject_unknown,
    require_choice,
)

ACCEPTED = ("img_resolution", "in_channels", "out_channels", "label_dim", "augment_dim",
            "model_channels", "channel_mult", "channel_mult_emb", "num_blocks",
            "attn_resolutions", "dropout", "label_dropout", "embedding_type",
            "channel_mult_noise", "encoder_type", "decoder_type", "resample_filter")
EMBEDDINGS = ("positional", "fourier")
ENCODERS = ("standard", "skip", "residual")
DECODERS = ("standard", "skip")


class SongUNet(nn.Module):
    """F(x, c_noise, class_labels, augment_labels) for DDPM++ / NCSN++; the keyword
    arguments and their defaults are NVlabs/edm's."""

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int,
                 label_dim: int = 0, augment_dim: int = 0, model_channels: int = 128,
                 channel_mult: Sequence[int] = (1, 2, 2, 2), channel_mult_emb: int = 4,
                 num_blocks: int = 4, attn_resolutions: Sequence[int] = (16,),
                 dropout: float = 0.10, label_dropout: float = 0,
                 embedding_type: str = "positional", channel_mult_noise: int = 1,
                 encoder_type: str = "standard", decoder_type: str = "standard",
                 resample_filter: Sequence[float] = (1, 1), **unknown):
        reject_unknown("SongUNet", unknown, ACCEPTED)
        require_choice("SongUNet", "embedding_type", embedding_type, EMBEDDINGS)
        require_choice("SongUNet", "encoder_type", encoder_type, ENCODERS)
        require_choice("SongUNet", "decoder_type", decoder_type, DECODERS)
        check_levels("SongUNet", img_resolution, channel_mult)
        super().__init__()
        self.img_resolution, self.in_channels, self.out_channels = (
            img_resolution, in_channels, out_channels)
        self.label_dim, self.label_dropout = label_dim, label_dropout
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        init = {"init_mode": "xavier_uniform"}
        init_zero = {"init_mode": "xavier_uniform", "init_weight": 1e-5}
        init_attn = {"init_mode": "xavier_uniform", "init_weight": math.sqrt(0.2)}
        block = {"emb_channels": emb_channels, "num_heads": 1, "dropout": dropout,
                 "skip_scale": math.sqrt(0.5), "eps": 1e-6, "resample_filter": resample_filter,
                 "resample_proj": True, "adaptive_scale": False, "init": init,
                 "init_zero": init_zero, "init_attn": init_attn}

        # Mapping network: noise (+ label, + augmentation) embedding → emb_channels
        self.map_noise = (PositionalEmbedding(noise_channels, endpoint=True)
                          if embedding_type == "positional" else FourierEmbedding(noise_channels))
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_augment = (Linear(augment_dim, noise_channels, bias=False, **init)
                            if augment_dim else None)
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        # Encoder; `roles` tells forward how each entry is wired
        self.enc, self.dec, self.roles = nn.ModuleDict(), nn.ModuleDict(), {}
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cout = model_channels
                self._add(self.enc, f"{res}x{res}_conv", Conv2d(in_channels, cout, 3, **init),
                          "conv")
            else:
                self._add(self.enc, f"{res}x{res}_down",
                          UNetBlock(cout, cout, down=True, **block), "block")
                if encoder_type == "skip":
                    self._add(self.enc, f"{res}x{res}_aux_down",
                              Conv2d(caux, caux, 0, down=True, resample_filter=resample_filter),
                              "aux_down")
                    self._add(self.enc, f"{res}x{res}_aux_skip",
                              Conv2d(caux, cout, 1, **init), "aux_skip")
                if encoder_type == "residual":
                    self._add(self.enc, f"{res}x{res}_aux_residual",
                              Conv2d(caux, cout, 3, down=True, resample_filter=resample_filter,
                                     fused_resample=True, **init), "aux_residual")
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self._add(self.enc, f"{res}x{res}_block{idx}",
                          UNetBlock(cin, cout, attention=res in attn_resolutions, **block),
                          "block")
        skips = [m.out_channels for name, m in self.enc.items() if "aux" not in self.roles[name]]

        # Decoder; each level ends in an output head when the decoder is 'skip'
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self._add(self.dec, f"{res}x{res}_in0",
                          UNetBlock(cout, cout, attention=True, **block), "block")
                self._add(self.dec, f"{res}x{res}_in1", UNetBlock(cout, cout, **block), "block")
            else:
                self._add(self.dec, f"{res}x{res}_up", UNetBlock(cout, cout, up=True, **block),
                          "block")
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attention = idx == num_blocks and res in attn_resolutions
                self._add(self.dec, f"{res}x{res}_block{idx}",
                          UNetBlock(cin, cout, attention=attention, **block), "concat_block")
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self._add(self.dec, f"{res}x{res}_aux_up",
                              Conv2d(out_channels, out_channels, 0, up=True,
                                     resample_filter=resample_filter), "aux_up")
                self._add(self.dec, f"{res}x{res}_aux_norm", GroupNorm(cout, eps=1e-6),
                          "aux_norm")
                self._add(self.dec, f"{res}x{res}_aux_conv",
                          Conv2d(cout, out_channels, 3, **init_zero), "aux_conv")

    def _add(self, table: nn.ModuleDict, name: str, module: nn.Module, role: str) -> None:
        table[name] = module
        self.roles[name] = role

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, in, H, W], noise_labels [B] (float32), class_labels [B, label_dim]
        one-hot or None (no class), augment_labels [B, augment_dim] or None."""
        emb = _sin_then_cos(self.map_noise(noise_labels))
        if self.map_label is not None:
            labels = label_input(self.map_label, class_labels, self.label_dropout,
                                 self.training, emb)
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype))
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

        # Encoder: the aux path carries the (down-sampled) input image
        skips, aux = [], x
        for name, layer in self.enc.items():
            role = self.roles[name]
            if role == "aux_down":
                aux = layer(aux)
            elif role == "aux_skip":
                x = skips[-1] = x + layer(aux)
            elif role == "aux_residual":
                x = skips[-1] = aux = (x + layer(aux)) / math.sqrt(2)
            else:
                x = layer(x) if role == "conv" else layer(x, emb)
                skips.append(x)

        # Decoder: the aux path sums the per-level outputs
        aux = h = None
        for name, layer in self.dec.items():
            role = self.roles[name]
            if role == "aux_up":
                aux = layer(aux)
            elif role == "aux_norm":
                h = layer(x)
            elif role == "aux_conv":
                h = layer(F.silu(h))
                aux = h if aux is None else h + aux
            else:
                if role == "concat_block":
                    x = torch.cat([x, skips.pop()], dim=1)
                x = layer(x, emb)
        return aux


def _sin_then_cos(emb: torch.Tensor) -> torch.Tensor:
    """Song et al. order the sinusoids sin first; the embeddings emit cos first."""
    cos, sin = emb.chunk(2, dim=1)
    return torch.cat([sin, cos], dim=1)
