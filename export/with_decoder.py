"""A latent model and its VAE decoder to one bundle folder (``edgediff.bundle``).

The denoiser is exported as any artifact (``export.onnx``), then the decoder for its
latents (``export.decoder``): at the denoiser's latent size, with the denoiser's own
latent map when it records one (EDM2's ``edgediff.latent``), else the VAE config's.
An int8 decoder is calibrated on latents the just-exported denoiser samples with
its default solver, so its activation ranges are those of real samples, not noise.
Both graphs are built in a folder beside ``out`` and moved into place together
(``edgediff.bundle.write_bundle``): a failed or interrupted export leaves nothing.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from edgediff.artifact import ArtifactInfo
from edgediff.bundle import Bundle, check_stages, write_bundle
from edgediff.errors import EdgediffError
from edgediff.export.onnx import ExportOptions, export_source
from edgediff.latent import DECODER_PRECISIONS, DecoderInfo
from edgediff.models.checkpoint import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderOptions:
    """How to export the decoder stage: its ``precision`` (fp32, fp16, int8), and for
    int8 the number of denoiser samples (``calibration``) whose latents calibrate it."""

    precision: str = "fp32"
    calibration: int = 4

    def __post_init__(self):
        if self.precision not in DECODER_PRECISIONS:
            raise EdgediffError(f"decoder precision {self.precision!r}: choose one of "
                                f"{', '.join(DECODER_PRECISIONS)}")
        if isinstance(self.calibration, bool) or not isinstance(self.calibration, int) \
                or self.calibration < 1:
            raise EdgediffError(f"--calibration must be an integer ≥ 1, got "
                                f"{self.calibration!r}")


@dataclass
class BundleExport:
    """What ``export_bundle`` made: the denoiser's model and validation, the decoder's
    metadata, the bundle as written."""

    model: LoadedModel
    validation: object
    decoder: DecoderInfo
    bundle: Bundle


def denoiser_cost(model: LoadedModel, shape: tuple[int, ...]) -> tuple[int, float]:
    """(parameters, FLOPs of one call on one sample, multiply-add = 2, by torch's
    FlopCounterMode; 0 when the module cannot be called without conditioning)."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.denoiser.parameters())
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            model.denoiser.float().eval()(torch.zeros(1, *shape), torch.ones(1))
    except Exception as e:  # a tensor-conditioned module needs its inputs: FLOPs unknown
        log.info("FLOPs of the denoiser not counted: %s", e)
        return params, 0.0
    return params, float(counter.get_total_flops())


def calibration_latents(path: Path, num: int) -> np.ndarray:
    """``num`` latents the denoiser at ``path`` samples with its default solver."""
    from edgediff import runtime

    return runtime.sample(runtime.load(path), num, seed=0, run=runtime.RunOptions(batch=num))


def export_bundle(source: str, decoder_folder: str | Path, out: str | Path,
                  options: ExportOptions = ExportOptions(),
                  decoder: DecoderOptions = DecoderOptions(), *, allow_pickle: bool = False,
                  null_label: int | None = None,
                  progress: Callable[[str], None] | None = None) -> BundleExport:
    """Export ``source`` (anything ``edgediff export`` takes, sampling latents) and the
    VAE in ``decoder_folder`` into the bundle folder ``out``."""
    out = Path(out)
    say = progress or (lambda line: log.info("%s", line))
    if out.exists() and not options.force:
        raise EdgediffError(f"{out} exists; pass --force to overwrite it")
    if out.suffix == ".onnx":
        raise EdgediffError(f"with --decoder, -o names a bundle folder, not a file: "
                            f"-o {out.with_suffix('')}/")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.build-", dir=out.parent) as tmp:
        den_path, dec_path = Path(tmp) / "denoiser.onnx", Path(tmp) / "decoder.onnx"
        say("exporting the denoiser")
        model, validation = export_source(source, den_path, replace(options, force=True),
                                          allow_pickle=allow_pickle, null_label=null_label)
        from edgediff.runtime.backends.ort import read_onnx_metadata

        info = ArtifactInfo.from_props(read_onnx_metadata(den_path), where=str(den_path))
        shape = tuple(info.sample_shape)
        if len(shape) != 3:
            raise EdgediffError(f"{source} samples shape {list(shape)}, not latents [C, h, w]; "
                                f"a decoder stage is for latent models")
        z = None
        if decoder.precision == "int8":
            say(f"sampling {decoder.calibration} latents to calibrate the int8 decoder")
            z = calibration_latents(den_path, decoder.calibration)
        from edgediff.export.decoder import export_decoder

        say(f"exporting the decoder ({decoder.precision})")
        dinfo = export_decoder(decoder_folder, dec_path, latent_size=shape[1:],
                               denoiser_latent=info.latent, channels=shape[0],
                               precision=decoder.precision, calibration=z,
                               validate=options.validate)
        check_stages(shape, info.latent, dinfo, str(out))
        stats = {"denoiser": denoiser_cost(model, shape), "decoder": (dinfo.params, dinfo.flops)}
        bundle = write_bundle(out, {"denoiser": den_path, "decoder": dec_path}, stats,
                              force=options.force)
    return BundleExport(model, validation, dinfo, bundle)
