"""Optional FID through torch-fidelity's Inception network (docs/design.md, "Measuring").

edgediff ships no Inception weights and never downloads them at run time, so
FID is computed only where torch-fidelity and its cached weights already are;
anything missing turns into a one-line reason to skip, never an error. Images
are written as RGB PNGs (gray replicated, upscaled to at least 32×32 by pixel
repetition; torch-fidelity resizes to 299×299 itself) and compared with the
held-out split of the artifact's dataset.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgediff.lab.images import to_uint8, write_png


def _write_images(folder: Path, images: np.ndarray, data_range) -> None:
    px = to_uint8(images, data_range)                    # [N, C, H, W]
    if px.shape[1] == 1:
        px = np.repeat(px, 3, axis=1)
    scale = max(1, -(-32 // px.shape[2]))
    px = px.repeat(scale, 2).repeat(scale, 3)
    for k, img in enumerate(px):
        write_png(folder / f"{k:05d}.png", img.transpose(1, 2, 0))


def fid(samples: np.ndarray, info) -> tuple[float | None, str]:
    """(FID, how it was computed) or (None, why it was skipped)."""
    ref = info.reference or {}
    if ref.get("kind") != "dataset" or len(info.sample_shape) != 3:
        return None, "FID skipped: it needs an image model trained on a dataset edgediff knows"
    try:
        import torch_fidelity
    except Exception as e:  # ImportError, or a broken torchvision raising at import
        return None, (f"FID skipped: torch-fidelity is not usable here ({type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}); pip install torch-fidelity "
                      f"and cache its Inception weights to enable it")
    try:
        from edgediff.datasets import load_dataset

        real = load_dataset(ref["name"], "test")
    except Exception as e:
        return None, f"FID skipped: the held-out {ref['name']} images are not available ({e})"
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "samples", Path(tmp) / "real"
        a.mkdir()
        b.mkdir()
        _write_images(a, samples, info.data_range)
        _write_images(b, real, info.data_range)
        try:
            metrics = torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), cuda=False,
                                                       fid=True, verbose=False)
        except Exception as e:  # no cached weights and no network, typically
            return None, (f"FID skipped: torch-fidelity failed ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})")
    return float(metrics["frechet_inception_distance"]), (
        f"FID (torch-fidelity Inception) vs {len(real)} held-out {ref['name']} images")
