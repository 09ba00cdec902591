"""The engines' registry, their options, and the graph's one input list
(``edgediff.graph``) that every engine and the export read — tested without a GPU."""

import dataclasses
import importlib

import numpy as np
import pytest

from edgediff import runtime
from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError
from edgediff.graph import GraphInput, graph_inputs, label_cycle, profile_shapes
from edgediff.runtime.backends import ENGINES, BackendOptions, engine_for
from edgediff.schedules import EDMSchedule

PLAIN = ArtifactInfo("analytic", EDMSchedule(), 0.002, 80.0, 0.5, (2,), (-4.0, 4.0), "unknown",
                     {"solver": "heun", "steps": 18}, "fp32")
CONDITIONAL = dataclasses.replace(PLAIN, conditioning={"num_classes": 3, "null_label": 3})
GUIDED = dataclasses.replace(PLAIN, conditioning={"num_classes": 3, "null_label": 3,
                                                  "guidance_input": True})


def test_graph_inputs_follow_the_artifacts_conditioning():
    x, sigma = GraphInput("x", "float32", (2,)), GraphInput("sigma", "float32")
    labels = GraphInput("class_labels", "int64", fill=3)
    scale = GraphInput("guidance", "float32", fill=1.0)
    assert graph_inputs(PLAIN) == (x, sigma)
    assert graph_inputs(CONDITIONAL) == (x, sigma, labels)
    assert graph_inputs(GUIDED) == (x, sigma, labels, scale)
    assert [i.onnx_type for i in graph_inputs(GUIDED)] == [
        "tensor(float)", "tensor(float)", "tensor(int64)", "tensor(float)"]
    # what a backend binds when the caller leaves the conditioning out
    assert np.array_equal(labels.buffer(4), np.full(4, 3, np.int64))
    assert scale.buffer(2).dtype == np.float32 and np.all(scale.buffer(2) == 1)
    assert x.buffer(5).shape == (5, 2) and x.buffer(5).dtype == np.float32


def test_profile_shapes_and_the_label_cycle():
    assert profile_shapes(graph_inputs(CONDITIONAL), (1, 4, 8)) == {
        "x": ((1, 2), (4, 2), (8, 2)), "sigma": ((1,), (4,), (8,)),
        "class_labels": ((1,), (4,), (8,))}
    assert label_cycle(PLAIN, 5) is None
    assert label_cycle(CONDITIONAL, 9).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    other_null = dataclasses.replace(PLAIN, conditioning={"num_classes": 3, "null_label": 0})
    assert label_cycle(other_null, 4).tolist() == [0, 1, 2, 0]


def _parse(shapes: str) -> dict[str, tuple[int, ...]]:
    """ONNX Runtime's "name:d0xd1,name2:…" profile string."""
    out = {}
    for item in shapes.split(","):
        name, dims = item.split(":")
        out[name] = tuple(int(d) for d in dims.split("x"))
    return out


def test_the_tensorrt_ep_profile_names_every_dynamic_input_of_a_guided_graph(tmp_path):
    """The profile the TensorRT execution provider gets covers each input with a
    dynamic axis of the exported conditional, --guidance graph (read from the graph
    itself), at batch 1 (min) and max_batch (opt, max)."""
    import onnxruntime as ort

    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.analytic import mixture_model
    from edgediff.runtime.backends.ort import tensorrt_ep_options

    path = tmp_path / "cfg.onnx"
    export_onnx(mixture_model(conditional=True), path,
                ExportOptions(validate=False, guidance=True), source_sha256="0" * 64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dynamic = {i.name: len(i.shape) for i in session.get_inputs()
               if any(not isinstance(d, int) for d in i.shape)}
    assert set(dynamic) == {"x", "sigma", "class_labels", "guidance"}
    info = ArtifactInfo.from_props(session.get_modelmeta().custom_metadata_map)
    opts = tensorrt_ep_options(graph_inputs(info), 8, 0, tmp_path)
    for key, batch in (("min", 1), ("opt", 8), ("max", 8)):
        shapes = _parse(opts[f"trt_profile_{key}_shapes"])
        assert set(shapes) == set(dynamic), key
        assert {name: len(s) for name, s in shapes.items()} == dynamic
        assert all(s[0] == batch for s in shapes.values())
        assert shapes["x"] == (batch, *info.sample_shape)


def test_loading_with_the_tensorrt_provider_passes_that_profile(exported, monkeypatch, tmp_path):
    """The wiring: what ONNX Runtime is asked for when a conditional, --guidance graph
    is opened with provider="tensorrt" (the GPU session stood in for)."""
    import onnxruntime as ort

    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.analytic import mixture_model

    path = tmp_path / "cfg.onnx"
    export_onnx(mixture_model(conditional=True), path,
                ExportOptions(validate=False, guidance=True), source_sha256="0" * 64)
    real, asked = ort.InferenceSession, []

    def recording(file, options=None, providers=None):
        asked.append(providers)
        if providers[0] != "CPUExecutionProvider":
            raise RuntimeError("no GPU here")
        return real(file, options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", recording)
    with pytest.raises(EdgediffError, match="no GPU here"):
        runtime.load(path, BackendOptions(provider="tensorrt", max_batch=4,
                                          cache_dir=tmp_path / "cache"))
    name, opts = asked[1][0]
    assert name == "TensorrtExecutionProvider"
    assert opts["trt_profile_max_shapes"] == "x:4x2,sigma:4,class_labels:4,guidance:4"
    assert opts["trt_profile_min_shapes"] == "x:1x2,sigma:1,class_labels:1,guidance:1"


def test_the_registry_picks_an_engine_by_suffix_and_each_module_opens_files(tmp_path):
    from pathlib import Path

    assert engine_for(Path("m.onnx")).module == "ort"
    assert engine_for(Path("m.plan")).module == engine_for(Path("m.engine")).module == "tensorrt"
    with pytest.raises(EdgediffError, match=r"neither an \.onnx file nor a TensorRT \.plan"):
        engine_for(Path("m.xml"))
    for engine in ENGINES:
        module = importlib.import_module(f"edgediff.runtime.backends.{engine.module}")
        assert callable(module.open_artifact)
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"engine")
    with pytest.raises(EdgediffError, match="a plan's metadata is its sidecar's"):
        runtime.load(plan, metadata={"sigma_data": 1.0})


@pytest.mark.parametrize("kw,match", [
    ({"provider": "gpu"}, "unknown provider 'gpu'; choose one of cpu, cuda, tensorrt"),
    ({"threads": 0}, "threads must be an integer ≥ 1"),
    ({"max_batch": 0}, "max_batch must be an integer ≥ 1"),
    ({"max_batch": 2.5}, "max_batch must be an integer ≥ 1"),
    ({"device_id": -1}, "device_id must be an integer ≥ 0"),
    ({"metadata": "meta.json"}, "metadata must be a JSON object"),
])
def test_backend_options_are_checked_when_made(kw, match):
    with pytest.raises(EdgediffError, match=match):
        BackendOptions(**kw)


def test_load_shorthands_override_the_options(exported):
    _, path = exported["digits"]
    D = runtime.load(path, BackendOptions(threads=1, max_batch=8), max_batch=4)
    assert D.max_batch == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        BackendOptions().threads = 2


@pytest.mark.parametrize("make,match", [
    (lambda: runtime.RunOptions(batch=0), "batch must be an integer ≥ 1"),
    (lambda: runtime.RunOptions(first=-1), "first must be an integer ≥ 0"),
    (lambda: runtime.RunOptions(batch=True), "batch must be an integer ≥ 1"),
    (lambda: runtime.Condition(guidance=-1.0), "finite number ≥ 0"),
    (lambda: runtime.Condition(0, guide=object()), "needs a guidance scale"),
])
def test_run_options_and_conditions_are_checked_when_made(make, match):
    with pytest.raises(EdgediffError, match=match):
        make()


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_an_unconditional_run_does_not_inherit_the_last_calls_labels(tmp_path, engine):
    """A backend keeps one binding per batch size; an unconditional run binding the
    size a labelled call used last must still feed the null label (found serving:
    an unconditional sample after a class-0 call came out as class 0)."""
    if engine == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed")
    from edgediff.export.onnx import ExportOptions, export_source

    path = tmp_path / "cond.onnx"
    export_source("mixture2d-cond", path, ExportOptions(validate=False))
    D = runtime.load(path, engine=engine)
    before = runtime.sample(D, 2, seed=0, solver="euler", steps=4)
    D(np.zeros((2, 2), np.float32), np.ones(2, np.float32), class_labels=[0, 0])
    after = runtime.sample(D, 2, seed=0, solver="euler", steps=4)
    np.testing.assert_array_equal(after, before)
    labelled = runtime.sample(D, 2, seed=0, solver="euler", steps=4,
                              condition=runtime.Condition(labels=[0, 0]))
    assert np.abs(labelled - before).max() > 0.1  # the labels matter: the check has teeth
