"""Options of ``sample`` and ``bench`` for bundles (latent model + decoder): how the
decoder stage runs, apart from the denoiser, and whether it decodes in tiles."""

from __future__ import annotations

import click

from edgediff.errors import EdgediffError


def decoder_options(f):
    """--decoder-backend, --decoder-precision, --decoder-provider, --decoder-threads,
    --tile and --tile-overlap."""
    opts = [
        click.option("--decoder-backend", type=click.Choice(("onnxruntime", "openvino")),
                     default=None,
                     help="Bundles: what runs the decoder stage, apart from the denoiser's "
                          "--backend [default: ONNX Runtime]."),
        click.option("--decoder-precision", type=click.Choice(("f32", "bf16", "f16")),
                     default=None,
                     help="Bundles, with --decoder-backend openvino: the decoder's inference "
                          "precision (bf16 needs AVX512_BF16 or AMX on a CPU) [default: f32]."),
        click.option("--decoder-provider", type=click.Choice(("cpu", "cuda")), default=None,
                     help="Bundles: ONNX Runtime's provider for the decoder stage, apart from "
                          "the denoiser's --provider [default: the same; cuda for tensorrt]."),
        click.option("--decoder-threads", type=click.IntRange(1), default=None,
                     help="Bundles: CPU threads for the decoder stage [default: --threads]."),
        click.option("--tile", type=click.IntRange(1), default=None, metavar="T",
                     help="Bundles: decode in tiles of T×T latent pixels, blended across "
                          "their overlaps, so the decoder's memory is one tile's, not the "
                          "whole image's. Not bit-identical to a whole decode: a VAE's "
                          "GroupNorm and attention see only the tile (docs/latent.md)."),
        click.option("--tile-overlap", type=click.IntRange(0), default=None, metavar="O",
                     help="With --tile: latent pixels neighbouring tiles share (the width "
                          "of the blend); less than T [default: T/4, rounded down]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def tiling(tile: int | None, overlap: int | None):
    """The ``Tiling`` the flags ask for, or None."""
    if tile is None:
        if overlap is not None:
            raise EdgediffError("--tile-overlap needs --tile")
        return None
    overlap = tile // 4 if overlap is None else overlap
    from edgediff.runtime.tiling import Tiling

    if overlap >= tile:
        raise EdgediffError(f"--tile-overlap {overlap} must be less than --tile {tile}")
    return Tiling(tile, overlap)


def stage_options(provider: str | None, threads: int | None, denoiser_provider: str,
                  denoiser_threads: int | None, engine: str | None = None,
                  precision: str | None = None):
    """The decoder's ``BackendOptions`` when a flag sets them, else None (the default:
    the denoiser's provider and threads, ``runtime.pipeline.default_decoder_options``).
    ``engine``/``precision``: --decoder-backend and --decoder-precision."""
    if provider is None and threads is None and engine is None and precision is None:
        return None
    from edgediff.runtime import BackendOptions

    if precision is not None and engine != "openvino":
        raise EdgediffError("--decoder-precision is OpenVINO's; add --decoder-backend openvino")
    if provider is None:
        provider = "cuda" if denoiser_provider == "tensorrt" else denoiser_provider
    if engine == "openvino":
        provider = "cpu"  # OpenVINO chooses its device, not an ONNX Runtime provider
    return BackendOptions(provider=provider, threads=threads or denoiser_threads,
                          engine=engine or "onnxruntime", precision=precision)
