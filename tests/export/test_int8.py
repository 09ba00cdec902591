"""export --int8: a QDQ graph calibrated on the model's own trajectories, with the
preconditioning and noise embedding in float32, validated per σ and end to end;
and the TensorRT decisions for explicitly quantized graphs."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgediff import runtime
from edgediff.cli import main
from edgediff.errors import EdgediffError
from edgediff.export.quantize import (
    KEEP_FLOAT,
    QUANTIZED_OPS,
    calibration_inputs,
    kept_float,
    quantize,
)
from edgediff.export.tensorrt import BuildSettings, graph_qdq, precision_flags, qdq_mode


@pytest.fixture(scope="module")
def bundled():
    from edgediff.models.loader import resolve_source

    return resolve_source("bundled")


@pytest.fixture(scope="module")
def fp32(tmp_path_factory, bundled):
    from edgediff.export.onnx import ExportOptions, export_onnx

    path = tmp_path_factory.mktemp("fp32") / "digits.onnx"
    export_onnx(bundled[0], path, ExportOptions(validate=False), source_sha256=bundled[1])
    return path


@pytest.fixture(scope="module", params=["onnxruntime", "tensorrt"])
def int8(request, tmp_path_factory, bundled):
    from edgediff.export.int8 import Int8Options
    from edgediff.export.onnx import ExportOptions, export_onnx

    path = tmp_path_factory.mktemp("int8") / f"digits-{request.param}.onnx"
    result = export_onnx(bundled[0], path, ExportOptions(int8=Int8Options(
        calibration=8, target=request.param)), source_sha256=bundled[1])
    return path, result, request.param


def test_the_int8_graph_quantizes_the_network_and_keeps_the_rest_float32(int8):
    path, result, target = int8
    graph = onnx.load(str(path)).graph
    producers = {o: n for n in graph.node for o in n.output}

    weights = {t.name for t in graph.initializer}

    def dequantized(name):  # an int8 weight initializer, scaled back by DequantizeLinear
        p = producers.get(name)
        return p is not None and p.op_type == "DequantizeLinear" and p.input[0] in weights
    # an op runs in int8 when its weight is an int8 initializer behind a DequantizeLinear
    quantized = [n for n in graph.node if len(n.input) > 1 and dequantized(n.input[1])]
    kinds = {n.op_type for n in quantized}
    assert kinds and kinds <= set(QUANTIZED_OPS), kinds
    assert sum(n.op_type == "Conv" for n in quantized) >= 30  # the U-Net's convolutions
    # the noise embedding's Gemms stay float32 (weights as plain initializers), and
    # nothing but Conv/Gemm/MatMul takes int8 weights: c_skip, c_out, c_in and the
    # σ → c_noise map are elementwise ops on float32 tensors
    embedding = [n for n in graph.node if n.op_type == "Gemm" and "map_noise" in n.name]
    assert embedding and not any(dequantized(n.input[1]) for n in embedding)
    assert not any(k in n.name for n in quantized for k in KEEP_FLOAT)
    # same inputs and output as a float32 export
    assert [i.name for i in graph.input] == ["x", "sigma"]
    assert [o.name for o in graph.output] == ["denoised"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert result.ok and result.worst[1] <= result.limit
    if target == "tensorrt":  # symmetric int8 throughout, as TensorRT requires
        assert graph_qdq(path)
        assert all(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer
                   if t.name.endswith("zero_point"))
    else:  # uint8 activations for ONNX Runtime's U8S8 kernels: not for TensorRT
        with pytest.raises(EdgediffError, match="--int8-target tensorrt"):
            graph_qdq(path)


def test_the_metadata_records_precision_and_calibration(int8):
    path, result, target = int8
    D = runtime.load(path)
    assert D.info.precision == "int8"
    cal = D.info.calibration
    assert cal["method"] == "trajectory" and cal["samples"] == 8 and cal["target"] == target
    assert cal["calls"] == result.calls == 35  # one batch of 8, Heun 18 = 35 NFE
    assert cal["solver"] == {"solver": "heun", "steps": 18}
    kept = cal["float32_nodes"]
    assert any("map_noise" in n for n in kept) and any("/skip/" in n for n in kept)
    assert all(any(k in n for k in KEEP_FLOAT) for n in kept)
    x = runtime.sample(D, 8, seed=0)
    assert np.all(np.isfinite(x)) and x.std() > 0.1


def test_trajectory_calibration_covers_every_noise_level(fp32):
    info = runtime.load(fp32).info
    calls = calibration_inputs(fp32, info, 4)
    sigmas = sorted({float(c["sigma"][0]) for c in calls})
    assert len(calls) == 35 and len(sigmas) == 18  # every Heun call: the 18 grid σ
    assert sigmas[-1] == pytest.approx(info.sigma_max, rel=1e-6)
    assert sigmas[0] == pytest.approx(info.sigma_min, rel=1e-6)
    noise = calibration_inputs(fp32, info, 4, "noise")
    s = np.concatenate([c["sigma"] for c in noise])
    assert len(noise) == 35 and s.min() >= info.sigma_min and s.max() <= info.sigma_max
    assert len(np.unique(s)) > 100  # random σ per sample
    single = calibration_inputs(fp32, info, 4, "single_sigma")
    one = {float(c["sigma"][0]) for c in single}
    assert len(single) == 35 and len(one) == 1
    assert abs(np.log(one.pop() / info.sigma_data)) < 1.0


def test_calibration_that_gives_non_finite_ranges_is_refused(fp32, tmp_path):
    from onnx import TensorProto, helper

    from edgediff.export.quantize import check_ranges

    info = runtime.load(fp32).info
    calls = calibration_inputs(fp32, info, 2)
    calls[3] = {**calls[3], "x": np.full_like(calls[3]["x"], np.inf)}
    with pytest.raises(EdgediffError, match="NaN/Inf"):
        quantize(fp32, tmp_path / "bad.onnx", calls)
    assert not (tmp_path / "bad.onnx").exists()
    # and a graph whose ranges came out non-finite or zero is refused after the fact
    for bad in (np.nan, np.inf, 0.0):
        scale = helper.make_tensor("a_scale", TensorProto.FLOAT, [1], [bad])
        graph = helper.make_graph([], "g", [], [], [scale])
        with pytest.raises(EdgediffError, match="non-finite or zero quantization ranges"):
            check_ranges(helper.make_model(graph))


@pytest.mark.parametrize("args,message", [
    (["bundled", "--int8", "--fp16"], "--int8 and --fp16 are two precisions"),
    (["mixture2d", "--int8"], "no network weights to quantize"),
    (["bundled", "--int8", "--calibration", "2", "--int8-tolerance", "1e-4"],
     "the int8 graph is too far from float32"),
])
def test_bad_int8_exports_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "out.onnx"
    r = CliRunner().invoke(main, ["export", *args, "-o", str(out)], catch_exceptions=False)
    assert r.exit_code != 0 and message in r.output, r.output
    assert "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_qdq_mode_accepts_symmetric_int8_and_refuses_the_rest():
    conv = [("Conv", "c")]
    qdq = [("QuantizeLinear", "q"), ("DequantizeLinear", "d"), ("Conv", "c")]
    assert not qdq_mode(conv, {})
    assert qdq_mode(qdq, {"zp": np.zeros(4, np.int8)})
    with pytest.raises(EdgediffError, match="uint8 zero"):
        qdq_mode(qdq, {"zp": np.zeros(4, np.uint8)})
    with pytest.raises(EdgediffError, match="int8 non-zero"):
        qdq_mode(qdq, {"zp": np.array([0, 3], np.int8)})


def test_an_int8_build_sets_the_int8_flag_and_records_it():
    from edgediff.export.tensorrt import make_sidecar  # noqa: F401 (the sidecar takes the list)

    assert precision_flags(BuildSettings(int8=True)) == ["tf32", "int8"]
    assert precision_flags(BuildSettings(int8=True, fp16=True, tf32=False)) == ["fp16", "int8"]
    assert "int8" not in precision_flags(BuildSettings())


def test_info_shows_an_int8_artifact(int8):
    r = CliRunner().invoke(main, ["info", str(int8[0]), "--json"])
    assert r.exit_code == 0, r.output
    meta = json.loads(r.output)
    text = json.dumps(meta)
    assert "int8" in text and "trajectory" in text


def test_kept_float_spares_embeddings_shortcuts_and_attention_products(tmp_path):
    """By name: the embeddings and the shortcut/first/last convolutions; by structure:
    MatMuls of two activations (QKᵀ and AV), whose quantization drags the softmax
    between them into int8; weight MatMuls stay quantizable."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["q"], name="/attn/to_q/MatMul"),
             helper.make_node("MatMul", ["q", "x"], ["s"], name="/attn/MatMul"),
             helper.make_node("Gemm", ["s", "w"], ["e"], name="/map_noise/Gemm"),
             helper.make_node("MatMul", ["e", "w"], ["y"], name="/block/proj/MatMul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [4, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [4, 4])], [w])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), path)
    assert kept_float(path) == ["/attn/MatMul", "/map_noise/Gemm"]


@pytest.mark.parametrize("options,message", [
    ({"calibration": 0}, "--calibration takes a number of samples ≥ 1"),
    ({"calibration": True}, "--calibration takes a number of samples ≥ 1"),
    ({"method": "random"}, "unknown calibration method 'random'"),
    ({"target": "openvino"}, "unknown int8 target 'openvino'"),
    ({"tolerance": 0.0}, "--int8-tolerance must be a positive number"),
])
def test_int8_options_are_checked_where_they_are_made(options, message):
    from edgediff.export.int8 import Int8Options
    from edgediff.export.onnx import ExportOptions
    from edgediff.export.quantize import INT8_TOLERANCE

    with pytest.raises(EdgediffError, match=message):
        Int8Options(**options)
    with pytest.raises(EdgediffError, match="two precisions"):
        ExportOptions(fp16=True, int8=Int8Options())
    assert Int8Options().tolerance == INT8_TOLERANCE
