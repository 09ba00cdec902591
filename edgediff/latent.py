"""The decoder stage's contract (docs/artifact.md, "Bundles"): how a latent model's
samples become images, as text a torch-free runtime reads.

A latent denoiser samples z in *its* latent space. A VAE decoder wants its own
input, which differs by a per-channel affine map; the two conventions in the field:

- diffusers (``scaling_factor`` s, ``shift_factor`` f of the VAE's config): the
  denoiser was trained on z = (raw − f)·s, so raw = z/s + f;
- EDM2 (``StabilityVAEEncoder``'s raw mean μ_r, raw std σ_r, final mean μ_f, final
  std σ_f per channel): z = (raw − μ_r)·σ_f/σ_r + μ_f.

Both are z = raw·scale + bias per channel, so one ``LatentMap`` holds either, with
the numbers it came from (``source``) kept for the reader. The decoder graph folds
raw = (z − bias)/scale in: it takes the denoiser's z and returns the image.

NumPy-free even: only the standard library, so ``edgediff info`` and the runtime
read it without torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from edgediff.metadata import PREFIX, MetadataError, data_range, sha

DECODER_KINDS = ("AutoencoderKL", "AutoencoderTiny")
DECODER_PRECISIONS = ("fp32", "fp16", "int8")
STAGE_KEY = "stage"  # edgediff.stage = "decoder" on a decoder graph; absent on a denoiser
DECODER_KEY = "decoder"  # edgediff.decoder = DecoderInfo.to_json()
DECODER_FORMAT_VERSION = 1


def _finite_list(key: str, values: Any, channels: int, *, nonzero: bool = False) -> tuple:
    ok = (isinstance(values, list | tuple) and len(values) == channels
          and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                  and (v != 0 or not nonzero) for v in values))
    if not ok:
        what = "non-zero " if nonzero else ""
        raise MetadataError(key, values, f"{channels} finite {what}numbers, one per latent "
                                         f"channel")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class LatentMap:
    """z = raw·scale + bias per channel: z the denoiser's latent, raw the VAE's input."""

    scale: tuple[float, ...]
    bias: tuple[float, ...]
    source: dict[str, Any] = field(default_factory=dict)  # the numbers it was made from

    def __post_init__(self):
        n = len(self.scale)
        _finite_list("decoder.latent_map.scale", list(self.scale), n, nonzero=True)
        _finite_list("decoder.latent_map.bias", list(self.bias), n)
        if n < 1:
            raise MetadataError("decoder.latent_map", [], "at least one channel")

    @property
    def channels(self) -> int:
        return len(self.scale)

    @classmethod
    def identity(cls, channels: int) -> LatentMap:
        return cls((1.0,) * channels, (0.0,) * channels, {"kind": "identity"})

    @classmethod
    def diffusers(cls, channels: int, scaling_factor: float,
                  shift_factor: float | None = None) -> LatentMap:
        """A diffusers VAE's config: z = (raw − shift_factor)·scaling_factor."""
        s, f = float(scaling_factor), float(shift_factor or 0.0)
        return cls((s,) * channels, (0.0 - f * s,) * channels,
                   {"kind": "diffusers", "scaling_factor": s, "shift_factor": f})

    @classmethod
    def edm2(cls, raw_mean, raw_std, final_mean, final_std) -> LatentMap:
        """EDM2's StabilityVAEEncoder: z = (raw − raw_mean)·final_std/raw_std + final_mean,
        each a number or one per channel."""
        n = max(len(v) if isinstance(v, list | tuple) else 1
                for v in (raw_mean, raw_std, final_mean, final_std))

        def per_channel(v):
            return [float(x) for x in v] if isinstance(v, list | tuple) else [float(v)] * n
        rm, rs, fm, fs = map(per_channel, (raw_mean, raw_std, final_mean, final_std))
        scale = tuple(f / r for f, r in zip(fs, rs, strict=True))
        bias = tuple(m - r * s for m, r, s in zip(fm, rm, scale, strict=True))
        return cls(scale, bias, {"kind": "edm2", "raw_mean": rm, "raw_std": rs,
                                 "final_mean": fm, "final_std": fs})

    @classmethod
    def from_latent_key(cls, latent: dict[str, Any]) -> LatentMap:
        """The denoiser's ``edgediff.latent`` key (EDM2 snapshots): scale and bias."""
        return cls(tuple(latent["scale"]), tuple(latent["bias"]),
                   {"kind": "edgediff.latent", "encoder": latent.get("encoder")})

    def to_dict(self) -> dict[str, Any]:
        return {"scale": list(self.scale), "bias": list(self.bias), "source": self.source}

    @classmethod
    def from_dict(cls, d: Any, channels: int) -> LatentMap:
        if not isinstance(d, dict) or set(d) - {"scale", "bias", "source"}:
            raise MetadataError("decoder.latent_map", d,
                                'a JSON object {"scale": [...], "bias": [...], "source": {...}}')
        source = d.get("source", {})
        if not isinstance(source, dict):
            raise MetadataError("decoder.latent_map.source", source, "a JSON object")
        return cls(_finite_list("decoder.latent_map.scale", d.get("scale"), channels, nonzero=True),
                   _finite_list("decoder.latent_map.bias", d.get("bias"), channels), source)


def _positive_int(key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise MetadataError(key, v, "a positive integer")
    return v


@dataclass(frozen=True)
class DecoderInfo:
    """What a decoder graph says about itself (``edgediff.decoder``): its graph is
    ``decode(z [B, C, h, w]) -> image [B, image_channels, h·upscale, w·upscale]``, with
    ``latent_map`` folded in and the image in ``data_range``; h and w are dynamic
    (tiled decoding feeds tiles), ``latent_size`` is the size it was exported and
    validated at."""

    kind: str  # DECODER_KINDS
    latent_channels: int
    latent_size: tuple[int, int]  # (h, w) exported and validated at
    image_channels: int
    upscale: int  # image pixels per latent pixel, per side
    latent_map: LatentMap
    data_range: tuple[float, float]
    source_sha256: str
    precision: str = "fp32"
    params: int = 0  # parameters of the decoder network
    flops: float = 0.0  # FLOPs of one decode of one latent at latent_size (multiply-add = 2)
    vae_name: str | None = None  # a name the user knows it by, when known
    calibration: dict[str, Any] | None = None  # int8: how calibrated, its error vs fp32

    def __post_init__(self):
        if self.kind not in DECODER_KINDS:
            raise MetadataError("decoder.kind", self.kind, f"one of {', '.join(DECODER_KINDS)}")
        _positive_int("decoder.latent_channels", self.latent_channels)
        _positive_int("decoder.image_channels", self.image_channels)
        _positive_int("decoder.upscale", self.upscale)
        if len(self.latent_size) != 2:
            raise MetadataError("decoder.latent_size", list(self.latent_size), "[h, w]")
        for v in self.latent_size:
            _positive_int("decoder.latent_size", v)
        if self.latent_map.channels != self.latent_channels:
            raise MetadataError("decoder.latent_map", self.latent_map.to_dict(),
                                f"one scale and bias per latent channel ({self.latent_channels})")
        data_range(list(self.data_range))
        sha(self.source_sha256)
        if self.precision not in DECODER_PRECISIONS:
            raise MetadataError("decoder.precision", self.precision,
                                f"one of {', '.join(DECODER_PRECISIONS)}")
        if self.calibration is not None and not isinstance(self.calibration, dict):
            raise MetadataError("decoder.calibration", self.calibration, "a JSON object")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, *self.latent_size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w = self.latent_size
        return (self.image_channels, h * self.upscale, w * self.upscale)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": DECODER_FORMAT_VERSION, "kind": self.kind,
                "latent_channels": self.latent_channels, "latent_size": list(self.latent_size),
                "image_channels": self.image_channels, "upscale": self.upscale,
                "latent_map": self.latent_map.to_dict(), "data_range": list(self.data_range),
                "source_sha256": self.source_sha256, "precision": self.precision,
                "params": self.params, "flops": self.flops, "vae_name": self.vae_name,
                "calibration": self.calibration}

    def to_props(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` of a decoder graph."""
        return {PREFIX + STAGE_KEY: "decoder", PREFIX + DECODER_KEY: json.dumps(self.to_dict())}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> DecoderInfo:
        """Parse and check a decoder graph's metadata, or one ``MetadataError`` line."""
        stage = props.get(PREFIX + STAGE_KEY)
        if stage != "decoder" or PREFIX + DECODER_KEY not in props:
            raise MetadataError(STAGE_KEY, stage, '"decoder" with an edgediff.decoder key '
                                '(a decoder graph written by edgediff export --decoder)')
        try:
            d = json.loads(props[PREFIX + DECODER_KEY])
        except json.JSONDecodeError:
            d = props[PREFIX + DECODER_KEY]
        if not isinstance(d, dict):
            raise MetadataError(DECODER_KEY, d, "a JSON object")
        v = d.get("format_version")
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise MetadataError("decoder.format_version", v, "a positive integer")
        if v > DECODER_FORMAT_VERSION:
            raise MetadataError("decoder.format_version", v,
                                f"at most {DECODER_FORMAT_VERSION}; upgrade edgediff")
        known = {"format_version", "kind", "latent_channels", "latent_size", "image_channels",
                 "upscale", "latent_map", "data_range", "source_sha256", "precision", "params",
                 "flops", "vae_name", "calibration"}
        if set(d) - known:
            raise MetadataError(DECODER_KEY, sorted(set(d) - known), "only known keys")
        channels = _positive_int("decoder.latent_channels", d.get("latent_channels"))
        size = d.get("latent_size")
        if not isinstance(size, list) or len(size) != 2:
            raise MetadataError("decoder.latent_size", size, "[h, w]")
        return cls(kind=d.get("kind"), latent_channels=channels, latent_size=tuple(size),
                   image_channels=d.get("image_channels"), upscale=d.get("upscale"),
                   latent_map=LatentMap.from_dict(d.get("latent_map"), channels),
                   data_range=tuple(data_range(d.get("data_range"))),
                   source_sha256=d.get("source_sha256"), precision=d.get("precision", "fp32"),
                   params=int(d.get("params", 0)), flops=float(d.get("flops", 0.0)),
                   vae_name=d.get("vae_name"), calibration=d.get("calibration"))
