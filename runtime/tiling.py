"""Tiled decoding: a large latent decoded tile by tile, so the decoder's activations
are those of one tile, not of the whole image.

The latent [B, C, h, w] is cut into tiles of ``size`` latent pixels per side that
overlap by ``overlap`` (stride = size − overlap; the last tile of a row or column
is moved back to end at the edge, so tiles cover the latent exactly whatever its
size). Each tile is decoded on its own and placed at ×upscale. Where tiles
overlap, each is weighted by a window that ramps (linearly or as a raised cosine)
across ``overlap·upscale`` image pixels on every side that has a neighbour and is
1 elsewhere; the image is Σ wᵢ·tileᵢ / Σ wᵢ, so the weights of every pixel sum to
1. Between two tiles a stride apart the two ramps are complementary (r(k) +
r(L−1−k) = 1), so there the division changes nothing: a plain crossfade (when
2·overlap ≤ size, so that no pixel lies in three tiles of a row).

A decoder that maps each latent pixel to its own block of image pixels
(pointwise, then upsampling) gives exactly the untiled image. A real VAE decoder
does not: its 3×3 convolutions see a few latent pixels past a tile's edge, and
GroupNorm and the mid-block's attention see the whole input, so a tile's
statistics are its own. The overlap hides the seams the convolutions would leave;
the global statistics differ by how much tiles differ from the whole image
(docs/latent.md gives measured figures). Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgediff.errors import EdgediffError

RAMPS = ("linear", "cosine")


@dataclass(frozen=True)
class Tiling:
    """How to tile a decode: tiles of ``size`` latent pixels per side, overlapping by
    ``overlap`` latent pixels, blended with ``ramp`` (``linear`` or ``cosine``)."""

    size: int
    overlap: int = 4
    ramp: str = "linear"

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise EdgediffError(f"tile size must be an integer ≥ 1 latent pixel, got "
                                f"{self.size!r}")
        if (isinstance(self.overlap, bool) or not isinstance(self.overlap, int)
                or not 0 <= self.overlap < self.size):
            raise EdgediffError(f"tile overlap must be an integer from 0 to tile size − 1 "
                                f"({self.size - 1}), got {self.overlap!r}")
        if self.ramp not in RAMPS:
            raise EdgediffError(f"unknown ramp {self.ramp!r}; choose one of {', '.join(RAMPS)}")


def tile_starts(n: int, size: int, overlap: int) -> list[int]:
    """Where tiles start along a side of ``n`` latent pixels: every ``size − overlap``,
    the last moved back to end at ``n``; one tile when ``n ≤ size``."""
    if n <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, n - size, stride))
    return [*starts, n - size]


def ramp(length: int, kind: str = "linear") -> np.ndarray:
    """The rising edge of a window over ``length`` pixels, at pixel centres: values in
    (0, 1), with ramp[k] + ramp[length−1−k] = 1."""
    t = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    return t if kind == "linear" else np.sin(0.5 * np.pi * t) ** 2


def window(length: int, before: bool, after: bool, fade: int, kind: str = "linear"
           ) -> np.ndarray:
    """A tile's 1-D weights over its ``length`` image pixels: rising over the first
    ``fade`` pixels when it has a neighbour ``before``, falling over the last ``fade``
    when it has one ``after``, 1 elsewhere (a product where the two meet); never 0."""
    w = np.ones(length)
    fade = min(fade, length)
    if fade and before:
        w[:fade] *= ramp(fade, kind)
    if fade and after:
        w[length - fade:] *= ramp(fade, kind)[::-1]
    return w


def tiles(h: int, w: int, tiling: Tiling) -> list[tuple[int, int, int, int]]:
    """The tiles (y, x, height, width) in latent pixels that cover an h × w latent."""
    ys = tile_starts(h, tiling.size, tiling.overlap)
    xs = tile_starts(w, tiling.size, tiling.overlap)
    return [(y, x, min(tiling.size, h), min(tiling.size, w)) for y in ys for x in xs]


def weights(h: int, w: int, upscale: int, tiling: Tiling) -> list[np.ndarray]:
    """Each tile's 2-D window over its image pixels (before normalization), in the
    order of ``tiles``."""
    ys = tile_starts(h, tiling.size, tiling.overlap)
    xs = tile_starts(w, tiling.size, tiling.overlap)
    fade = tiling.overlap * upscale

    def side(starts, k, n):
        return window(min(tiling.size, n) * upscale, k > 0, k < len(starts) - 1, fade,
                      tiling.ramp)
    return [np.outer(side(ys, i, h), side(xs, j, w))
            for i in range(len(ys)) for j in range(len(xs))]


def decode_tiled(decode: Callable[[np.ndarray], np.ndarray], z: np.ndarray, upscale: int,
                 tiling: Tiling, progress: Callable[[int, int], None] | None = None
                 ) -> np.ndarray:
    """``decode`` ([B, C, th, tw] -> [B, C', th·upscale, tw·upscale]) over the tiles of
    ``z`` [B, C, h, w], blended: float32 [B, C', h·upscale, w·upscale]. Only one
    tile's decode and the output image are held at once. ``progress(done, total)``
    after each tile."""
    b, _, h, w = z.shape
    boxes, wins = tiles(h, w, tiling), weights(h, w, upscale, tiling)
    total = np.zeros((h * upscale, w * upscale))
    out = None
    for k, ((y, x, th, tw), win) in enumerate(zip(boxes, wins, strict=True)):
        part = decode(np.ascontiguousarray(z[:, :, y:y + th, x:x + tw]))
        want = (b, th * upscale, tw * upscale)
        if part.ndim != 4 or (part.shape[0], *part.shape[2:]) != want:
            raise EdgediffError(f"the decoder returned {list(part.shape)} for a latent tile "
                                f"{[b, z.shape[1], th, tw]}; expected [{b}, C, {want[1]}, "
                                f"{want[2]}]")
        if out is None:
            out = np.zeros((b, part.shape[1], h * upscale, w * upscale), np.float32)
        sy, sx = slice(y * upscale, (y + th) * upscale), slice(x * upscale, (x + tw) * upscale)
        out[:, :, sy, sx] += (part * win).astype(np.float32)
        total[sy, sx] += win
        if progress is not None:
            progress(k + 1, len(boxes))
    out /= total.astype(np.float32)
    return out
