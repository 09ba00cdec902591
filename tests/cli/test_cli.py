"""What a user touches: every subcommand, good and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgediff import runtime
from edgediff.cli import _COMMANDS, main
from edgediff.tolerance import TrajectoryScale


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.extra("lab")
def test_sample_writes_npz_and_png_and_the_seed_fixes_the_samples(artifacts, tmp_path):
    a = run("sample", artifacts["digits"], "--num", 10, "--batch", 4, "--preset", "dpmpp-2m-10",
            "--threads", 1, "-o", tmp_path / "a")
    assert a.exit_code == 0, a.output
    b = run("sample", artifacts["digits"], "--num", 10, "--batch", 10, "--solver", "dpmpp_2m",
            "--steps", 10, "-o", tmp_path / "b")
    assert b.exit_code == 0, b.output
    with np.load(tmp_path / "a" / "samples.npz") as za, np.load(tmp_path / "b" / "samples.npz") \
            as zb:
        xa, xb, meta = za["samples"], zb["samples"], json.loads(str(za["meta"]))
    assert xa.shape == (10, 1, 8, 8)
    # batch-size invariant, to the float32 drift bound of this very trajectory
    scale = TrajectoryScale(1)
    runtime.sample(runtime.load(artifacts["digits"]), 10, solver="dpmpp_2m",
                   steps=10, run=runtime.RunOptions(batch=10, callback=scale))
    assert np.abs(xa - xb).max() <= scale.bound()
    assert meta["solver"] == "dpmpp_2m" and meta["steps"] == 10 and meta["seed"] == 0
    assert (tmp_path / "a" / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    c = run("sample", artifacts["digits"], "--num", 10, "--preset", "dpmpp-2m-10", "--seed", 1,
            "-o", tmp_path / "c")
    assert c.exit_code == 0, c.output
    with np.load(tmp_path / "c" / "samples.npz") as zc:
        assert np.abs(zc["samples"] - xb).max() > 0.1


@pytest.mark.extra("lab")
def test_sample_2d_model_writes_a_scatter_plot_and_takes_solver_knobs(artifacts, tmp_path):
    r = run("sample", artifacts["mixture"], "--num", 50, "--solver", "edm", "--steps", 20,
            "--s-churn", 10, "--s-tmin", 0.05, "--s-tmax", 10, "--s-noise", 1.003,
            "-o", tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "scatter.png").is_file()
    r = run("sample", artifacts["mixture"], "--num", 5, "--solver", "ddim", "--eta", 0.5,
            "-o", tmp_path)
    assert r.exit_code == 0, r.output


@pytest.mark.extra("lab")
def test_bench_prints_the_table_and_writes_csv_json_and_plots(artifacts, tmp_path):
    r = run("bench", artifacts["mixture"], "--solvers", "euler,heun", "--nfe", "5,9",
            "--num", 200, "--batch", 100, "--reference-steps", 20, "-o", tmp_path)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("run"))
    assert ["NFE", "ms/sample", "p90", "samples/s"] == lines[header].split()[2:6]
    table = lines[header + 1: header + 5]
    assert [row.split()[0] for row in table] == ["euler-5", "euler-9", "heun-3", "heun-5"]
    assert [int(row.split()[2]) for row in table] == [5, 9, 5, 9]
    data = json.loads((tmp_path / "bench.json").read_text())
    assert len(data["rows"]) == 4 and data["distance_floor"] > 0
    assert all(row["reference_rms"] > 0 and row["distance"] > 0 for row in data["rows"])
    assert (tmp_path / "bench.csv").read_text().startswith("label,solver,steps,nfe")
    for name in ("reference_rms_vs_nfe", "reference_rms_vs_latency", "distance_vs_nfe",
                 "distance_vs_latency"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


@pytest.mark.extra("lab")
def test_bench_suite_by_name_and_fid_skips_with_a_message(artifacts, tmp_path):
    r = run("bench", artifacts["digits"], "--suite", "quick", "--num", 8, "--batch", 8,
            "--reference-steps", 10, "--fid", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    assert ("FID skipped: torch-fidelity is not usable here" in r.output
            or "FID (torch-fidelity" in r.output)
    assert "FD floor" in r.output and "dpmpp_2m-19" in r.output


def test_info_on_onnx_shows_the_metadata(artifacts):
    r = run("info", artifacts["digits"])
    assert r.exit_code == 0, r.output
    assert "parameterization   edm" in r.output and '{"solver": "heun", "steps": 18}' in r.output
    r = run("info", artifacts["mixture"], "--json")
    assert json.loads(r.output)["edgediff.parameterization"] == "analytic"


def test_info_on_a_plan_shows_the_sidecar_and_whether_it_runs_here(artifacts, tmp_path):
    import onnxruntime as ort

    from edgediff.export.tensorrt import BuildSettings, make_sidecar, write_plan

    meta = ort.InferenceSession(str(artifacts["digits"])).get_modelmeta().custom_metadata_map
    side = make_sidecar(artifacts["digits"], meta, BuildSettings(fp16=True, max_batch=8),
                        "10.3.0", "NVIDIA Jetson AGX Orin", "8.7")
    plan = tmp_path / "digits.plan"
    write_plan(plan, b"not really an engine", side)
    r = run("info", plan)
    assert r.exit_code == 0, r.output
    assert "TensorRT 10.3.0 on NVIDIA Jetson AGX Orin (compute capability 8.7)" in r.output
    assert "min 1, opt 1, max 8" in r.output and "fp16" in r.output
    assert "runs here          no:" in r.output  # no TensorRT / no such GPU on a CI machine


def test_sampling_a_plan_without_tensorrt_names_the_extra(artifacts, tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    import onnxruntime as ort

    from edgediff.export.tensorrt import BuildSettings, make_sidecar, write_plan

    meta = ort.InferenceSession(str(artifacts["mixture"])).get_modelmeta().custom_metadata_map
    plan = tmp_path / "m.plan"
    write_plan(plan, b"engine", make_sidecar(artifacts["mixture"], meta, BuildSettings(),
                                             "10.3.0", "GPU", "8.9"))
    r = run("sample", plan, "-o", tmp_path / "out")
    assert r.exit_code == 1 and 'pip install "edgediff[trt]"' in r.output
    assert not (tmp_path / "out").exists()


def test_check_compares_onnx_with_its_torch_source(artifacts):
    r = run("check", artifacts["digits"])  # found by hash: the bundled model
    assert r.exit_code == 0, r.output
    assert "vs bundled (torch)" in r.output and "max abs" in r.output
    r = run("check", artifacts["mixture"], "--atol", 0, "--rtol", 0)
    assert r.exit_code == 1 and "does not match" in r.output  # zero tolerance: must fail


@pytest.mark.extra("lab")
def test_demo_runs_end_to_end(tmp_path):
    r = run("demo", "--num", 16, "--threads", 1, "-o", tmp_path)
    assert r.exit_code == 0, r.output
    assert "heun-18" in r.output and "FD floor" in r.output and "SW2 floor" in r.output
    for sub in ("mixture", "digits"):
        assert (tmp_path / sub / f"{sub}.onnx").is_file()
        assert (tmp_path / sub / "bench.json").is_file()
    assert (tmp_path / "digits" / "samples.png").is_file()
    assert (tmp_path / "mixture" / "scatter.png").is_file()
    assert "== digits-cd" in r.output and "2 steps: FD" in r.output
    assert (tmp_path / "digits-cd" / "samples.png").is_file()


@pytest.mark.parametrize("args,message", [
    (["sample", "nope.onnx"], "no such file"),
    (["sample", "{readme}"], "neither an .onnx file nor a TensorRT .plan"),
    (["sample", "{digits}", "--solver", "rk4"], "'rk4' is not one of"),
    (["sample", "{digits}", "--preset", "turbo"], "unknown preset 'turbo'; choose one of"),
    (["sample", "{digits}", "--steps", "-3"], "-3 is not in the range x>=1"),
    (["sample", "{digits}", "--solver", "heun", "--eta", "1"], "heun takes no option eta"),
    (["sample", "{digits}", "--solver", "unipc", "--order", "4"],
     "unipc: order = 4 is not allowed; it takes an integer from 1 to 3"),
    (["sample", "{digits}", "--solver", "deis", "--basis", "poly"], "'poly' is not one of"),
    (["sample", "{digits}", "--grid", "lambda", "--rho", "3"], "rho shapes ρ-grids"),
    (["sample", "{digits}", "-o", "/proc/edgediff-out"], "cannot create the output folder"),
    (["bench", "{digits}", "--solvers", "euler,rk4"], "unknown solver 'rk4'"),
    (["bench", "{digits}", "--suite", "huge"], "unknown bench suite 'huge'"),
    (["bench", "{digits}", "--nfe", "5,-1"], "--nfe must be integers ≥ 1"),
    (["info", "nope.onnx"], "does not exist"),
    (["check", "{readme}"], "neither an .onnx file nor a TensorRT .plan"),
    (["export", "bundled", "-o", "{digits}"], "exists; pass --force"),
    (["build", "{readme}", "-o", "x.plan"], "not an ONNX model"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(artifacts, tmp_path, args, message):
    readme = Path(__file__).parents[2] / "README.md"
    args = [a.format(digits=artifacts["digits"], readme=readme) for a in args]
    before = set(tmp_path.iterdir())
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code != 0
    assert message in r.output, r.output
    assert "Traceback" not in r.output
    assert r.output.count("Error") == 1
    assert set(tmp_path.iterdir()) == before


def test_presets_list_their_nfe_and_answer_to_their_aliases(artifacts, tmp_path):
    from edgediff.catalogue import nfe
    from edgediff.configs import preset, presets

    r = run("sample", "--list-presets")
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.output.splitlines()[1:]}
    assert set(rows) == set(presets())
    for name in presets():
        solver, steps, _ = preset(name)
        assert rows[name].split()[1] == str(nfe(solver, steps))
    assert "DPM++ 2M Karras" in rows["dpmpp-2m-10"]
    by_alias = run("sample", artifacts["digits"], "--preset", "DPM++ 2M Karras", "--num", 4,
                   "-o", tmp_path / "a")
    by_name = run("sample", artifacts["digits"], "--preset", "dpmpp-2m-10", "--num", 4,
                  "-o", tmp_path / "b")
    assert by_alias.exit_code == 0 and by_name.exit_code == 0, by_alias.output
    a, b = (np.load(tmp_path / d / "samples.npz")["samples"] for d in "ab")
    assert np.array_equal(a, b)


def test_sample_takes_the_grid_and_the_new_solvers_options(artifacts, tmp_path):
    for i, args in enumerate([("--solver", "unipc", "--order", 2, "--grid", "lambda"),
                              ("--solver", "deis", "--basis", "log_rho", "--grid", "time"),
                              ("--solver", "euler_ancestral", "--eta", 0.5)]):
        r = run("sample", artifacts["digits"], *args, "--steps", 6, "--num", 4,
                "-o", tmp_path / str(i))
        assert r.exit_code == 0, r.output
        settings = np.load(tmp_path / str(i) / "samples.npz", allow_pickle=False)
        assert np.all(np.isfinite(settings["samples"]))


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_every_subcommand_has_help_with_an_example(name):
    r = run(name, "--help")
    assert r.exit_code == 0
    assert "Example" in r.output


def test_the_installed_executable_samples_and_fails_cleanly(artifacts, tmp_path):
    exe = Path(sys.executable).with_name("edgediff")
    if not exe.exists():
        pytest.skip("edgediff is not installed as an executable in this environment")
    ok = subprocess.run([exe, "sample", artifacts["mixture"], "--num", "8", "-o", tmp_path],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout
    bad = subprocess.run([exe, "sample", artifacts["mixture"], "--preset", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and bad.stderr.startswith("Error: unknown preset")
    assert "Traceback" not in bad.stderr


def test_metadata_file_overrides_the_artifacts_own(artifacts, tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"default_solver": {"solver": "dpmpp_2m", "steps": 7}}))
    r = run("sample", artifacts["mixture"], "--num", 4, "--metadata", meta, "-o", tmp_path / "s")
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "s" / "samples.npz") as z:
        used = json.loads(str(z["meta"]))
    assert (used["solver"], used["steps"]) == ("dpmpp_2m", 7)
    meta.write_text("{not json")
    r = run("sample", artifacts["mixture"], "--metadata", meta)
    assert r.exit_code == 1 and "cannot read --metadata" in r.output


@pytest.mark.parametrize("key,value", [("sigma_data", "-1"), ("sample_shape", "[0]"),
                                       ("default_solver", '{"solver": "ddim", "eta": 9}'),
                                       ("format_version", "99")])
def test_a_hand_edited_artifact_is_refused_by_info_and_load_in_one_line(artifacts, tmp_path,
                                                                        key, value):
    import onnx

    from edgediff.errors import EdgediffError

    model = onnx.load(artifacts["mixture"])
    for prop in model.metadata_props:
        if prop.key == f"edgediff.{key}":
            prop.value = value
    edited = tmp_path / "edited.onnx"
    onnx.save(model, edited)
    for json_flag in ([], ["--json"]):
        r = run("info", edited, *json_flag)
        assert r.exit_code == 1
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and f"edgediff.{key} = " in lines[0] and "not allowed" in lines[0]
    with pytest.raises(EdgediffError, match=f"edgediff.{key} = "):
        runtime.load(edited)


WITHOUT_LAB = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('matplotlib', 'PIL'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from edgediff.cli import main
main(sys.argv[1:])
"""


def test_without_the_lab_extra_bench_says_how_and_sample_still_samples(artifacts, tmp_path):
    """The deploy install (edgediff[cpu]) has no matplotlib or Pillow: bench stops
    before any work with the install line; sample writes samples.npz and says how to
    get the figure."""
    def cli(*args):
        return subprocess.run([sys.executable, "-c", WITHOUT_LAB, *map(str, args)],
                              capture_output=True, text=True, timeout=300)

    res = cli("bench", artifacts["mixture"], "--nfe", 5, "-o", tmp_path / "b")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert 'pip install "edgediff[lab]"' in res.stderr and "running" not in res.stderr
    assert not (tmp_path / "b").exists()
    res = cli("sample", artifacts["mixture"], "--num", 8, "-o", tmp_path / "s")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["samples.npz"]
    assert 'no figure: matplotlib is not installed' in res.stderr
