"""Snapshot → edgediff's module → ONNX computes what NVlabs' code computed.

The three NVlabs fixtures carry the D their own forward returned; the other
configurations (VE NCSN++, unconditional and latent EDM2, several attention
resolutions, channel_mult of length 3 and 4) are written in the same format by
edgediff's writer and must come back bit for bit before the export is compared.

Tolerance, for every ONNX-vs-reference comparison: two float32 implementations
of one network differ by reassociation, a few ulps of each layer's scale per
layer. Normalisations keep every layer's scale at that of its input, so the
error stays relative; it is then multiplied by c_out (σ for VP and VE at σ = 80)
on its way into D. Per sample, the scale is max(|x|, |D|, |c_out|·max|F| ≈ |D −
c_skip·x|); ``ULPS`` = 256 allows 8 ulps for each of ≤ 32 layers in a path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgediff.cli import main
from edgediff.models.loader import resolve_source
from edgediff.models.snapshot import writer
from edgediff.tolerance import EPS32

ort = pytest.importorskip("onnxruntime")
FIXTURES = Path(__file__).parents[1] / "fixtures" / "edm"
ULPS = 256


def onnx_D(path: Path, x, sigma, labels=None) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"x": np.asarray(x, np.float32), "sigma": np.asarray(sigma, np.float32)}
    if labels is not None:
        feed["class_labels"] = np.asarray(labels, np.int64)
    return sess.run(None, feed)[0]


def assert_float32_close(got, expect, x):
    n = len(expect)
    scale = np.maximum.reduce([np.abs(expect).reshape(n, -1).max(1),
                               np.abs(x).reshape(n, -1).max(1), np.ones(n)])
    err = np.abs(got - expect).reshape(n, -1).max(1)
    assert np.all(err <= ULPS * EPS32 * scale), (err / scale).max() / EPS32


def export(path: Path, out: Path) -> Path:
    r = CliRunner().invoke(main, ["export", str(path), "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("name", ["edm-songunet-vp-tiny", "edm-dhariwal-cond-tiny",
                                  "edm2-cond-tiny"])
def test_nvlabs_fixtures_export_to_their_own_D(tmp_path, name):
    ref = np.load(FIXTURES / f"{name}.ref.npz")
    out = export(FIXTURES / f"{name}.pkl", tmp_path / "model.onnx")
    labels = ref["labels"] if "cond" in name else None
    got = onnx_D(out, ref["x"], ref["sigma"], labels)
    assert_float32_close(got, ref["D"], ref["x"])


def _songunet(**kw):
    from edgediff.models.edm.songunet import SongUNet

    kwargs = {"img_resolution": 8, "in_channels": 3, "out_channels": 3, "label_dim": 0,
              "model_channels": 8, "channel_mult": [1, 2], "num_blocks": 1,
              "attn_resolutions": [4], **kw}
    return writer.randomize(SongUNet(**kwargs), seed=1), kwargs


def _dhariwal(**kw):
    from edgediff.models.edm.dhariwal import DhariwalUNet

    kwargs = {"img_resolution": 8, "in_channels": 3, "out_channels": 3, "label_dim": 0,
              "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1,
              "attn_resolutions": [4], **kw}
    return writer.randomize(DhariwalUNet(**kwargs), seed=2), kwargs


def _edm2(**kw):
    from edgediff.models.edm.edm2 import EDM2Network

    kwargs = {"img_resolution": 8, "img_channels": 3, "label_dim": 0, "model_channels": 16,
              "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4], **kw}
    return writer.randomize(EDM2Network(**kwargs), seed=3), kwargs


WRITTEN = {
    "ve-ncsnpp-fourier-residual": lambda: ("VEPrecond", *_songunet(
        embedding_type="fourier", channel_mult_noise=2, encoder_type="residual",
        decoder_type="skip", resample_filter=[1, 3, 3, 1])),
    "vp-ddpmpp-mult3-attn2": lambda: ("VPPrecond", *_songunet(
        channel_mult=[1, 2, 2], attn_resolutions=[8, 2], encoder_type="skip", label_dim=3)),
    "edm-adm-mult4": lambda: ("EDMPrecond", *_dhariwal(
        img_resolution=16, channel_mult=[1, 1, 2, 2], attn_resolutions=[8, 4])),
    "edm2-unconditional-mult3": lambda: ("Precond", *_edm2(
        channel_mult=[1, 2, 2], attn_resolutions=[4, 2])),
}


def _record(precond, net, kwargs):
    if precond == "Precond":
        return writer.edm2_record(net, kwargs)
    return writer.edm_record(precond, net, kwargs)


@pytest.mark.parametrize("case", WRITTEN)
def test_written_snapshots_read_back_exactly_and_export(tmp_path, case):
    precond, net, kwargs = WRITTEN[case]()
    snap = writer.write_snapshot(tmp_path / "net.pkl", _record(precond, net, kwargs))
    model, _ = resolve_source(str(snap))
    inner = model.denoiser.model.net
    for key, value in net.state_dict().items():  # EDM2's folded weights differ: see below
        if not (precond == "Precond" and key.endswith("weight")):
            assert torch.equal(inner.state_dict()[key], value), key
    out = export(snap, tmp_path / "model.onnx")
    n, res = 4, kwargs["img_resolution"]
    x = np.random.default_rng(0).standard_normal((n, 3, res, res)).astype(np.float32)
    sigma = np.array([0.03, 0.5, 4.0, 80.0], np.float32)
    labels = np.arange(n) % kwargs["label_dim"] if kwargs.get("label_dim") else None
    with torch.no_grad():
        expect = model.denoiser(torch.from_numpy(x), torch.from_numpy(sigma),
                                None if labels is None else torch.from_numpy(labels)).numpy()
    assert_float32_close(onnx_D(out, x, sigma, labels), expect, x)


def test_edm2_weights_are_folded_once_and_agree_with_the_unfolded_network(tmp_path):
    from edgediff.models.precond import EDMPrecond
    from edgediff.models.snapshot.rebuild import OneHotNetwork

    _, net, kwargs = WRITTEN["edm2-unconditional-mult3"]()
    snap = writer.write_snapshot(tmp_path / "net.pkl", writer.edm2_record(net, kwargs))
    folded, _ = resolve_source(str(snap))
    unfolded = EDMPrecond(OneHotNetwork(net.eval(), 0))
    x, sigma = torch.randn(3, 3, 8, 8), torch.tensor([0.01, 1.0, 60.0])
    with torch.no_grad():
        a, b = folded.denoiser(x, sigma).numpy(), unfolded(x, sigma).numpy()
    assert_float32_close(a, b, x.numpy())


def test_a_latent_edm2_snapshot_records_its_encoder(tmp_path):
    from edgediff.artifact import ArtifactInfo
    from edgediff.runtime.backends.ort import read_onnx_metadata

    net, kwargs = _edm2(img_channels=4)
    enc = writer.vae_encoder_record(raw_mean=(1.0, 2.0, 3.0, 4.0), raw_std=(2.0, 4.0, 5.0, 8.0))
    snap = writer.write_snapshot(tmp_path / "latent.pkl", writer.edm2_record(net, kwargs),
                                 encoder=enc)
    info = ArtifactInfo.from_props(read_onnx_metadata(export(snap, tmp_path / "m.onnx")))
    assert info.latent["vae_name"] == "stabilityai/sd-vae-ft-mse"
    np.testing.assert_allclose(info.latent["scale"], [0.25, 0.125, 0.1, 0.0625], rtol=1e-6)
    np.testing.assert_allclose(info.latent["bias"], [-0.25, -0.25, -0.3, -0.25], rtol=1e-6)


def test_an_edm2_pair_is_autoguidance(tmp_path):
    """A main model and a smaller guide, both conditional, guide each other through
    the runtime: one call equals D_guide + w·(D_main − D_guide) of the two graphs."""
    from edgediff import runtime

    paths = {}
    for name, channels in (("main", 16), ("guide", 8)):
        net, kwargs = _edm2(label_dim=4, model_channels=channels)
        snap = writer.write_snapshot(tmp_path / f"{name}.pkl", writer.edm2_record(net, kwargs))
        paths[name] = export(snap, tmp_path / f"{name}.onnx")
    main_D, guide_D = runtime.load(paths["main"]), runtime.load(paths["guide"])
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    sigma, labels, w = np.array([0.5, 5.0], np.float32), np.array([1, 3]), 2.5
    guided = runtime.guidance.guided_denoiser(main_D, labels, w, guide_D)
    d_main = onnx_D(paths["main"], x, sigma, labels).astype(np.float64)
    d_guide = onnx_D(paths["guide"], x, sigma, labels).astype(np.float64)
    np.testing.assert_allclose(guided(x, sigma), d_guide + w * (d_main - d_guide),
                               atol=ULPS * EPS32 * np.abs(d_main).max() * w)
    samples = runtime.sample(main_D, 2, steps=3, condition=runtime.Condition(
        labels=[0, 2], guidance=w, guide=guide_D))
    assert samples.shape == (2, 3, 8, 8) and np.isfinite(samples).all()
