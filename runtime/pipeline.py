"""A latent model end to end: the denoiser samples latents, the decoder makes images.

    from edgediff import runtime
    P = runtime.load("bundle/")                       # a folder with bundle.json
    images = P.sample(4, seed=0)                      # [4, 3, H, W] in the decoder's range
    z = P.sample_latents(4, seed=0)                   # exactly runtime.sample(P.denoiser, …)
    images = P.decode(z, tile=runtime.Tiling(32, overlap=8))

Each stage is opened with its own ``BackendOptions`` (``runtime.load(bundle, options,
decoder_options=...)``), so an int8 or GPU decoder can sit beside an fp32 CPU
denoiser; which precision each stage runs in is fixed by its graph (export
``--decoder-precision``). Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.bundle import Bundle, check_stages, is_bundle, read_bundle
from edgediff.errors import EdgediffError
from edgediff.latent import DecoderInfo
from edgediff.runtime.backends import BackendOptions, open_artifact
from edgediff.runtime.decoder import open_decoder, read_props
from edgediff.runtime.sampling import sample
from edgediff.runtime.tiling import Tiling, decode_tiled

Progress = Callable[[int, int], None] | None


class Pipeline:
    """A bundle opened: ``denoiser`` (a ``Denoiser``), ``decoder`` (``decode(z)``),
    ``info`` (the denoiser's ``ArtifactInfo``: its samples are latents),
    ``decoder_info`` (``DecoderInfo``) and ``bundle`` (the index as read)."""

    def __init__(self, bundle: Bundle, denoiser, decoder):
        self.bundle, self.denoiser, self.decoder = bundle, denoiser, decoder
        self.path = bundle.folder

    @property
    def info(self):
        return self.denoiser.info

    @property
    def decoder_info(self) -> DecoderInfo:
        return self.decoder.info

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """One decoded sample's shape [C, H, W] at the denoiser's latent size."""
        _, h, w = self.info.sample_shape
        up = self.decoder_info.upscale
        return (self.decoder_info.image_channels, h * up, w * up)

    def sample_latents(self, num: int, **kwargs: Any) -> np.ndarray:
        """``runtime.sample(self.denoiser, num, **kwargs)``: latents [num, C, h, w]."""
        return sample(self.denoiser, num, **kwargs)

    def decode(self, z: np.ndarray, *, batch: int = 16, tile: Tiling | None = None,
               progress: Progress = None) -> np.ndarray:
        """Images of latents ``z`` [n, C, h, w]: float32 [n, 3, h·upscale, w·upscale] in
        ``decoder_info.data_range``, ``batch`` latents per decoder call; with ``tile``
        (``Tiling``), each call over overlapping tiles (``edgediff.runtime.tiling``).
        ``progress(done, n)`` after each batch."""
        z = np.asarray(z, dtype=np.float32)
        c = self.decoder_info.latent_channels
        if z.ndim != 4 or z.shape[1] != c:
            raise EdgediffError(f"decode takes latents [n, {c}, h, w], got {list(z.shape)}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise EdgediffError(f"batch must be an integer ≥ 1, got {batch!r}")
        if tile is not None and not isinstance(tile, Tiling):
            raise EdgediffError(f"tile takes a runtime.Tiling or None, got {tile!r}")
        up, n = self.decoder_info.upscale, len(z)
        out = None
        for start in range(0, n, batch):
            part = z[start:start + batch]
            image = (self.decoder(part) if tile is None else
                     decode_tiled(self.decoder, part, up, tile))
            if out is None:
                out = np.empty((n, *image.shape[1:]), np.float32)
            out[start:start + len(part)] = image
            if progress is not None:
                progress(start + len(part), n)
        return out

    def sample(self, num: int, *, seed: int = 0, solver: str | None = None,
               steps: int | None = None, options: dict[str, Any] | None = None,
               condition=None, run=None, tile: Tiling | None = None) -> np.ndarray:
        """Images of samples ``first … first+num−1`` of ``seed``: ``decode`` of
        ``sample_latents`` with the same arguments (``runtime.sample``), float32
        [num, 3, H, W] in the decoder's data range, decoded ``run.batch`` at a time."""
        z = self.sample_latents(num, seed=seed, solver=solver, steps=steps, options=options,
                                condition=condition, run=run)
        return self.decode(z, batch=16 if run is None else run.batch, tile=tile)


def default_decoder_options(options: BackendOptions) -> BackendOptions:
    """The decoder's options when none are given: the denoiser's ONNX Runtime provider
    (cuda for tensorrt, whose engines want fixed shapes; cpu when the denoiser runs on
    OpenVINO), threads and GPU; never its ``metadata``, which describes denoisers."""
    provider = options.provider if getattr(options, "engine", "onnxruntime") == "onnxruntime" \
        else "cpu"
    return BackendOptions(provider="cuda" if provider == "tensorrt" else provider,
                          threads=options.threads, device_id=options.device_id)


def load_pipeline(folder: str | Path, options: BackendOptions | None = None,
                  decoder_options: BackendOptions | None = None, *,
                  verify: bool = True) -> Pipeline:
    """Open the bundle at ``folder``: the denoiser with ``options`` (as ``runtime.load``
    opens any artifact), the decoder with ``decoder_options`` (default: ``options``'
    ONNX Runtime provider and threads: ``default_decoder_options``). ``verify`` checks
    the files' sha256s."""
    options = BackendOptions() if options is None else options
    bundle = read_bundle(folder, verify=verify)
    if decoder_options is None:
        decoder_options = default_decoder_options(options)
    denoiser = open_artifact(bundle.path("denoiser"), options)
    decoder = open_decoder(bundle.path("decoder"), decoder_options)
    check_stages(denoiser.info.sample_shape, denoiser.info.latent, decoder.info,
                 str(bundle.folder))
    return Pipeline(bundle, denoiser, decoder)


def load(path: str | Path, options: BackendOptions | None = None, *,
         decoder_options: BackendOptions | None = None, **shorthands: Any):
    """``runtime.load``: an artifact opened as ``edgediff.runtime.sampling.load`` opens
    it (``options``, and ``provider=``, ``threads=``, … as shorthands for its fields),
    or, for a bundle folder (one with bundle.json), a ``Pipeline`` whose decoder
    opens with ``decoder_options`` (default: ``default_decoder_options``)."""
    from edgediff.runtime import sampling

    if not Path(path).is_dir():
        try:
            return sampling.load(path, options, **shorthands)
        except EdgediffError:
            _refuse_a_decoder(Path(path))
            raise
    if not is_bundle(path):
        raise EdgediffError(f"{path} is a folder without bundle.json; pass an exported .onnx "
                            f"file, a .plan, or a bundle folder (edgediff export MODEL "
                            f"--decoder VAE_FOLDER -o BUNDLE/)")
    given = {k: v for k, v in shorthands.items() if v is not None}
    options = BackendOptions() if options is None else options
    return load_pipeline(path, replace(options, **given) if given else options, decoder_options)


def _refuse_a_decoder(path: Path) -> None:
    """A decoder graph opened as an artifact: say to open its bundle instead."""
    from edgediff.latent import STAGE_KEY
    from edgediff.metadata import PREFIX

    if path.suffix != ".onnx" or not path.is_file():
        return
    try:
        stage = read_props(path).get(PREFIX + STAGE_KEY)
    except EdgediffError:
        return
    if stage == "decoder":
        raise EdgediffError(f"{path} is a bundle's decoder stage (edgediff.stage = decoder), "
                            f"not a denoiser; open the bundle folder that holds it: "
                            f"runtime.load('{path.parent}'), edgediff sample {path.parent}")
