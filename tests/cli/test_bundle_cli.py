"""Bundles through the CLI: an EDM2 latent snapshot and a tiny AutoencoderKL exported
into a bundle, described by info, sampled into PNGs, benchmarked by stage; and its
images are torch's ``vae.decode`` of the very latents the runtime sampled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgediff.cli import main
from tests.runtime.bundles import RAW_MEAN, RAW_STD, latent_snapshot


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from tests.export.vae_folders import write_kl

    folder = tmp_path_factory.mktemp("bundle-cli")
    snap = latent_snapshot(folder)
    vae = write_kl(folder / "vae")
    out = folder / "bundle"
    r = run("export", snap, "--decoder", folder / "vae", "-o", out, "--no-validate")
    assert r.exit_code == 0, r.output
    assert "decoder.onnx (AutoencoderKL, fp32) makes images (3, 16, 16)" in r.output
    return {"snapshot": snap, "vae": vae, "vae_folder": folder / "vae", "bundle": out}


def test_info_shows_both_stages(bundle):
    r = run("info", bundle["bundle"])
    assert r.exit_code == 0, r.output
    rows = dict(line.split(None, 1) for line in r.output.splitlines() if line[:1] != " ")
    assert "[B, 4 × 8 × 8] → [B, 4 × 8 × 8]" in rows["denoiser"]
    assert "[B, 4 × 8 × 8] → [B, 3 × 16 × 16], AutoencoderKL" in rows["decoder"]
    assert "GFLOP per call" in rows["denoiser"] and "GFLOP per image" in rows["decoder"]
    assert "edgediff.latent" in r.output  # the map came from the snapshot's encoder
    got = json.loads(run("info", bundle["bundle"], "--json").output)
    assert got["bundle"]["format"] == "edgediff.bundle"
    assert got["decoder"]["latent_channels"] == 4 and got["bundle"]["decoder"]["params"] > 0


def test_sample_writes_decoded_pngs_that_torch_agrees_with(bundle, tmp_path):
    out = tmp_path / "s"
    r = run("sample", bundle["bundle"], "--num", 3, "--batch", 2, "--steps", 3, "-o", out)
    assert r.exit_code == 0, r.output
    assert "images/ (3 PNGs, 3 × 16 × 16 each)" in r.output
    for k in range(3):
        with Image.open(out / "images" / f"{k:06d}.png") as im:
            assert im.size == (16, 16) and im.mode == "RGB"
    assert (out / "samples.png").is_file()
    images = np.load(out / "samples.npz")["samples"]
    z = np.load(out / "latents.npz")["latents"]
    assert images.shape == (3, 3, 16, 16) and z.shape == (3, 4, 8, 8)
    # torch: undo EDM2's map final = raw·scale + bias, then the VAE's own decode
    scale = 0.5 / np.array(RAW_STD, np.float32)
    bias = -np.array(RAW_MEAN, np.float32) * scale
    raw = (z - bias[:, None, None]) / scale[:, None, None]
    with torch.no_grad():
        ref = bundle["vae"].decode(torch.from_numpy(raw)).sample.numpy()
    # the same float32 network on the same inputs; only the order of the sums inside
    # convolutions differs between ONNX Runtime and torch, which is what the decoder
    # export's own gate allows: |err| ≤ 1e-4·max(1, |ref|) per element
    assert np.all(np.abs(images - ref) <= 1e-4 * np.maximum(1.0, np.abs(ref)))


def test_sample_tiles_on_request(bundle, tmp_path):
    r = run("sample", bundle["bundle"], "--num", 1, "--steps", 2, "--tile", 4,
            "--tile-overlap", 2, "-o", tmp_path / "t")
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "t" / "samples.npz")["samples"].shape == (1, 3, 16, 16)
    bad = run("sample", bundle["bundle"], "--num", 1, "--tile", 4, "--tile-overlap", 4)
    assert bad.exit_code != 0 and "--tile-overlap 4 must be less than --tile 4" in bad.output


def test_bench_splits_the_time_by_stage(bundle, tmp_path):
    r = run("bench", bundle["bundle"], "--num", 2, "--batch", 1, "--solvers", "euler",
            "--steps", 2, "-o", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert "decode share" in r.output
    row = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"][0]
    assert row["nfe"] == 2 and row["decode_ms"] > 0 and row["denoise_ms"] > 0
    assert 0 < row["decode_share"] < 1


def test_export_refuses_an_existing_bundle_and_a_decoder_file(bundle, tmp_path):
    r = run("export", bundle["snapshot"], "--decoder", bundle["vae_folder"], "-o",
            bundle["bundle"])
    assert r.exit_code != 0 and "--force" in r.output
    r = run("sample", bundle["bundle"] / "decoder.onnx", "--num", 1)
    assert r.exit_code != 0 and "open the bundle folder" in r.output
