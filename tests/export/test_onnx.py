import numpy as np
import pytest
from click.testing import CliRunner

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")

from edgediff.artifact import ArtifactInfo  # noqa: E402
from edgediff.cli import main  # noqa: E402
from edgediff.errors import EdgediffError  # noqa: E402
from edgediff.export.onnx import ExportOptions, export_onnx  # noqa: E402
from edgediff.models.analytic import mixture_model  # noqa: E402
from edgediff.tolerance import mixture_denoiser_bound  # noqa: E402


def export(tmp_path, *args):
    return CliRunner().invoke(main, ["export", *args])


@pytest.fixture(scope="module")
def bundled_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("x") / "digits.onnx"
    r = CliRunner().invoke(main, ["export", "bundled", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_bundled_export_is_a_checked_self_describing_graph(bundled_onnx):
    out, log = bundled_onnx
    assert "max abs" in log and "wrote" in log
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    assert [i.name for i in proto.graph.input] == ["x", "sigma"]
    assert [o.name for o in proto.graph.output] == ["denoised"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    info = ArtifactInfo.from_props(sess.get_modelmeta().custom_metadata_map)
    assert info.parameterization == "edm" and info.sample_shape == (1, 8, 8)
    assert info.default_solver == {"solver": "heun", "steps": 18}
    assert len(info.source_sha256) == 64 and info.precision == "fp32"
    for batch in (1, 7):  # dynamic batch
        (y,) = sess.run(None, {"x": np.zeros((batch, 1, 8, 8), np.float32),
                               "sigma": np.full(batch, 2.0, np.float32)})
        assert y.shape == (batch, 1, 8, 8)


def test_mixture_export_is_the_exact_denoiser(tmp_path, mixture_2d):
    out = tmp_path / "m.onnx"
    r = export(tmp_path, "mixture2d", "-o", str(out))
    assert r.exit_code == 0, r.output
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32) * 3
    s = np.geomspace(0.002, 80, 16).astype(np.float32)
    (y,) = sess.run(None, {"x": x, "sigma": s})
    # float32 against the float64 oracle: within the mixture's own conditioning
    # (edgediff.tolerance.mixture_denoiser_bound: float32 resolution × log-weight size)
    err = np.abs(y - mixture_2d.denoise(x, s)).max(axis=1)
    assert np.all(err <= mixture_denoiser_bound(mixture_2d, x, s)), err


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    r = export(tmp_path, "mixture2d", "-o", str(out))
    assert r.exit_code == 1 and "--force" in r.output and out.read_bytes() == b"keep me"
    assert export(tmp_path, "mixture2d", "-o", str(out), "--force").exit_code == 0
    assert out.read_bytes() != b"keep me"


def test_failed_validation_leaves_nothing_behind(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(EdgediffError, match="failed validation"):
        export_onnx(mixture_model(), out, ExportOptions(atol=0.0, rtol=0.0), source_sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target,match", [
    ("missing/m.onnx", "not a folder"),
])
def test_unwritable_output(tmp_path, target, match):
    r = export(tmp_path, "mixture2d", "-o", str(tmp_path / target))
    assert r.exit_code == 1 and match in r.output and "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_metadata_is_required_and_versioned():
    with pytest.raises(EdgediffError, match="no edgediff metadata"):
        ArtifactInfo.from_props({"producer": "someone"})
    info = ArtifactInfo.from_props(
        __import__("edgediff.export.describe", fromlist=["x"]).artifact_info(
            mixture_model(), "0" * 64).to_props())
    props = {**info.to_props(), "edgediff.format_version": "99"}
    with pytest.raises(EdgediffError, match="upgrade edgediff"):
        ArtifactInfo.from_props(props)
    props = {k: v for k, v in info.to_props().items() if k != "edgediff.schedule"}
    with pytest.raises(EdgediffError, match=r"edgediff\.schedule"):
        ArtifactInfo.from_props(props)


def _unet_model():
    from edgediff.models.checkpoint import LoadedModel, build_denoiser, make_config
    from edgediff.schedules import EDMSchedule

    torch = pytest.importorskip("torch")
    config = make_config("unet", {"img_resolution": 8, "in_channels": 1, "out_channels": 1,
                                  "model_channels": 16, "channel_mult": [1, 2],
                                  "num_blocks": 1, "attn_resolutions": [4]},
                         "edm", EDMSchedule(), (1, 8, 8))
    torch.manual_seed(0)
    denoiser, schedule = build_denoiser(config)
    for p in denoiser.parameters():  # zero-initialised output layers would hide fp16 error
        p.data.add_(0.05 * torch.randn_like(p))
    return LoadedModel(denoiser, config, schedule)


def test_fp16_export_is_a_mixed_graph_validated_end_to_end(tmp_path):
    from onnx import TensorProto

    model = _unet_model()
    out16, out32 = tmp_path / "m16.onnx", tmp_path / "m32.onnx"
    result = export_onnx(model, out16, ExportOptions(fp16=True), source_sha256="0" * 64)
    export_onnx(model, out32, source_sha256="0" * 64)
    assert result.ok and result.atol == result.rtol == 1e-2
    e2e = result.end_to_end
    assert e2e["solver"] == "heun" and e2e["steps"] == 18 and 0 < e2e["max_abs"] <= e2e["limit"]
    proto = onnx.load(out16)
    kinds = {init.data_type for init in proto.graph.initializer}
    assert TensorProto.FLOAT16 in kinds  # the network's weights
    assert all(t.type.tensor_type.elem_type == TensorProto.FLOAT
               for t in [*proto.graph.input, *proto.graph.output])
    assert ArtifactInfo.from_props({p.key: p.value for p in proto.metadata_props}).precision \
        == "fp16"
    # really half precision: differs from the fp32 graph, but within the stated tolerance
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    s = np.array([0.002, 0.5, 5.0, 80.0], np.float32)
    y16, y32 = (ort.InferenceSession(str(p)).run(None, {"x": x, "sigma": s})[0]
                for p in (out16, out32))
    assert 0 < np.abs(y16 - y32).max() <= 1e-2 + 1e-2 * np.abs(y32).max()
    assert model.denoiser.model.conv_in.weight.dtype.is_floating_point  # the caller's model
    assert next(model.denoiser.parameters()).dtype == __import__("torch").float32  # untouched


def test_fp16_export_of_the_analytic_mixture_is_refused(tmp_path):
    with pytest.raises(EdgediffError, match="no network weights to run in fp16"):
        export_onnx(mixture_model(), tmp_path / "m.onnx", ExportOptions(fp16=True),
                    source_sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options,message", [
    ({"opset": 16}, "opset 16 is too old"),
    ({"atol": -1.0}, "--atol must be a number ≥ 0"),
    ({"rtol": float("nan")}, "--rtol must be a number ≥ 0"),
])
def test_export_options_are_checked_where_they_are_made(options, message):
    with pytest.raises(EdgediffError, match=message):
        ExportOptions(**options)
    # tolerances left out take the precision's default, once
    assert (ExportOptions().atol, ExportOptions().rtol) == (1e-4, 1e-4)
    assert (ExportOptions(fp16=True).atol, ExportOptions(fp16=True, rtol=0.5).rtol) == (1e-2, 0.5)
