"""TensorRT build planning, sidecars and compatibility checks run everywhere; the
engine build itself is marked `trt` and skips without TensorRT + CUDA."""

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgediff.cli import main
from edgediff.errors import EdgediffError
from edgediff.export.tensorrt import BuildSettings, make_sidecar, plan_profile, write_plan
from edgediff.fileio import sha256_of
from edgediff.graph import GraphInput
from edgediff.plan import (
    check_compatible,
    check_plan_bytes,
    profile_batch_range,
    read_sidecar,
    sidecar_path,
)

pytest.importorskip("onnx", reason="onnx is not installed")


@pytest.fixture(scope="module")
def mixture_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "mixture.onnx"
    r = CliRunner().invoke(main, ["export", "mixture2d", "-o", str(out), "--no-validate"])
    assert r.exit_code == 0, r.output
    import onnx

    return out, {p.key: p.value for p in onnx.load(out).metadata_props}


def test_profile_covers_min_opt_max_batches():
    inputs = (GraphInput("x", "float32", (1, 8, 8)), GraphInput("sigma", "float32"))
    prof = plan_profile(inputs, BuildSettings(min_batch=1, opt_batch=4, max_batch=16))
    assert prof["x"] == ((1, 1, 8, 8), (4, 1, 8, 8), (16, 1, 8, 8))
    assert prof["sigma"] == ((1,), (4,), (16,))


@pytest.mark.parametrize("kw,match", [
    ({"min_batch": 4, "opt_batch": 2}, "min ≤ opt ≤ max"),
    ({"opt_batch": 32}, "min ≤ opt ≤ max"),
    ({"min_batch": 0}, "min ≤ opt ≤ max"),
    ({"workspace_mib": 8}, "too small"),
])
def test_bad_build_settings(kw, match):
    with pytest.raises(EdgediffError, match=match):
        BuildSettings(**kw)


def test_sidecar_records_source_build_and_metadata(mixture_onnx):
    path, meta = mixture_onnx
    s = BuildSettings(opt_batch=8, max_batch=64, fp16=True, workspace_mib=256)
    side = make_sidecar(path, meta, s, "10.3.0", "NVIDIA Orin", "8.7")
    assert side["onnx_sha256"] == sha256_of(path)
    assert side["metadata"]["edgediff.parameterization"] == "analytic"
    assert side["precision"] == ["fp16", "tf32"]
    assert side["profiles"][0]["x"] == [[1, 2], [8, 2], [64, 2]]
    assert side["settings"]["workspace_mib"] == 256
    json.dumps(side)


def test_plan_and_sidecar_written_together_and_read_back(tmp_path, mixture_onnx):
    path, meta = mixture_onnx
    side = make_sidecar(path, meta, BuildSettings(), "10.3.0", "GPU", "8.9")
    plan = tmp_path / "m.plan"
    write_plan(plan, b"engine bytes", side)
    back = read_sidecar(plan)
    assert plan.read_bytes() == b"engine bytes"
    assert back == {**side, "plan_sha256": hashlib.sha256(b"engine bytes").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.plan", "m.plan.json"]
    check_plan_bytes(back, plan.read_bytes())
    with pytest.raises(EdgediffError, match="altered or swapped"):
        check_plan_bytes(back, b"engine bytes, patched")
    with pytest.raises(EdgediffError, match="altered or swapped"):
        check_plan_bytes(side, b"engine bytes")  # a sidecar without the hash: refused
    assert profile_batch_range(back) == (1, 16)


def test_compatibility(tmp_path, mixture_onnx):
    path, meta = mixture_onnx
    side = make_sidecar(path, meta, BuildSettings(), "10.3.0", "NVIDIA H100", "9.0")
    check_compatible(side, "10.3.0", "9.0")
    rebuild = r"TensorRT 10\.3\.0 built it.*10\.4\.0.*edgediff build"
    with pytest.raises(EdgediffError, match=rebuild):
        check_compatible(side, "10.4.0", "9.0", "m.plan")
    with pytest.raises(EdgediffError, match=r"compute capability 9\.0 \(NVIDIA H100\).*8\.7"):
        check_compatible(side, "10.3.0", "8.7")


def test_sidecar_problems(tmp_path):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    with pytest.raises(EdgediffError, match="no sidecar"):
        read_sidecar(plan)
    sidecar_path(plan).write_text("{nope")
    with pytest.raises(EdgediffError, match="not readable JSON"):
        read_sidecar(plan)
    sidecar_path(plan).write_text(json.dumps({"format": "edgediff.plan", "format_version": 9}))
    with pytest.raises(EdgediffError, match="upgrade edgediff"):
        read_sidecar(plan)


def one_line(r, match):
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and match in lines[0], r.output


def test_build_cli_bad_input(tmp_path, mixture_onnx):
    path, _ = mixture_onnx
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not onnx")
    one_line(CliRunner().invoke(main, ["build", str(junk), "-o", str(tmp_path / "a.plan")]),
             "not an ONNX model")
    import onnx

    bare = onnx.load(path)
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    one_line(CliRunner().invoke(main, ["build", str(tmp_path / "bare.onnx"), "-o",
                                       str(tmp_path / "b.plan")]), "edgediff export")
    one_line(CliRunner().invoke(main, ["build", str(path), "-o", str(tmp_path / "no" / "c.plan")]),
             "folder does not exist")
    one_line(CliRunner().invoke(main, ["build", str(path), "-o", str(tmp_path / "d.plan"),
                                       "--opt-batch", "64"]), "min ≤ opt ≤ max")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.onnx", "junk.onnx"]


def test_build_without_tensorrt_names_the_extra(tmp_path, mixture_onnx):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here; this checks the message for its absence")
    except ImportError:
        pass
    path, _ = mixture_onnx
    r = CliRunner().invoke(main, ["build", str(path), "-o", str(tmp_path / "m.plan")])
    one_line(r, 'pip install "edgediff[trt]"')
    assert list(tmp_path.iterdir()) == []


def _trt_and_cuda():
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError as e:
        return f"needs TensorRT and torch with CUDA ({e.name} is not installed)"
    return None if torch.cuda.is_available() else "needs a CUDA GPU (none found)"


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(_trt_and_cuda() is not None, reason=str(_trt_and_cuda()))
def test_engine_builds_and_matches_onnxruntime(tmp_path, mixture_onnx):
    import tensorrt as trt
    import torch

    from edgediff.export.tensorrt import build_engine

    path, meta = mixture_onnx
    # fp32 without TF32 (whose 10-bit mantissa would need its own, 8000× looser, bound)
    engine_bytes, _ = build_engine(path, meta, BuildSettings(max_batch=8, tf32=False))
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
    ctx = engine.create_execution_context()
    x = torch.randn(5, 2, device="cuda") * 3
    s = torch.linspace(0.01, 50, 5, device="cuda")
    y = torch.empty_like(x)
    for name, t in (("x", x), ("sigma", s), ("denoised", y)):
        if name != "denoised":
            ctx.set_input_shape(name, tuple(t.shape))
        ctx.set_tensor_address(name, t.data_ptr())
    assert ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ref,) = sess.run(None, {"x": x.cpu().numpy(), "sigma": s.cpu().numpy()})
    # each float32 evaluation is within the mixture's conditioning bound of the exact D
    from edgediff.mixture import GaussianMixture
    from edgediff.tolerance import mixture_denoiser_bound

    mixture = GaussianMixture.from_dict(json.loads(meta["edgediff.reference"])["mixture"])
    bound = 2 * mixture_denoiser_bound(mixture, x.cpu().numpy(), s.cpu().numpy())
    assert np.all(np.abs(y.cpu().numpy() - ref).max(axis=1) <= bound)


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(_trt_and_cuda() is not None, reason=str(_trt_and_cuda()))
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_the_plan_samples_like_onnxruntime(tmp_path, mixture_onnx, cuda_graph):
    """The whole runtime on a plan, across a batch-size change (8 then 3), with
    and without CUDA graphs, against the same run on ONNX Runtime (CPU)."""
    from edgediff import runtime
    from edgediff.export.tensorrt import build_engine

    path, meta = mixture_onnx
    from edgediff.tolerance import TrajectoryScale

    engine_bytes, side = build_engine(path, meta, BuildSettings(max_batch=8, tf32=False))
    plan = tmp_path / "m.plan"
    write_plan(plan, engine_bytes, side)
    with runtime.load(plan, cuda_graph=cuda_graph) as D:
        got = runtime.sample(D, 11, seed=3, solver="heun", steps=18,
                             run=runtime.RunOptions(batch=8))
    ort_D = runtime.load(path)
    scale = TrajectoryScale(2, ort_D.info.data_range)  # Heun: 2 calls a step
    want = runtime.sample(ort_D, 11, seed=3, solver="heun", steps=18,
                          run=runtime.RunOptions(batch=8, callback=scale))
    assert np.abs(got - want).max() <= scale.bound()


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(_trt_and_cuda() is not None, reason=str(_trt_and_cuda()))
def test_an_int8_qdq_graph_builds_in_int8_and_samples_like_onnxruntime(tmp_path):
    """`edgediff export --int8 --int8-target tensorrt` then `edgediff build`: the plan
    is built with INT8 (explicit quantization, recorded in the sidecar) and samples
    within the int8 export's own tolerance of ONNX Runtime on the same QDQ graph."""
    from edgediff import runtime
    from edgediff.export.int8 import Int8Options
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.export.quantize import INT8_TOLERANCE
    from edgediff.models.loader import resolve_source
    from edgediff.plan import read_sidecar

    model, digest = resolve_source("bundled")
    onnx_path, plan = tmp_path / "d8.onnx", tmp_path / "d8.plan"
    export_onnx(model, onnx_path, ExportOptions(int8=Int8Options(calibration=8, target="tensorrt")),
                source_sha256=digest)
    r = CliRunner().invoke(main, ["build", str(onnx_path), "-o", str(plan), "--max-batch", "8"])
    assert r.exit_code == 0, r.output
    assert "int8" in read_sidecar(plan)["precision"]
    trt_x = runtime.sample(runtime.load(plan), 8, seed=0, run=runtime.RunOptions(batch=8))
    ort_x = runtime.sample(runtime.load(onnx_path), 8, seed=0, run=runtime.RunOptions(batch=8))
    # two int8 implementations of one QDQ graph round differently inside; the
    # end-to-end bound is the one the export itself accepts against fp32
    assert np.sqrt(np.mean((trt_x - ort_x) ** 2)) <= INT8_TOLERANCE
