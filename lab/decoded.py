"""Bundles in the lab: ``edgediff sample`` and ``edgediff bench`` for a latent model,
whose samples are decoded into images (``edgediff.runtime.pipeline``).

``draw_images`` draws as ``Draw.run`` does, with the bundle's denoiser, then decodes:
samples.npz holds the images (in the decoder's data range) as ``samples`` and
latents.npz the latents; samples.png is the grid and images/NNNNNN.png each image.
``time_stages`` times the two stages of each run apart, per image, so a user sees
where the time goes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.fileio import atomic_path


@dataclass(frozen=True)
class ImageInfo:
    """What ``write_samples`` reads of an artifact, for decoded images."""

    sample_shape: tuple[int, ...]
    data_range: tuple[float, float]
    reference: dict | None = None


def draw_images(pipeline, draw, folder: Path, artifact: Path, *, tile=None,
                figures: bool = True, callback: Callable[[int], None] | None = None,
                on_decoded: Callable[[int, int], None] | None = None) -> list[Path]:
    """Sample ``draw`` (``edgediff.lab.draw.Draw``, planned on ``pipeline.denoiser``),
    decode (over tiles with ``tile``), write the files into ``folder``."""
    from edgediff.lab.images import to_uint8, write_png
    from edgediff.lab.outputs import write_samples
    from edgediff.runtime import Condition, RunOptions

    s = draw.settings
    z = pipeline.sample_latents(draw.num, seed=draw.seed, solver=s.solver, steps=s.steps,
                                options=s.options,
                                condition=Condition(draw.labels, draw.guidance, draw.guide,
                                                    draw.tensors),
                                run=RunOptions(batch=draw.batch, callback=callback))
    images = pipeline.decode(z, batch=draw.batch, tile=tile, progress=on_decoded)
    di = pipeline.decoder_info
    meta = {"artifact": str(artifact), "solver": s.solver, "steps": s.steps,
            "options": s.options, "seed": draw.seed, "num": draw.num,
            "guidance": draw.guidance, "decoder": di.kind, "decoder_precision": di.precision,
            "tile": None if tile is None else asdict(tile)}
    info = ImageInfo(images.shape[1:], di.data_range)
    written = write_samples(folder, images, info, meta, draw.labels, draw.per_class,
                            figures=figures)
    latents = folder / "latents.npz"
    with atomic_path(latents) as tmp, open(tmp, "wb") as f:
        np.savez(f, latents=z, meta=json.dumps(meta))
    written.append(latents)
    if figures:
        (folder / "images").mkdir()
        for k, image in enumerate(to_uint8(images, di.data_range)):
            path = folder / "images" / f"{k:06d}.png"
            write_png(path, image.transpose(1, 2, 0))
            written.append(path)
    return written


@dataclass(frozen=True)
class StageRow:
    """One run's time per image in each stage: medians and p90s over batches (the
    first batch of each run is a warm-up, not counted)."""

    label: str
    solver: str
    steps: int
    nfe: int
    denoise_ms: float
    denoise_p90: float
    call_ms: float  # denoise_ms / nfe: one denoiser call, per image
    decode_ms: float
    decode_p90: float

    @property
    def decode_share(self) -> float:
        return self.decode_ms / (self.denoise_ms + self.decode_ms)


def time_stages(pipeline, runs: list[tuple[str, str, int, dict[str, Any]]], num: int,
                batch: int, seed: int = 0, tile=None,
                progress: Callable[[str], None] | None = None) -> list[StageRow]:
    """For each run (label, solver, steps, options): ``num`` samples of ``seed``,
    ``batch`` at a time; each batch's sampling and decode timed apart."""
    import time

    from edgediff.catalogue import nfe
    from edgediff.runtime import RunOptions

    rows = []
    for label, solver, steps, options in runs:
        if progress is not None:
            progress(label)
        den, dec = [], []
        starts = [0, *range(0, num, batch)]  # a warm-up batch first
        for k, start in enumerate(starts):
            n = min(batch, num - start)
            t0 = time.perf_counter()
            z = pipeline.sample_latents(n, seed=seed, solver=solver, steps=steps,
                                        options=options, run=RunOptions(first=start, batch=n))
            t1 = time.perf_counter()
            pipeline.decode(z, batch=n, tile=tile)
            t2 = time.perf_counter()
            if k:
                den.append(1e3 * (t1 - t0) / n)
                dec.append(1e3 * (t2 - t1) / n)
        calls = nfe(solver, steps)
        d_med, c_med = float(np.median(den)), float(np.median(dec))
        rows.append(StageRow(label, solver, steps, calls, d_med, float(np.percentile(den, 90)),
                             d_med / calls, c_med, float(np.percentile(dec, 90))))
    return rows
