"""A latent model's bundle for tests: a tiny random EDM2 snapshot with a VAE encoder
record (so its samples are latents [4, 8, 8] with EDM2's latent map) and a tiny
random diffusers AutoencoderKL (upscale 2: images [3, 16, 16]), exported together."""

from __future__ import annotations

from pathlib import Path

EDM2 = {"img_resolution": 8, "img_channels": 4, "label_dim": 0, "model_channels": 16,
        "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4]}
RAW_MEAN, RAW_STD = (1.0, 2.0, 3.0, 4.0), (2.0, 4.0, 5.0, 8.0)


def latent_snapshot(folder: Path) -> Path:
    from edgediff.models.edm.edm2 import EDM2Network
    from edgediff.models.snapshot import writer

    net = writer.randomize(EDM2Network(**EDM2))
    enc = writer.vae_encoder_record(raw_mean=RAW_MEAN, raw_std=RAW_STD)
    return writer.write_snapshot(folder / "latent.pkl", writer.edm2_record(net, EDM2),
                                 encoder=enc)


def latent_bundle(folder: Path) -> dict[str, Path]:
    """{"snapshot", "vae", "bundle"} under ``folder``."""
    from edgediff.export.onnx import ExportOptions
    from edgediff.export.with_decoder import export_bundle
    from tests.export.vae_folders import write_kl

    snap = latent_snapshot(folder)
    write_kl(folder / "vae")
    # validation is the export's own tests' business (tests/export); here it only costs
    export_bundle(str(snap), folder / "vae", folder / "bundle", ExportOptions(validate=False))
    return {"snapshot": snap, "vae": folder / "vae", "bundle": folder / "bundle"}
