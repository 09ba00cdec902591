"""A failed run leaves nothing behind: ``sample``, ``bench`` and ``demo`` write into
a temporary sibling folder that takes its place only when the whole run has
succeeded. Stopped by a non-finite denoiser, bad metadata, a bug, or Ctrl-C, a
run leaves neither its output folder nor any file, and an existing output
folder keeps exactly what it had."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgediff.cli import main

onnx = pytest.importorskip("onnx")
EXE = Path(sys.executable).with_name("edgediff")
META = {"parameterization": "edm", "schedule": {"name": "edm", "sigma_min": 0.002,
                                                "sigma_max": 80.0, "rho": 7.0},
        "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 1.0, "sample_shape": [2],
        "data_range": [-3, 3]}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def listing(folder: Path) -> list[str]:
    """Everything under ``folder``, hidden temporaries included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    """A graph that follows the contract but returns NaN: D = x·sqrt(−σ²)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2])
    s = helper.make_tensor_value_info("sigma", TensorProto.FLOAT, ["b"])
    y = helper.make_tensor_value_info("denoised", TensorProto.FLOAT, ["b", 2])
    nodes = [helper.make_node("Mul", ["sigma", "sigma"], ["s2"]),
             helper.make_node("Neg", ["s2"], ["neg"]),
             helper.make_node("Sqrt", ["neg"], ["root"]),
             helper.make_node("Unsqueeze", ["root", "axis"], ["r2"]),
             helper.make_node("Mul", ["x", "r2"], ["denoised"])]
    inits = [helper.make_tensor("axis", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, "nan", [x, s], [y], inits)
    folder = tmp_path_factory.mktemp("nan")
    path = folder / "nan.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    meta = folder / "meta.json"
    meta.write_text(json.dumps(META))
    return path, meta


@pytest.mark.parametrize("command",
                         ["sample", pytest.param("bench", marks=pytest.mark.extra("lab"))])
def test_a_non_finite_denoiser_leaves_nothing(nan_model, tmp_path, command):
    path, meta = nan_model
    extra = ["--num", 4] if command == "sample" else ["--num", 4, "--nfe", 5]
    r = run(command, path, "--metadata", meta, *extra, "-o", tmp_path / "out")
    assert r.exit_code == 1 and "NaN/Inf" in r.output and "Traceback" not in r.output
    assert listing(tmp_path) == []


@pytest.mark.parametrize("command", ["sample", "bench"])
def test_bad_metadata_leaves_nothing_and_names_the_key(nan_model, tmp_path, command):
    path, _ = nan_model
    meta = tmp_path / "bad.json"
    meta.write_text(json.dumps({**META, "sigma_min": 100.0}))
    r = run(command, path, "--metadata", meta, "-o", tmp_path / "out")
    assert r.exit_code == 1
    assert "edgediff.sigma_min = 100.0 and edgediff.sigma_max = 80.0" in r.output
    assert listing(tmp_path) == ["bad.json"]


def test_a_failed_run_keeps_an_existing_output_folder_as_it_was(nan_model, tmp_path):
    path, meta = nan_model
    out = tmp_path / "out"
    out.mkdir()
    (out / "samples.npz").write_bytes(b"an earlier run")
    r = run("sample", path, "--metadata", meta, "--num", 4, "-o", out)
    assert r.exit_code == 1
    assert listing(tmp_path) == ["out", "out/samples.npz"]
    assert (out / "samples.npz").read_bytes() == b"an earlier run"


@pytest.mark.extra("lab")
def test_a_successful_run_into_an_existing_folder_replaces_its_files(artifacts, tmp_path):
    out = tmp_path / "a" / "b"  # parents are made only on success
    assert run("sample", artifacts["mixture"], "--num", 4, "-o", out).exit_code == 0
    first = (out / "samples.npz").read_bytes()
    (out / "notes.txt").write_text("mine")
    r = run("sample", artifacts["mixture"], "--num", 4, "--seed", 1, "-o", out)
    assert r.exit_code == 0 and f"wrote {out / 'samples.npz'}" in r.output
    assert (out / "samples.npz").read_bytes() != first
    assert listing(tmp_path) == ["a", "a/b", "a/b/notes.txt", "a/b/samples.npz",
                                 "a/b/scatter.png"]


def test_a_bug_midway_through_writing_leaves_nothing(artifacts, tmp_path, monkeypatch):
    import edgediff.lab.outputs as outputs

    real = outputs.write_samples

    def half_written(folder, *args, **kwargs):
        real(folder, *args, **kwargs)  # every file written ...
        raise RuntimeError("a bug after the files")  # ... then the run fails

    monkeypatch.setattr(outputs, "write_samples", half_written)
    r = run("sample", artifacts["mixture"], "--num", 4, "-o", tmp_path / "out")
    assert isinstance(r.exception, RuntimeError)  # bugs keep their traceback
    assert listing(tmp_path) == []


@pytest.mark.extra("lab")
def test_a_demo_that_fails_after_exporting_leaves_nothing(tmp_path, monkeypatch):
    import edgediff.lab.bench

    def broken(*args, **kwargs):
        raise RuntimeError("the solver lab broke")

    monkeypatch.setattr(edgediff.lab.bench, "run_bench", broken)
    r = run("demo", "-o", tmp_path / "demo")
    assert isinstance(r.exception, RuntimeError)
    assert "export mixture2d" in r.output  # it got as far as writing an ONNX file
    assert listing(tmp_path) == []


def _interrupt(args: list, parent: Path, after: float) -> subprocess.CompletedProcess:
    """Start ``edgediff args``, wait until its temporary output folder exists (and
    ``after`` seconds more), then press Ctrl-C (SIGINT)."""
    # A process started in the background without job control inherits SIGINT as
    # ignored (and Python then keeps it ignored): give the child the default, as a
    # terminal would, so the test does not depend on how pytest itself was started.
    proc = subprocess.Popen([EXE, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".") for p in parent.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)
    time.sleep(after)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()  # leave no orphan behind a failed test
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.skipif(not EXE.exists(), reason="edgediff is not installed as an executable")
@pytest.mark.parametrize("command", ["sample", *(pytest.param(c, marks=pytest.mark.extra("lab"))
                                                for c in ("bench", "demo"))])
def test_ctrl_c_leaves_nothing(artifacts, tmp_path, command):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    args = {"sample": ["sample", artifacts["digits"], "--solver", "ddpm", "--steps", 1000,
                       "--num", 4096, "--batch", 64],
            "bench": ["bench", artifacts["digits"], "--solvers", "ddpm", "--steps", 1000,
                      "--num", 4096],
            "demo": ["demo"]}[command]
    # demo: past its first imports (a Ctrl-C inside a compiled module's import is
    # reported by that module, not as "Aborted"), while it is exporting and sampling
    res = _interrupt([*args, "-o", out], work, after=5.0 if command == "demo" else 1.0)
    assert res.returncode != 0 and "Aborted" in res.stderr + res.stdout
    assert listing(work) == []
