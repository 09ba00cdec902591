"""Bundles and pipelines: the index read, written and refused; tiled decoding's pure
parts; a pipeline's images are exactly the decode of its latents; each stage opens
with its own backend options."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgediff import runtime
from edgediff.bundle import INDEX, check_stages, read_bundle, write_bundle
from edgediff.errors import EdgediffError
from edgediff.latent import DecoderInfo, LatentMap
from edgediff.runtime.tiling import Tiling, decode_tiled, tile_starts, tiles, weights

# ---- tiling (pure NumPy) -------------------------------------------------------------

sizes = st.integers(1, 40)


@st.composite
def tilings(draw):
    size = draw(st.integers(1, 16))
    return Tiling(size, draw(st.integers(0, size - 1)), draw(st.sampled_from(["linear",
                                                                               "cosine"])))


@settings(max_examples=200, deadline=None)
@given(h=sizes, w=sizes, tiling=tilings(), up=st.integers(1, 3))
def test_tiles_cover_the_latent_and_the_weights_sum_to_one(h, w, tiling, up):
    covered = np.zeros((h, w), int)
    for y, x, th, tw in tiles(h, w, tiling):
        assert 0 <= y and y + th <= h and 0 <= x and x + tw <= w
        covered[y:y + th, x:x + tw] += 1
    assert covered.min() >= 1  # every latent pixel is decoded
    total = np.zeros((h * up, w * up))
    for (y, x, th, tw), win in zip(tiles(h, w, tiling), weights(h, w, up, tiling), strict=True):
        assert win.shape == (th * up, tw * up) and win.min() > 0
        total[y * up:(y + th) * up, x * up:(x + tw) * up] += win
    assert total.min() > 0  # so the normalized weights w/Σw sum to exactly 1
    ones = decode_tiled(lambda t: np.ones((len(t), 3, t.shape[2] * up, t.shape[3] * up)),
                        np.zeros((2, 4, h, w), np.float32), up, tiling)
    # Σᵢ wᵢ·1 / Σᵢ wᵢ in float32: a few ulp (ε = 1.2e-7) per tile over a pixel (≤ 4)
    np.testing.assert_allclose(ones, 1.0, rtol=0, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(m=st.integers(1, 5), tiling=tilings(), up=st.integers(1, 3))
def test_tiles_a_stride_apart_crossfade_without_normalizing(m, tiling, up):
    """n = size + m·stride: every overlap is exactly ``overlap``, and the two ramps
    over it are complementary, so the raw windows already sum to 1 (where no pixel
    lies in three tiles: 2·overlap ≤ size)."""
    if 2 * tiling.overlap > tiling.size:
        tiling = Tiling(tiling.size, tiling.size // 2, tiling.ramp)
    n = tiling.size + m * (tiling.size - tiling.overlap)
    assert tile_starts(n, tiling.size, tiling.overlap) == list(
        range(0, n - tiling.size + 1, tiling.size - tiling.overlap))
    total = np.zeros(n * up)
    for (_, x, _, tw), win in zip(tiles(1, n, tiling), weights(1, n, up, tiling), strict=True):
        total[x * up:(x + tw) * up] += win[0]
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(h=sizes, w=sizes, tiling=tilings(), up=st.integers(1, 4))
def test_a_pointwise_decoder_tiles_to_the_untiled_image(h, w, tiling, up):
    """A decoder that maps each latent pixel to its own up×up block sees nothing past
    its tile, so tiles agree where they overlap and the blend is exact."""
    def decode(z):
        rgb = np.tanh(np.einsum("oc,bchw->bohw", np.arange(12.0).reshape(3, 4) / 10, z))
        return rgb.repeat(up, axis=2).repeat(up, axis=3).astype(np.float32)

    z = np.random.default_rng(h * 41 + w).standard_normal((2, 4, h, w)).astype(np.float32)
    # a convex combination of equal float32 values: exact up to float32 rounding of
    # w·v summed and divided (a few ulp of |v| ≤ 1 per overlapping tile)
    np.testing.assert_allclose(decode_tiled(decode, z, up, tiling), decode(z), rtol=0,
                               atol=1e-6)


def test_bad_tilings_are_refused():
    for size, overlap, ramp, word in ((0, 0, "linear", "size"), (4, 4, "linear", "overlap"),
                                      (4, -1, "linear", "overlap"), (4, 1, "box", "ramp")):
        with pytest.raises(EdgediffError, match=word):
            Tiling(size, overlap, ramp)


# ---- the bundle index ----------------------------------------------------------------

def _pair(tmp_path, text=(b"denoiser bytes", b"decoder bytes")):
    files = {}
    for stage, data in zip(("denoiser", "decoder"), text, strict=True):
        files[stage] = tmp_path / f"{stage}.src"
        files[stage].write_bytes(data)
    return files


def test_a_bundle_is_written_whole_and_read_back(tmp_path):
    out = tmp_path / "b"
    made = write_bundle(out, _pair(tmp_path), {"denoiser": (10, 2e6), "decoder": (5, 1e6)})
    index = json.loads((out / INDEX).read_text())
    assert index["format"] == "edgediff.bundle" and index["format_version"] == 1
    assert index["decoder"]["params"] == 5 and index["denoiser"]["flops"] == 2e6
    assert read_bundle(out) == made
    assert sorted(os.listdir(tmp_path)) == ["b"]  # sources moved, no temp folder left


def test_an_existing_bundle_is_replaced_only_with_force(tmp_path):
    out = tmp_path / "b"
    write_bundle(out, _pair(tmp_path))
    with pytest.raises(EdgediffError, match="--force"):
        write_bundle(out, _pair(tmp_path, (b"x", b"y")))
    write_bundle(out, _pair(tmp_path, (b"x", b"y")), force=True)
    assert (out / "decoder.onnx").read_bytes() == b"y"
    assert sorted(p for p in os.listdir(tmp_path) if not p.endswith(".src")) == ["b"]


def test_a_failed_write_leaves_nothing(tmp_path):
    files = _pair(tmp_path)
    files["decoder"].unlink()
    with pytest.raises(FileNotFoundError):
        write_bundle(tmp_path / "b", files)
    assert not (tmp_path / "b").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(format_version=2), "format_version = 2 .*upgrade edgediff"),
    (lambda d: d.update(format="other"), "format = "),
    (lambda d: d["decoder"].update(sha256="abc"), "decoder.sha256 = "),
    (lambda d: d["denoiser"].update(file="../x.onnx"), "denoiser.file = "),
    (lambda d: d["decoder"].update(params=-1), "decoder.params = "),
    (lambda d: d["decoder"].update(flops=float("nan")), "decoder.flops = "),
    (lambda d: d["decoder"].update(extra=1), "decoder.extra = "),
    (lambda d: d.pop("decoder"), "decoder = null"),
    (lambda d: d.update(stages=[]), "stages = "),
])
def test_a_bad_index_value_is_refused_by_name(tmp_path, edit, words):
    out = tmp_path / "b"
    write_bundle(out, _pair(tmp_path))
    d = json.loads((out / INDEX).read_text())
    edit(d)
    (out / INDEX).write_text(json.dumps(d))
    with pytest.raises(EdgediffError, match=words) as e:
        read_bundle(out)
    assert "\n" not in str(e.value)


def test_a_changed_file_is_named(tmp_path):
    out = tmp_path / "b"
    write_bundle(out, _pair(tmp_path))
    with open(out / "decoder.onnx", "ab") as f:
        f.write(b"!")
    with pytest.raises(EdgediffError, match=r"decoder\.onnx has changed since the bundle"):
        read_bundle(out)
    assert read_bundle(out, verify=False).decoder.file == "decoder.onnx"


def _decoder(channels=4, size=(8, 8), scale=0.5):
    return DecoderInfo("AutoencoderKL", channels, size, 3, 2,
                       LatentMap((scale,) * channels, (0.0,) * channels), (-1.0, 1.0), "0" * 64)


def test_stages_that_do_not_fit_are_refused():
    check_stages((4, 8, 8), None, _decoder(), "b")
    check_stages((4, 8, 8), {"scale": [0.5] * 4, "bias": [0.0] * 4}, _decoder(), "b")
    with pytest.raises(EdgediffError, match=r"takes latents \[3, 8, 8\] but the denoiser"):
        check_stages((4, 8, 8), None, _decoder(channels=3), "b")
    with pytest.raises(EdgediffError, match=r"takes latents \[4, 4, 4\]"):
        check_stages((4, 8, 8), None, _decoder(size=(4, 4)), "b")
    with pytest.raises(EdgediffError, match="latent map scale"):
        check_stages((4, 8, 8), {"scale": [0.25] * 4, "bias": [0.0] * 4}, _decoder(), "b")
    with pytest.raises(EdgediffError, match="latents"):
        check_stages((2,), None, _decoder(), "b")


# ---- pipelines (ONNX Runtime; the bundle is made with torch) -------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    from tests.runtime.bundles import latent_bundle

    return latent_bundle(tmp_path_factory.mktemp("bundle"))


def test_a_pipeline_samples_the_decode_of_its_latents(made):
    P = runtime.load(made["bundle"], threads=1)
    kw = {"seed": 3, "steps": 4, "run": runtime.RunOptions(batch=2)}
    images = P.sample(3, **kw)
    z = P.sample_latents(3, **kw)
    assert np.array_equal(z, runtime.sample(P.denoiser, 3, **kw))
    assert images.dtype == np.float32 and images.shape == (3, 3, 16, 16) == (3, *P.image_shape)
    assert np.array_equal(images, P.decode(z, batch=2))
    one_tile = P.decode(z, tile=Tiling(8, 2))  # a tile as large as the latent: one call
    np.testing.assert_allclose(one_tile, images, rtol=0, atol=1e-6)
    assert P.decode(z, tile=Tiling(4, 2)).shape == images.shape


def test_each_stage_takes_its_own_backend_options(made):
    P = runtime.load(made["bundle"], runtime.BackendOptions(threads=2),
                     decoder_options=runtime.BackendOptions(threads=1))
    assert P.denoiser.session.get_session_options().intra_op_num_threads == 2
    assert P.decoder.session.get_session_options().intra_op_num_threads == 1
    default = runtime.load(made["bundle"], threads=2)
    assert default.decoder.session.get_session_options().intra_op_num_threads == 2
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(EdgediffError, match="no CUDAExecutionProvider"):
            runtime.load(made["bundle"], decoder_options=runtime.BackendOptions(
                provider="cuda"))


def test_a_decoder_alone_is_sent_to_its_bundle(made):
    with pytest.raises(EdgediffError, match=r"decoder stage .* open the bundle folder"):
        runtime.load(made["bundle"] / "decoder.onnx")
    with pytest.raises(EdgediffError, match=r"without bundle\.json"):
        runtime.load(made["bundle"].parent / "vae")


def test_a_mismatched_pair_is_refused(made, tmp_path):
    from edgediff.export.decoder import export_decoder

    other = tmp_path / "decoder.onnx"
    export_decoder(made["vae"], other, latent_size=(4, 4), validate=False)
    copy = tmp_path / "copy"
    shutil.copy(made["bundle"] / "denoiser.onnx", tmp_path / "denoiser.onnx")
    write_bundle(copy, {"denoiser": tmp_path / "denoiser.onnx", "decoder": other})
    with pytest.raises(EdgediffError, match=r"takes latents \[4, 4, 4\] but the denoiser"):
        runtime.load(copy)


@pytest.mark.extra("openvino")
def test_each_stage_runs_on_openvino_at_f32_as_on_onnx_runtime(made):
    """Per-stage engines: the denoiser and the decoder each on OpenVINO (f32) give what
    ONNX Runtime gives. Latents within the runtime's float32 trajectory bound
    (``TrajectoryScale``, as tests/runtime/test_openvino.py argues for denoisers), and
    the same latents decoded within the decoder's float32 tolerance per element,
    DECODER_TOLERANCE·max(1, max|image|) (two float32 implementations of one graph;
    export/decoder_check.py argues 1e-4)."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed "
                                           "(pip install \"edgediff[openvino]\")")
    from edgediff.catalogue import CATALOGUE
    from edgediff.export.decoder_check import DECODER_TOLERANCE
    from edgediff.tolerance import TrajectoryScale

    ov = runtime.BackendOptions(engine="openvino", precision="f32", threads=1)
    ort_p = runtime.load(made["bundle"], threads=1)
    ov_p = runtime.load(made["bundle"], ov, decoder_options=ov)
    mixed = runtime.load(made["bundle"], threads=1, decoder_options=ov)
    assert type(ov_p.decoder).__name__ == "OpenVinoDecoder" == type(mixed.decoder).__name__
    assert type(mixed.denoiser) is type(ort_p.denoiser)
    scale = TrajectoryScale.for_solver(CATALOGUE["heun"], ort_p.info.data_range)
    kw = {"seed": 3, "solver": "heun", "steps": 4}
    z = ort_p.sample_latents(2, run=runtime.RunOptions(callback=scale), **kw)
    assert np.abs(ov_p.sample_latents(2, **kw) - z).max() <= scale.bound()
    want = ort_p.decode(z)
    limit = DECODER_TOLERANCE * max(1.0, float(np.abs(want).max()))
    for P in (ov_p, mixed):
        assert np.abs(P.decode(z) - want).max() <= limit
        assert np.abs(P.decode(z, tile=Tiling(4, 2)) - ort_p.decode(z, tile=Tiling(4, 2))
                      ).max() <= limit  # the dynamic h, w of tiles
