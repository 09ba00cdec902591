"""Raw networks F(x, c_noise, class_labels) for the preconditioners.

``UNet`` is a compact EDM/DDPM++-style U-Net (after NVlabs/edm
``training/networks.py``, SongUNet): residual blocks with adaptive group-norm
scale/shift from the noise embedding, self-attention at chosen resolutions,
Fourier or positional noise embedding. ``MLP`` is the same idea for vectors
(2-D toy data). Both use only ops that export to ONNX, and the attention
softmax runs in float32 even when the network is half precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgediff.errors import EdgediffError


class PositionalEmbedding(nn.Module):
    """DDPM's sinusoidal embedding of the (scaled) noise label."""

    def __init__(self, dim: int, max_positions: int = 10000):
        super().__init__()
        freqs = torch.arange(dim // 2, dtype=torch.float32) / (dim // 2)
        self.register_buffer("freqs", (1 / max_positions) ** freqs)

    def forward(self, c_noise):
        x = c_noise[:, None] * self.freqs[None, :].to(c_noise.dtype)
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of the noise label (NCSN++, EDM's VE/EDM nets)."""

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, c_noise):
        x = c_noise[:, None] * (2 * math.pi * self.freqs[None, :].to(c_noise.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


EMBEDDINGS = {"positional": PositionalEmbedding, "fourier": FourierEmbedding}


class NoiseMLP(nn.Sequential):
    """Embedding of c_noise, then an MLP. The embedding runs in float32 (c_noise
    arrives in float32 even for a half network: fractional timesteps near 1000
    would round to 0.5 in float16); the MLP runs in the network's dtype."""

    def forward(self, c_noise):
        c = c_noise if c_noise.dtype == torch.float64 else c_noise.float()
        h = self[0](c).to(self[1].weight.dtype)
        for layer in list(self)[1:]:
            h = layer(h)
        return h


def _noise_mlp(embedding: str, channels: int, emb_channels: int) -> nn.Module:
    if embedding not in EMBEDDINGS:
        raise EdgediffError(f"unknown noise embedding {embedding!r}; choose one of "
                            f"{', '.join(EMBEDDINGS)}")
    return NoiseMLP(EMBEDDINGS[embedding](channels), nn.Linear(channels, emb_channels),
                    nn.SiLU(), nn.Linear(emb_channels, emb_channels), nn.SiLU())


def _groups(channels: int) -> int:
    g = min(32, max(1, channels // 4))
    while channels % g:
        g -= 1
    return g


class Attention(nn.Module):
    """Single-head self-attention over the spatial positions; softmax in float32."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        logits = torch.einsum("bci,bcj->bij", q.float(), k.float()) / math.sqrt(C)
        w = torch.softmax(logits, dim=2).type_as(v)  # type_as exports as a Cast; .to(dtype) did not
        return x + self.proj(torch.einsum("bij,bcj->bci", w, v).reshape(B, C, H, W))


class ResBlock(nn.Module):
    """GroupNorm–SiLU–conv twice, with the embedding as adaptive scale and shift."""

    def __init__(self, cin: int, cout: int, emb_channels: int, dropout: float, attention: bool):
        super().__init__()
        self.norm0 = nn.GroupNorm(_groups(cin), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_channels, 2 * cout)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.attn = Attention(cout) if attention else nn.Identity()

    def forward(self, x, emb):
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].to(h.dtype).chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        return self.attn((h + self.skip(x)) / math.sqrt(2))


class UNet(nn.Module):
    """Compact U-Net: ``len(channel_mult)`` levels of ``num_blocks`` residual
    blocks, average-pool down, nearest-neighbour up, skip connections."""

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int,
                 model_channels: int = 32, channel_mult: tuple[int, ...] = (1, 2),
                 num_blocks: int = 2, attn_resolutions: tuple[int, ...] = (4,),
                 dropout: float = 0.0, embedding: str = "positional", label_dim: int = 0):
        super().__init__()
        if img_resolution % 2 ** (len(channel_mult) - 1):
            raise EdgediffError(f"img_resolution {img_resolution} must be divisible by "
                                f"2^{len(channel_mult) - 1} for {len(channel_mult)} levels")
        emb_ch = 4 * model_channels
        self.map_noise = _noise_mlp(embedding, model_channels, emb_ch)
        self.map_label = nn.Linear(label_dim, emb_ch, bias=False) if label_dim else None
        self.conv_in = nn.Conv2d(in_channels, model_channels, 3, padding=1)
        self.down, skips, c, res = nn.ModuleList(), [model_channels], model_channels, img_resolution
        for level, mult in enumerate(channel_mult):
            for _ in range(num_blocks):
                self.down.append(ResBlock(c, model_channels * mult, emb_ch, dropout,
                                          res in attn_resolutions))
                c = model_channels * mult
                skips.append(c)
            if level < len(channel_mult) - 1:
                self.down.append(nn.AvgPool2d(2))
                skips.append(c)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(c, c, emb_ch, dropout, True),
                                  ResBlock(c, c, emb_ch, dropout, False)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_blocks + 1):
                self.up.append(ResBlock(c + skips.pop(), model_channels * mult, emb_ch, dropout,
                                        res in attn_resolutions))
                c = model_channels * mult
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                res *= 2
        self.norm_out = nn.GroupNorm(_groups(c), c)
        self.conv_out = nn.Conv2d(c, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, c_noise, class_labels=None):
        emb = self.map_noise(c_noise)
        if self.map_label is not None:
            emb = emb + _label_embedding(self.map_label, class_labels, emb.dtype)
        emb = emb.to(x.dtype)
        h, skips = self.conv_in(x), []
        skips.append(h)
        for block in self.down:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], 1), emb) if isinstance(block, ResBlock) \
                else block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def one_hot_labels(labels: torch.Tensor, num_classes: int, drop: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Class ids [B] as one-hot rows [B, num_classes]. The null id (``num_classes``)
    and rows where ``drop`` is set are all zeros: the unconditional input, as
    classifier-free guidance's label dropout trains it. Written as a comparison
    against a range so that it exports to ONNX as Equal + Cast."""
    ids = labels.reshape(-1, 1).long()
    onehot = (ids == torch.arange(num_classes, device=ids.device)[None]).float()
    if drop is not None:
        onehot = onehot * (~drop).float()[:, None]
    return onehot


def _label_embedding(layer: nn.Linear | None, class_labels, dtype) -> torch.Tensor | None:
    """map_label(one-hot): ids (integers) or one-hot rows (floats) both accepted."""
    if layer is None:
        return None
    if class_labels is None:
        raise EdgediffError("this network is class-conditional: pass class_labels")
    if not class_labels.is_floating_point():
        class_labels = one_hot_labels(class_labels, layer.in_features)
    return layer(class_labels.to(dtype))


class MLP(nn.Module):
    """Residual MLP for vector data, the noise embedding added in every block."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 4, embedding: str = "positional",
                 emb_channels: int = 64, label_dim: int = 0):
        super().__init__()
        self.map_noise = _noise_mlp(embedding, emb_channels, hidden)
        self.map_label = nn.Linear(label_dim, hidden, bias=False) if label_dim else None
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, c_noise, class_labels=None):
        shape = x.shape
        emb = self.map_noise(c_noise)
        if self.map_label is not None:
            emb = emb + _label_embedding(self.map_label, class_labels, emb.dtype)
        emb = emb.to(x.dtype)
        h = self.inp(x.reshape(shape[0], -1))
        for lin, norm in zip(self.blocks, self.norms, strict=True):
            h = h + lin(F.silu(norm(h + emb)))
        return self.out(F.silu(h)).reshape(shape)


ARCHITECTURES = {"unet": UNet, "mlp": MLP}


def build_network(name: str, **kwargs) -> nn.Module:
    """The architecture called ``name`` with its keyword arguments, as a config names it."""
    if name not in ARCHITECTURES:
        raise EdgediffError(f"unknown architecture {name!r}; choose one of "
                            f"{', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[name](**kwargs)
    except TypeError as e:
        raise EdgediffError(f"bad arguments for the {name!r} architecture: {e}") from None
