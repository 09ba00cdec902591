"""A VAE decoder to ONNX: the decoder stage of a latent model's bundle
(docs/artifact.md, "Bundles"; ``edgediff.latent`` holds the contract).

One graph ``decode(z [B, C, h, w]) -> image [B, 3, h·u, w·u]`` with B, h and w dynamic
(tiled decoding feeds tiles of other sizes), the latent map raw = (z − bias)/scale
folded in as constants, and ``DecoderInfo`` in ``metadata_props``. The source is a
local diffusers folder, ``AutoencoderKL`` or ``AutoencoderTiny`` (TAESD), safetensors
only. Both return images in [−1, 1] nominally, unclamped: AutoencoderKL's decoder
ends in a plain conv, and diffusers' ``DecoderTiny.forward`` maps TAESD's nominal
[0, 1] output to [−1, 1] by ``x·2 − 1`` (after squashing its input with
``tanh(z/3)·3``), with no clamp either.

As the denoiser's export does, it traces, stamps and checks the graph, validates it
with ONNX Runtime against the torch module (``export.decoder_check``) and only then
moves it into place: a failure leaves nothing at the output path. ``int8`` quantizes
the validated float32 graph with ONNX Runtime's QDQ tooling (``export.quantize``),
and measures, without judging, its image error against float32.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgediff.errors import EdgediffError, missing_extra
from edgediff.export.decoder_check import (
    DECODER_TOLERANCE,
    FP16_DECODER_TOLERANCE,
    check_decoder,
    int8_error,
    latents,
)
from edgediff.fileio import atomic_path, sha256_of
from edgediff.latent import DECODER_KINDS, DECODER_PRECISIONS, DecoderInfo, LatentMap

log = logging.getLogger(__name__)
OPSET = 17
CALIBRATION_LATENTS = 8  # standard normal latents at the export size, when none are given


def _model_dir(folder: Path) -> Path:
    if not folder.is_dir():
        raise EdgediffError(f"{folder} is not a folder; --decoder takes a local diffusers VAE "
                            f"folder (AutoencoderKL or AutoencoderTiny, or a pipeline with vae/)")
    for cand in (folder / "vae", folder):
        if (cand / "config.json").is_file():
            return cand
    raise EdgediffError(f"{folder} is not a diffusers folder: no config.json in it or in "
                        f"{folder / 'vae'}")


def read_vae(folder: str | Path) -> tuple[nn.Module, str, dict, str]:
    """(the VAE in eval mode, its class name, its config, the sha256 of its folder's
    files in name order) from a VAE folder or a pipeline folder's ``vae/``."""
    model_dir = _model_dir(Path(folder))
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EdgediffError(f"{model_dir / 'config.json'} is not readable JSON: {e}") from None
    kind = config.get("_class_name") if isinstance(config, dict) else None
    if kind not in DECODER_KINDS:
        raise EdgediffError(f"{model_dir / 'config.json'} describes a {kind!r}, not a VAE; "
                            f"the decoder stage reads {' or '.join(DECODER_KINDS)} folders")
    try:
        import diffusers
    except ImportError:
        raise missing_extra("diffusers", "diffusers") from None
    from edgediff.models.readers.diffusers_unet import load_pretrained

    vae = load_pretrained(getattr(diffusers, kind), model_dir, kind).float().eval()
    return vae, kind, dict(vae.config), sha256_of(model_dir)


def latent_map_for(kind: str, vae_config: dict, denoiser_latent: dict | None,
                   channels: int) -> LatentMap:
    """The map z = raw·scale + bias from the denoiser's latent z to the VAE's input.

    An ``edgediff.latent`` key (EDM2 snapshots) maps z to the raw SD-VAE latent, which
    AutoencoderKL decodes. AutoencoderTiny (TAESD) takes SD-*scaled* latents, raw·0.18215
    for SD's VAE, and nothing in either folder says which factor: refused. Otherwise the
    VAE config's diffusers convention: ``scaling_factor`` and ``shift_factor``, or
    per-channel ``latents_mean``/``latents_std`` where given (raw = z·std/s + mean).
    ``channels``: the denoiser's latent channels, checked against the VAE's."""
    vae_channels = int(vae_config.get("latent_channels", 4))
    if channels != vae_channels:
        raise EdgediffError(f"the denoiser samples {channels}-channel latents but this "
                            f"{kind} decodes {vae_channels}; choose the VAE it was trained with")
    if denoiser_latent is not None:
        if kind != "AutoencoderKL":
            raise EdgediffError(f"this model's latents are {denoiser_latent.get('encoder')}'s "
                                f"(raw SD-VAE latents under its own map), which {kind} does not "
                                f"take (TAESD decodes SD-scaled latents); decode with the "
                                f"AutoencoderKL folder of {denoiser_latent.get('vae_name')}")
        if len(denoiser_latent.get("scale", ())) != vae_channels:
            raise EdgediffError(f"the denoiser's latent map has {len(denoiser_latent['scale'])} "
                                f"channels but this {kind} decodes {vae_channels}")
        return LatentMap.from_latent_key(denoiser_latent)
    s = float(vae_config.get("scaling_factor") or 1.0)
    mean, std = vae_config.get("latents_mean"), vae_config.get("latents_std")
    if mean is None or std is None:
        return LatentMap.diffusers(channels, s, vae_config.get("shift_factor"))
    if len(mean) != channels or len(std) != channels:
        raise EdgediffError(f"the VAE config's latents_mean/latents_std need {channels} values")
    return LatentMap(tuple(s / d for d in std), tuple(-m * s / d for m, d in zip(mean, std,
                                                                                 strict=True)),
                     {"kind": "diffusers", "scaling_factor": s, "latents_mean": list(mean),
                      "latents_std": list(std)})


class LatentDecoder(nn.Module):
    """decode(z) = vae.decode((z − bias)/scale).sample: the denoiser's latent to the
    image, the map in float32 even when the VAE runs in float16."""

    def __init__(self, vae: nn.Module, latent_map: LatentMap):
        super().__init__()
        self.vae = vae
        c = latent_map.channels
        self.register_buffer("scale", torch.tensor(latent_map.scale).reshape(1, c, 1, 1))
        self.register_buffer("bias", torch.tensor(latent_map.bias).reshape(1, c, 1, 1))
        self.dtype = next(vae.parameters()).dtype

    def forward(self, z):
        raw = (z - self.bias) / self.scale
        return self.vae.decode(raw.to(self.dtype), return_dict=False)[0].float()


def decoder_params(vae: nn.Module) -> int:
    """Parameters on the decode path: the decoder, and AutoencoderKL's post_quant_conv."""
    parts = [vae.decoder, getattr(vae, "post_quant_conv", None)]
    return sum(p.numel() for m in parts if m is not None for p in m.parameters())


def decode_flops(decoder: nn.Module, channels: int, latent_size: tuple[int, int]
                 ) -> tuple[float, int]:
    """(FLOPs of one decode of one latent, multiply-add = 2, by torch's FlopCounterMode;
    the upscale per side, read off the image it returns)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        image = decoder(torch.zeros(1, channels, *latent_size))
    upscale = image.shape[-1] // latent_size[1]
    if image.shape[-2:] != (latent_size[0] * upscale, latent_size[1] * upscale):
        raise EdgediffError(f"this VAE turns a {latent_size} latent into a {tuple(image.shape)} "
                            f"image, not a whole multiple of it per side")
    return float(counter.get_total_flops()), upscale


def trace_decoder(decoder: nn.Module, path: str | Path, channels: int,
                  latent_size: tuple[int, int]) -> None:
    """``torch.onnx.export`` (TorchScript tracing) with batch, h and w dynamic."""
    axes = {"z": {0: "batch", 2: "height", 3: "width"},
            "image": {0: "batch", 2: "image_height", 3: "image_width"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(decoder, (torch.zeros(1, channels, *latent_size),), str(path),
                          input_names=["z"], output_names=["image"], opset_version=OPSET,
                          dynamo=False, dynamic_axes=axes)


def stamp_decoder(path: str | Path, info: DecoderInfo, *, full_check: bool = True) -> None:
    """Write ``info.to_props()`` as the file's ``metadata_props`` after onnx.checker
    (``edgediff.export.describe.stamp``, which takes any object with ``to_props``)."""
    from edgediff.export.describe import stamp

    stamp(path, info, full_check=full_check)


def export_decoder(vae_folder: str | Path, out: str | Path, *, latent_size: tuple[int, int],
                   denoiser_latent: dict | None = None, channels: int | None = None,
                   precision: str = "fp32", calibration: np.ndarray | None = None,
                   validate: bool = True) -> DecoderInfo:
    """Export the VAE's decoder, with the latent map folded in, to ``out``; returns what
    the graph's metadata says. ``denoiser_latent``: the denoiser's ``edgediff.latent``
    key, if any; ``channels``: its latent channels (default: the VAE's).

    ``fp16`` runs the VAE in float16 (the map and the graph's input and output stay
    float32), validated within ``FP16_DECODER_TOLERANCE``. ``int8`` quantizes the
    validated float32 graph, calibrated on ``calibration`` latents z [N, C, h, w] (else
    standard normal ones at ``latent_size``), and records its PSNR and max abs error
    against float32 in ``info.calibration`` without judging them (NaN is refused)."""
    if precision not in DECODER_PRECISIONS:
        raise EdgediffError(f"decoder precision {precision!r}: choose one of "
                            f"{', '.join(DECODER_PRECISIONS)}")
    size = tuple(int(v) for v in latent_size)
    if len(size) != 2 or min(size) < 1:
        raise EdgediffError(f"latent_size must be (h, w) ≥ 1, got {latent_size!r}")
    out = Path(out)
    log.info("reading the VAE in %s", vae_folder)
    vae, kind, config, digest = read_vae(vae_folder)
    vae_channels = int(config.get("latent_channels", 4))
    latent_map = latent_map_for(kind, config, denoiser_latent, channels or vae_channels)
    reference = LatentDecoder(vae, latent_map).eval()
    flops, upscale = decode_flops(reference, vae_channels, size)
    info = DecoderInfo(kind, vae_channels, size, int(config.get("out_channels", 3)), upscale,
                       latent_map, (-1.0, 1.0), digest, precision, decoder_params(vae), flops,
                       (denoiser_latent or {}).get("vae_name") or None)
    graph = LatentDecoder(copy.deepcopy(vae).half(), latent_map).eval() \
        if precision == "fp16" else reference
    tol = FP16_DECODER_TOLERANCE if precision == "fp16" else DECODER_TOLERANCE
    with atomic_path(out) as tmp:
        log.info("exporting the %s decoder (%.3g GFLOP per %d×%d latent)", kind, flops / 1e9,
                 *size)
        trace_decoder(graph, tmp, vae_channels, size)
        stamp_decoder(tmp, dataclasses.replace(info, precision="fp32") if precision == "int8"
                      else info)
        if validate:
            check = check_decoder(tmp, reference, vae_channels, size, tol, tol)
            log.info("%s", check)
            if not check.ok:
                raise EdgediffError(f"the decoder export failed validation: {check}")
        if precision == "int8":
            info = quantize_decoder(tmp, info, calibration)
    return info


def quantize_decoder(path: str | Path, info: DecoderInfo, calibration: np.ndarray | None
                     ) -> DecoderInfo:
    """Replace the float32 graph at ``path`` by its QDQ graph (ONNX Runtime target:
    uint8 activations, per-channel int8 weights; ``export.quantize.quantize``) and
    return ``info`` with its calibration record and error against float32."""
    from edgediff.export.quantize import quantize

    path = Path(path)
    z = calibration_latents(info, calibration)
    fp32, qdq = (path.with_name(path.name + suffix) for suffix in (".fp32.onnx", ".int8.onnx"))
    try:
        os.replace(path, fp32)
        log.info("quantizing the decoder to int8, calibrated on %d latents", len(z))
        kept = quantize(fp32, qdq, [{"z": z[i:i + 1]} for i in range(len(z))])
        error = int8_error(qdq, fp32, info.latent_channels, info.latent_size, info.data_range)
        if not np.isfinite(error["max_abs"]):
            raise EdgediffError("the int8 decoder returns NaN/Inf; export it as fp32 or fp16")
        record = {"method": "given" if calibration is not None else "noise",
                  "latents": len(z), "shape": list(z.shape[1:]),
                  "target": "onnxruntime", "float32_nodes": kept, "error_vs_fp32": error}
        log.info("int8 decoder vs float32: PSNR %.1f dB, max abs %.3g", error["psnr"],
                 error["max_abs"])
        info = dataclasses.replace(info, precision="int8", calibration=record)
        stamp_decoder(qdq, info, full_check=False)
        os.replace(qdq, path)
        return info
    finally:
        fp32.unlink(missing_ok=True)
        qdq.unlink(missing_ok=True)


def calibration_latents(info: DecoderInfo, calibration: np.ndarray | None) -> np.ndarray:
    """The given latents z [N, C, h, w] (finite, the decoder's channels), else
    ``CALIBRATION_LATENTS`` standard normal ones at the export size."""
    if calibration is None:
        return latents(info.latent_channels, CALIBRATION_LATENTS, *info.latent_size, seed=0)
    z = np.asarray(calibration, dtype=np.float32)
    if z.ndim != 4 or z.shape[1] != info.latent_channels or len(z) < 1:
        raise EdgediffError(f"calibration latents must be [N, {info.latent_channels}, h, w], "
                            f"got shape {list(z.shape)}")
    if not np.all(np.isfinite(z)):
        raise EdgediffError("calibration latents hold NaN/Inf")
    return z
