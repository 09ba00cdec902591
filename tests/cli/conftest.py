import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("torch", reason="exporting needs torch")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    """Exported digits and mixture models, made through the CLI itself."""
    from click.testing import CliRunner

    from edgediff.cli import main

    folder = tmp_path_factory.mktemp("cli-artifacts")
    out = {}
    for name, source in (("digits", "bundled"), ("mixture", "mixture2d")):
        path = folder / f"{name}.onnx"
        r = CliRunner().invoke(main, ["export", source, "-o", str(path)])
        assert r.exit_code == 0, r.output
        out[name] = path
    return out
