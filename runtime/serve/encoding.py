"""Samples as a response body: ``.npy`` and ``.npz`` (NumPy's own formats, float32 in the
model's data range) and PNG for image models (one sample: the image; several: a grid).

The PNG encoder is the format's minimum (PNG spec §§ 5, 11.2: 8-bit grayscale or RGB,
filter type 0, one zlib IDAT): the standard library writes it, so serving needs
neither Pillow nor the lab. Pixels follow ``edgediff.lab.images``: the data range to
0…255, clipped, rounded half to even; a grid is row-major with 1 black pixel between
tiles."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

from edgediff.runtime.serve.jobs import InvalidFieldError

MEDIA = {"png": "image/png", "npy": "application/x-npy", "npz": "application/x-npz"}
FORMATS = tuple(MEDIA)


def is_image(sample_shape: tuple[int, ...]) -> bool:
    """[C, H, W] with 1 (grayscale) or 3 (RGB) channels."""
    return len(sample_shape) == 3 and sample_shape[0] in (1, 3)


def choose_format(sample_shape: tuple[int, ...], asked: str | None, accept: str | None) -> str:
    """The ``format`` field, else the first format the ``Accept`` header names, else
    PNG for image models and .npy for the rest."""
    if asked is None and accept:
        kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
        asked = next((name for kind in kinds for name, media in MEDIA.items()
                      if kind == media), None)
    if asked is None:
        return "png" if is_image(sample_shape) else "npy"
    if asked not in MEDIA:
        raise InvalidFieldError("format", f"unknown format {asked!r}; choose one of "
                                          f"{', '.join(FORMATS)}")
    if asked == "png" and not is_image(sample_shape):
        raise InvalidFieldError("format", f"png needs image samples [C, H, W] with 1 or 3 "
                                          f"channels; this model's are "
                                          f"{list(sample_shape)}: ask for npy or npz")
    return asked


def to_uint8(samples: np.ndarray, data_range: tuple[float, float]) -> np.ndarray:
    lo, hi = data_range
    x = (np.asarray(samples, np.float64) - lo) / (hi - lo)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def tile(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """[N, C, H, W] uint8 -> [H', W', C]: one image as it is, several in a near-square
    grid."""
    n, c, h, w = images.shape
    if n == 1:
        return images[0].transpose(1, 2, 0)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        canvas[y:y + h, x:x + w] = images[k].transpose(1, 2, 0)
    return canvas


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(pixels: np.ndarray) -> bytes:
    """[H, W, 1 | 3] uint8 as PNG bytes."""
    h, w, c = pixels.shape
    color = {1: 0, 3: 2}[c]  # grayscale, truecolour
    rows = np.concatenate([np.zeros((h, 1), np.uint8), pixels.reshape(h, w * c)], axis=1)
    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b""))


def encode(samples: np.ndarray, fmt: str, data_range: tuple[float, float],
           labels: np.ndarray | None = None) -> tuple[bytes, str]:
    """(body, media type). npz holds ``samples`` (and ``labels`` when given)."""
    if fmt == "png":
        return png(tile(to_uint8(samples, data_range))), MEDIA[fmt]
    buffer = io.BytesIO()
    if fmt == "npy":
        np.save(buffer, samples, allow_pickle=False)
    else:
        arrays = {"samples": samples} if labels is None else {"samples": samples,
                                                               "labels": labels}
        np.savez(buffer, **arrays)
    return buffer.getvalue(), MEDIA[fmt]
