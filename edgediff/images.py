"""Minimal image output in NumPy: grids of samples as 8-bit grayscale/RGB PNG.

No Pillow: a PNG is a signature, an IHDR chunk, zlib-compressed scanlines
(filter byte 0) in IDAT, and IEND (PNG spec, ISO/IEC 15948 §5, §11).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def to_uint8(images: np.ndarray, data_range=(-1.0, 1.0)) -> np.ndarray:
    lo, hi = data_range
    x = (np.asarray(images, dtype=np.float64) - lo) / (hi - lo)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def grid(images: np.ndarray, columns: int | None = None, pad: int = 1,
         scale: int = 1) -> np.ndarray:
    """[N, C, H, W] uint8 -> one [rows·(H+pad), cols·(W+pad), C] canvas, pixels repeated
    ``scale`` times."""
    n, c, h, w = images.shape
    cols = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        canvas[y:y + h, x:x + w] = images[k].transpose(1, 2, 0)
    return canvas.repeat(scale, 0).repeat(scale, 1)


def write_png(path: str | Path, pixels: np.ndarray) -> None:
    """Write [H, W] or [H, W, 1|3] uint8 as PNG."""
    px = np.asarray(pixels, dtype=np.uint8)
    if px.ndim == 3 and px.shape[2] == 1:
        px = px[..., 0]
    color = 0 if px.ndim == 2 else 2
    h, w = px.shape[:2]
    raw = b"".join(b"\x00" + px[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + \
            struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                           chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
