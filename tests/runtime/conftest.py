import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("torch", reason="the torch reference needs torch")
pytest.importorskip("onnx", reason="exporting needs onnx")


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The analytic mixture and the bundled digits model, each as (torch model, ONNX path)."""
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.analytic import mixture_model
    from edgediff.models.bundled import load_bundled

    folder = tmp_path_factory.mktemp("artifacts")
    models = {}
    for name, model in (("mixture", mixture_model()), ("digits", load_bundled())):
        path = folder / f"{name}.onnx"
        export_onnx(model, path, ExportOptions(validate=False), source_sha256="0" * 64)
        models[name] = (model, path)
    return models


@pytest.fixture(scope="session")
def mixture_path(tmp_path_factory):
    """The exact class-conditional mixture as an ONNX file (the serve tests' model)."""
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.analytic import mixture_model

    path = tmp_path_factory.mktemp("serve") / "mixture-cond.onnx"
    export_onnx(mixture_model(conditional=True), path, ExportOptions(validate=False),
                source_sha256="0" * 64)
    return path


@pytest.fixture
def mixture(mixture_path):
    """That mixture opened on ONNX Runtime with one thread, fresh for each test."""
    from edgediff import runtime

    return runtime.load(mixture_path, threads=1)
