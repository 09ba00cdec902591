"""Sample images as PNG through Pillow: values to 8-bit, samples to a grid.

``to_uint8`` and ``grid`` are array arithmetic; Pillow encodes (and scales by
pixel repetition, ``Image.NEAREST``, so an 8×8 digit stays crisp).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray, data_range=(-1.0, 1.0)) -> np.ndarray:
    """Values in ``data_range`` to 0…255, clipped, rounded half to even."""
    lo, hi = data_range
    x = (np.asarray(images, dtype=np.float64) - lo) / (hi - lo)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def grid(images: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """[N, C, H, W] uint8 -> one [rows·(H+pad)+pad, cols·(W+pad)+pad, C] canvas, row by
    row, black between tiles."""
    n, c, h, w = images.shape
    cols = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        canvas[y:y + h, x:x + w] = images[k].transpose(1, 2, 0)
    return canvas


def write_png(path: str | Path, pixels: np.ndarray, scale: int = 1) -> None:
    """[H, W] or [H, W, 1|3] uint8 as a grayscale or RGB PNG, each pixel ``scale``×``scale``.
    The format is given, not guessed from the name, so a temp path works."""
    px = np.asarray(pixels, dtype=np.uint8)
    if px.ndim == 3 and px.shape[2] == 1:
        px = px[..., 0]
    image = Image.fromarray(px)  # 2-D uint8: L; [H, W, 3] uint8: RGB
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(path, format="PNG", optimize=True)
