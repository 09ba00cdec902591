"""--sigmas/--timesteps and the distilled presets from the command line: sample,
bench and generate step on exactly the σ's asked, record them, and refuse bad
lists in one line before anything is written."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgediff.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


SIGMAS = [80.0, 1.3823679566485092]


def test_sample_bench_and_generate_step_on_the_sigmas_asked(artifacts, tmp_path):
    m = artifacts["mixture"]
    r = run("sample", m, "--solver", "cm", "--sigmas", "80,1.3823679566485092", "--num", 8,
            "-o", tmp_path / "s")
    assert r.exit_code == 0, r.output
    assert "σ grid: 80, 1.38237 (asked)" in r.output
    with np.load(tmp_path / "s" / "samples.npz") as z:
        x, meta = z["samples"], json.loads(str(z["meta"]))
    assert meta["sigmas"] == [*SIGMAS, 0.0] and meta["steps"] == 2
    # the preset names the same list: the same samples
    r = run("sample", m, "--preset", "cd-imagenet64-2", "--no-clip", "--num", 8,
            "-o", tmp_path / "p")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "p" / "samples.npz")["samples"], x)
    # another second σ is another sample set: the list is really used
    r = run("sample", m, "--solver", "cm", "--sigmas", "80,5", "--num", 8, "-o", tmp_path / "o")
    assert np.abs(np.load(tmp_path / "o" / "samples.npz")["samples"] - x).max() > 1e-3

    r = run("generate", m, "--solver", "cm", "--sigmas", "80,1.3823679566485092", "--num", 8,
            "-o", tmp_path / "g")
    assert r.exit_code == 0, r.output
    job = json.loads((tmp_path / "g" / "manifest.json").read_text())["job"]
    assert job["sigmas"] == [*SIGMAS, 0.0]
    shards = sorted((tmp_path / "g").glob("*samples*.npy"))
    assert np.array_equal(np.concatenate([np.load(p) for p in shards]), x)

    r = run("bench", m, "--solvers", "cm,lcm", "--sigmas", "80,1.3823679566485092", "--num", 8,
            "--batch", 8, "-o", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert "cm-sigmas: σ's 80, 1.38237" in r.output and "lcm-sigmas" in r.output
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert [row["sigmas"] for row in rows] == [[*SIGMAS, 0.0]] * 2
    assert [row["steps"] for row in rows] == [2, 2]


@pytest.mark.parametrize("args,says", [
    (["--sigmas", "1,80"], "strictly decreasing"),
    (["--sigmas", "500,1"], "the model knows"),
    (["--sigmas", "80,1", "--steps", "3"], "--steps 3 but 2 σ's given"),
    (["--timesteps", "999,499"], "continuous 'edm' schedule"),
    (["--sigmas", "80,1", "--timesteps", "999"], "give one"),
])
def test_bad_lists_are_one_line_and_write_nothing(artifacts, tmp_path, args, says):
    r = run("sample", artifacts["mixture"], "--solver", "cm", *args, "-o", tmp_path / "out")
    assert r.exit_code != 0 and says in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "out").exists()


def test_bench_runs_a_teacher_beside_a_distilled_model(artifacts, tmp_path):
    """--teacher: both artifacts' runs in one table, bench.json and one figure, each
    row naming its model; a teacher of other samples is refused before any run."""
    m = artifacts["mixture"]
    r = run("bench", m, "--solvers", "cm", "--sigmas", "80,1.3823679566485092", "--num", 8,
            "--batch", 8, "--teacher", m, "--teacher-solvers", "heun", "--teacher-nfe", "3,5",
            "-o", tmp_path / "b")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert [(row["model"], row["solver"], row["nfe"]) for row in rows] == [
        ("mixture", "cm", 2), ("mixture", "heun", 3), ("mixture", "heun", 5)]
    assert "mixture: heun-3" in r.output and (tmp_path / "b" / "distance_vs_latency.png").is_file()
    r = run("bench", m, "--solvers", "cm", "--steps", 1, "--num", 8, "--teacher",
            artifacts["digits"], "-o", tmp_path / "x")
    assert r.exit_code != 0 and "does not describe the same samples" in r.output
    assert not (tmp_path / "x").exists()
