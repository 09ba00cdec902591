import numpy as np
import pytest
from click.testing import CliRunner

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")

from edgediff.artifact import ArtifactInfo  # noqa: E402
from edgediff.cli import main  # noqa: E402
from edgediff.errors import EdgediffError  # noqa: E402
from edgediff.export.onnx import export_onnx  # noqa: E402
from edgediff.models.analytic import mixture_model  # noqa: E402


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
    assert info.default_sampler == {"solver": "heun", "steps": 18}
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
    np.testing.assert_allclose(y, mixture_2d.denoise(x, s), rtol=1e-5, atol=1e-5)


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
        export_onnx(mixture_model(), out, source_sha256="0" * 64, atol=0.0, rtol=0.0)
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
        __import__("edgediff.export.onnx", fromlist=["x"]).artifact_info(
            mixture_model(), "0" * 64).to_props())
    props = {**info.to_props(), "edgediff.format_version": "99"}
    with pytest.raises(EdgediffError, match="upgrade edgediff"):
        ArtifactInfo.from_props(props)
    props = {k: v for k, v in info.to_props().items() if k != "edgediff.schedule"}
    with pytest.raises(EdgediffError, match=r"edgediff\.schedule"):
        ArtifactInfo.from_props(props)
