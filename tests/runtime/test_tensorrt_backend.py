"""The TensorRT backend's checks run before any deserialization — tested here
with TensorRT itself stood in by a module whose Runtime must never be reached.
(The engine run itself needs TensorRT and a GPU: tests/export/test_tensorrt.py.)"""

import sys
import types

import pytest

from edgediff.errors import EdgediffError
from edgediff.export.tensorrt import BuildSettings, make_sidecar, write_plan

ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def plan(tmp_path, exported):
    _, onnx_path = exported["mixture"]
    meta = ort.InferenceSession(str(onnx_path)).get_modelmeta().custom_metadata_map
    side = make_sidecar(onnx_path, meta, BuildSettings(max_batch=8), "10.3.0", "NVIDIA H100",
                        "9.0")
    path = tmp_path / "m.plan"
    write_plan(path, b"serialized engine", side)
    return path


@pytest.fixture
def fake_trt(monkeypatch):
    def never(*_a, **_k):
        raise AssertionError("deserialization must not be reached")

    module = types.SimpleNamespace(__version__="10.3.0", Runtime=never,
                                   Logger=types.SimpleNamespace(WARNING=0))
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    import edgediff.runtime.tensorrt as backend

    monkeypatch.setattr(backend, "gpu_identity", lambda: ("NVIDIA H100", "9.0"))
    return module, backend


def test_a_plan_from_another_tensorrt_version_asks_for_a_rebuild(plan, fake_trt):
    module, backend = fake_trt
    module.__version__ = "10.7.0"
    with pytest.raises(EdgediffError, match=r"TensorRT 10\.3\.0 built it.*Rebuild it"):
        backend.TrtDenoiser(plan)


def test_a_plan_for_another_gpu_asks_for_a_rebuild(plan, fake_trt, monkeypatch):
    _, backend = fake_trt
    monkeypatch.setattr(backend, "gpu_identity", lambda: ("NVIDIA Jetson AGX Orin", "8.7"))
    with pytest.raises(EdgediffError, match=r"compute capability 9\.0 .* this GPU is 8\.7"):
        backend.TrtDenoiser(plan)


def test_an_altered_plan_is_refused(plan, fake_trt):
    _, backend = fake_trt
    plan.write_bytes(b"serialized engine, patched")
    with pytest.raises(EdgediffError, match="altered or swapped"):
        backend.TrtDenoiser(plan)


def test_a_plan_without_sidecar_is_refused(plan, fake_trt):
    _, backend = fake_trt
    plan.with_name("m.plan.json").unlink()
    with pytest.raises(EdgediffError, match="no sidecar"):
        backend.TrtDenoiser(plan)


def test_plan_info_reads_the_metadata_without_a_gpu(plan):
    from edgediff.runtime.tensorrt import plan_info

    info, side = plan_info(plan)
    assert info.sample_shape == (2,) and side["profiles"][0]["x"][2] == [8, 2]
