"""The decoder stage's export (issue 25): a diffusers AutoencoderKL or AutoencoderTiny
folder to one ONNX graph z -> image, the latent map folded in, against diffusers' own
``vae.decode`` as the oracle."""

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgediff.errors import EdgediffError
from edgediff.export import decoder as decoder_module
from edgediff.export.decoder import export_decoder, latent_map_for, read_vae
from edgediff.export.decoder_check import (
    DECODER_TOLERANCE,
    DecoderCheck,
    compare_images,
    image_error,
)
from edgediff.latent import DecoderInfo, LatentMap
from tests.export.vae_folders import write_kl, write_tiny

SIZE = (8, 6)  # export size (h, w); the second size below is odd and non-square
EDM2_KEY = {"encoder": "StabilityVAEEncoder", "vae_name": "stabilityai/sd-vae-ft-mse",
            "scale": [0.12, 0.108, 0.135, 0.152], "bias": [-0.697, -0.352, -0.016, 0.328]}


@pytest.fixture(scope="module")
def kl(tmp_path_factory):
    """A diffusers-convention KL with a shift: raw = z/0.5 + 0.1 (SD3's form)."""
    folder = tmp_path_factory.mktemp("kl")
    vae = write_kl(folder / "vae", scaling_factor=0.5, shift_factor=0.1)
    (folder / "model_index.json").write_text("{}")  # a pipeline folder: the VAE in vae/
    info = export_decoder(folder, folder / "kl.onnx", latent_size=SIZE)
    return folder, vae, info


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    vae = write_tiny(folder)
    return folder, vae, export_decoder(folder, folder / "tiny.onnx", latent_size=SIZE)


def run(path, z):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"z": z})[0]


def diffusers_decode(vae, raw):
    with torch.no_grad():
        return vae.decode(torch.from_numpy(raw)).sample.numpy()


def assert_within(got, ref, tol=DECODER_TOLERANCE):
    """The export's rule (decoder_check's docstring argues the 1e-4): each element within
    max(tol·m, tol·|ref|), m = max(1, max|image|) per image."""
    passed, max_abs, _, worst = compare_images(got, ref, tol, tol)
    assert passed and worst <= 1.0, (max_abs, worst)


@pytest.mark.parametrize("h, w", [SIZE, (5, 9)])
def test_the_graph_matches_diffusers_decode_at_every_size(kl, tiny, h, w):
    z = np.random.default_rng(h).standard_normal((3, 4, h, w)).astype(np.float32)
    kl_folder, kl_vae, _ = kl
    assert_within(run(kl_folder / "kl.onnx", z), diffusers_decode(kl_vae, z / 0.5 + 0.1))
    tiny_folder, tiny_vae, _ = tiny
    # TAESD's scaling_factor is 1.0: its graph is vae.decode itself
    assert_within(run(tiny_folder / "tiny.onnx", z), diffusers_decode(tiny_vae, z))
    assert run(tiny_folder / "tiny.onnx", z).shape == (3, 3, 4 * h, 4 * w)


def test_the_metadata_round_trips_from_the_onnx_file(kl, tiny):
    for folder, vae, info in (kl, tiny):
        path = folder / f"{'kl' if vae.__class__.__name__ == 'AutoencoderKL' else 'tiny'}.onnx"
        props = ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
        assert DecoderInfo.from_props(props) == info
        assert info.kind == vae.__class__.__name__ and info.latent_size == SIZE
        expected = sum(p.numel() for p in vae.decoder.parameters()) + sum(
            p.numel() for p in getattr(vae, "post_quant_conv", torch.nn.Identity()).parameters())
        assert info.params == expected and info.flops > 0 and info.precision == "fp32"
        assert info.data_range == (-1.0, 1.0)
    assert kl[2].upscale == 2 and tiny[2].upscale == 4
    assert kl[2].latent_map == LatentMap.diffusers(4, 0.5, 0.1)
    assert tiny[2].latent_map == LatentMap.diffusers(4, 1.0, 0.0)
    assert len(kl[2].source_sha256) == 64


def test_an_edm2_latent_key_is_folded_in_instead_of_the_vae_config(kl, tmp_path):
    folder, vae, _ = kl
    info = export_decoder(folder, tmp_path / "edm2.onnx", latent_size=SIZE,
                          denoiser_latent=EDM2_KEY, validate=False)
    assert info.latent_map == LatentMap.from_latent_key(EDM2_KEY)
    assert info.vae_name == "stabilityai/sd-vae-ft-mse"
    z = np.random.default_rng(0).standard_normal((2, 4, *SIZE)).astype(np.float32)
    scale = np.array(EDM2_KEY["scale"], np.float32).reshape(1, 4, 1, 1)
    bias = np.array(EDM2_KEY["bias"], np.float32).reshape(1, 4, 1, 1)
    got = run(tmp_path / "edm2.onnx", z)
    assert_within(got, diffusers_decode(vae, (z - bias) / scale))
    assert np.abs(got - run(folder / "kl.onnx", z)).max() > 0.01  # the map changed the input


def test_fp16_halves_the_vae_within_its_tolerance(tiny, tmp_path):
    folder, vae, _ = tiny
    info = export_decoder(folder, tmp_path / "fp16.onnx", latent_size=SIZE, precision="fp16")
    types = {t.data_type for t in onnx.load(str(tmp_path / "fp16.onnx")).graph.initializer}
    assert info.precision == "fp16" and onnx.TensorProto.FLOAT16 in types
    z = np.random.default_rng(1).standard_normal((1, 4, *SIZE)).astype(np.float32)
    got = run(tmp_path / "fp16.onnx", z)
    assert got.dtype == np.float32
    assert_within(got, diffusers_decode(vae, z), decoder_module.FP16_DECODER_TOLERANCE)


def test_int8_writes_a_qdq_graph_and_reports_its_error(kl, tmp_path):
    folder = kl[0]
    z = np.random.default_rng(2).standard_normal((3, 4, *SIZE)).astype(np.float32)
    info = export_decoder(folder, tmp_path / "int8.onnx", latent_size=SIZE, precision="int8",
                          calibration=z)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    props = ort.InferenceSession(str(tmp_path / "int8.onnx")).get_modelmeta().custom_metadata_map
    assert DecoderInfo.from_props(props) == info and info.precision == "int8"
    record = info.calibration
    assert record["method"] == "given" and record["latents"] == 3
    error = record["error_vs_fp32"]
    # measured, not judged: the figures are those of the two graphs on held-out latents
    z_test = np.random.default_rng(1000).standard_normal((2, 4, *SIZE)).astype(np.float32)
    expected = image_error(np.concatenate([run(tmp_path / "int8.onnx", z_test[i:i + 1])
                                           for i in range(2)]),
                           run(folder / "kl.onnx", z_test), (-1.0, 1.0))
    assert error["psnr"] == pytest.approx(expected["psnr"], abs=0.01)
    assert 0 < error["max_abs"] == pytest.approx(expected["max_abs"], rel=1e-3)
    with pytest.raises(EdgediffError, match=r"\[N, 4, h, w\]"):
        export_decoder(folder, tmp_path / "bad.onnx", latent_size=SIZE, precision="int8",
                       calibration=z[:, :3], validate=False)


def test_a_failed_export_leaves_nothing_behind(kl, tmp_path, monkeypatch):
    folder = kl[0]
    failing = DecoderCheck(1.0, 1.0, 1e4, [(1, *SIZE)], 1e-4, 1e-4, passed=False)
    monkeypatch.setattr(decoder_module, "check_decoder", lambda *a, **k: failing)
    with pytest.raises(EdgediffError, match="failed validation"):
        export_decoder(folder, tmp_path / "out.onnx", latent_size=SIZE)
    assert list(tmp_path.iterdir()) == []
    # an int8 graph that returns NaN is refused, and its temporaries go with it
    monkeypatch.setattr("edgediff.export.quantize.quantize",
                        lambda fp32, qdq, calls: shutil.copy(fp32, qdq) and [])
    monkeypatch.setattr(decoder_module, "int8_error", lambda *a, **k: {"max_abs": np.inf})
    with pytest.raises(EdgediffError, match="NaN"):
        export_decoder(folder, tmp_path / "out.onnx", latent_size=SIZE, precision="int8",
                       validate=False)
    assert list(tmp_path.iterdir()) == []


def test_nan_never_passes_and_the_rule_is_per_element():
    ref = np.zeros((2, 3, 4, 4), np.float32)
    ref[0, 0, 0, 0] = 10.0  # image 0: m = 10, so atol·m = 1e-3; image 1: m = 1
    ok, *_ = compare_images(ref + 0.9e-4, ref, 1e-4, 1e-4)
    assert ok
    bad = ref.copy()
    bad[1, 0, 0, 0] = 2e-4  # 2e-4 > 1e-4·1 in image 1
    assert not compare_images(bad, ref, 1e-4, 1e-4)[0]
    bad = ref.copy()
    bad[0, 1, 1, 1] = 9e-4  # within 1e-4·10 in image 0
    assert compare_images(bad, ref, 1e-4, 1e-4)[0]
    nan = ref.copy()
    nan[1, 2, 3, 3] = np.nan
    assert compare_images(nan, ref, 1e-4, 1e-4) == (False, np.inf, np.inf, np.inf)


def test_the_refusals_are_one_line_each(kl, tiny, tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    kl_config, tiny_config = dict(kl[1].config), dict(tiny[1].config)
    cases = [
        (lambda: read_vae(tmp_path / "nowhere"), "is not a folder"),
        (lambda: read_vae(tmp_path / "unet"), "describes a 'UNet2DModel', not a VAE"),
        (lambda: read_vae(tmp_path / "bare"), "has no diffusion_pytorch_model.safetensors"),
        (lambda: latent_map_for("AutoencoderTiny", tiny_config, EDM2_KEY, 4),
         "TAESD decodes SD-scaled latents"),
        (lambda: latent_map_for("AutoencoderKL", kl_config, None, 8),
         "8-channel latents but this AutoencoderKL decodes 4"),
        (lambda: latent_map_for("AutoencoderKL", kl_config, {**EDM2_KEY, "scale": [1.0] * 3}, 4),
         "latent map has 3 channels"),
        (lambda: export_decoder(kl[0], tmp_path / "x.onnx", latent_size=SIZE, precision="bf16"),
         "choose one of fp32, fp16, int8"),
    ]
    for call, message in cases:
        with pytest.raises(EdgediffError, match=message) as e:
            call()
        assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare", "unet"]
