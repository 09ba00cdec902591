"""Conditioning from the command line: export, info, sample --class/--guidance/--guide,
bench --guidance; bad input is one line and writes nothing."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgediff.cli import main
from edgediff.mixture import default_mixture_2d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def cond(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cond-cli")
    out = {}
    for name, extra in (("plain", []), ("cfg", ["--guidance"])):
        path = folder / f"{name}.onnx"
        r = run("export", "mixture2d-cond", "-o", path, *extra)
        assert r.exit_code == 0, r.output
        out[name] = path
    return out


def test_info_shows_the_conditioning(cond, artifacts):
    r = run("info", cond["cfg"])
    assert "3 classes (0…2), null label 3; guidance input" in r.output
    assert "none (unconditional)" in run("info", artifacts["mixture"]).output


@pytest.mark.parametrize("form", ["plain", "cfg"])
def test_sample_every_class_with_guidance(cond, tmp_path, form):
    r = run("sample", cond[form], "--class", "all", "--num", 40, "--guidance", 2,
            "--solver", "heun", "--steps", 10, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "out" / "samples.npz") as z:
        x, labels, meta = z["samples"], z["labels"], json.loads(str(z["meta"]))
    assert labels.tolist() == [0] * 40 + [1] * 40 + [2] * 40 and meta["guidance"] == 2
    assert np.all(default_mixture_2d().responsibilities(x).argmax(1) == labels)


def test_the_two_guidance_forms_give_the_same_samples(cond, tmp_path):
    outs = []
    for form in ("plain", "cfg"):
        r = run("sample", cond[form], "--class", "0,2", "--num", 8, "--guidance", 3,
                "-o", tmp_path / form)
        assert r.exit_code == 0, r.output
        with np.load(tmp_path / form / "samples.npz") as z:
            outs.append(z["samples"])
    assert np.abs(outs[0] - outs[1]).max() < 1e-3  # float32 round-off of two launch shapes


def test_autoguidance_takes_a_matching_guide(cond, tmp_path):
    r = run("sample", cond["plain"], "--class", 1, "--num", 8, "--guidance", 2, "--guide",
            cond["plain"], "-o", tmp_path / "auto")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args,says", [
    (["{mixture}", "--class", "0"], "this model is not class-conditional"),
    (["{plain}", "--class", "7"], "class label 7 is out of range"),
    (["{plain}", "--class", "one"], "--class takes an id"),
    (["{mixture}", "--guidance", "2"], "needs a class-conditional model"),
    (["{plain}", "--class", "0", "--guidance", "-1"], "-1.0 is not in the range x>=0"),
    (["{plain}", "--class", "0", "--guidance", "2", "--guide", "{digits}"],
     "the guiding model does not match"),
    (["{plain}", "--class", "0", "--guidance", "2", "--guide", "{cfg}"],
     "export it without --guidance"),
    (["{plain}", "--class", "0", "--guidance-interval", "0.1", "1"], "needs a guidance scale"),
    (["{plain}", "--class", "0", "--guidance", "2", "--guidance-interval", "3", "1"],
     "0 ≤ LO < HI"),
])
def test_bad_conditioning_is_one_line_and_writes_nothing(cond, artifacts, tmp_path, args,
                                                         says):
    paths = {**{k: str(v) for k, v in artifacts.items()}, **{k: str(v) for k, v in cond.items()}}
    r = run("sample", *[a.format(**paths) for a in args], "-o", tmp_path / "out")
    assert r.exit_code != 0 and says in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "out").exists()


def test_sample_and_generate_guide_in_an_interval(cond, tmp_path):
    """--guidance-interval reaches the samples through sample and generate alike, and
    is recorded with them; it lies between full guidance and none."""
    common = ["--class", "0,1", "--num", 4, "--solver", "heun", "--steps", 8, "--seed", 1]
    got = {}
    for tag, extra in (("full", ["--guidance", 4]), ("none", ["--guidance", 1]),
                       ("part", ["--guidance", 4, "--guidance-interval", 0.1, 2.0])):
        r = run("sample", cond["plain"], *common, *extra, "-o", tmp_path / tag)
        assert r.exit_code == 0, r.output
        with np.load(tmp_path / tag / "samples.npz") as z:
            got[tag], meta = z["samples"], json.loads(str(z["meta"]))
    assert meta["guidance_interval"] == [0.1, 2.0]
    assert np.abs(got["part"] - got["full"]).max() > 1e-3
    assert np.abs(got["part"] - got["none"]).max() > 1e-3
    r = run("generate", cond["plain"], "--class", "0,1", "--num", 4, "--solver", "heun",
            "--steps", 8, "--seed", 1, "--guidance", 4, "--guidance-interval", 0.1, 2.0,
            "-o", tmp_path / "gen")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "gen" / "manifest.json").read_text())
    assert manifest["job"]["guidance_interval"] == [0.1, 2.0]
    shard = np.concatenate([np.load(p) for p in sorted((tmp_path / "gen").glob("*samples*.npy"))])
    assert np.array_equal(shard, got["part"])


@pytest.mark.extra("lab")
def test_bench_sweeps_the_guidance_scale(cond, tmp_path):
    r = run("bench", cond["cfg"], "--solvers", "heun", "--nfe", 19, "--guidance", "0,1,3",
            "--num", 300, "--batch", 300, "-o", tmp_path)
    assert r.exit_code == 0, r.output
    assert "label acc" in r.output and "heun-10 w=3" in r.output
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    acc = {row["guidance"]: row["label_accuracy"] for row in rows}
    assert acc[0.0] < 0.6 < 0.95 < acc[1.0]  # unconditional vs conditional
    assert (tmp_path / "label_accuracy_vs_guidance.png").stat().st_size > 1000


def test_bench_guidance_needs_a_conditional_model(artifacts, tmp_path):
    r = run("bench", artifacts["mixture"], "--guidance", "1,2", "-o", tmp_path / "b")
    assert r.exit_code == 1 and "needs a class-conditional model" in r.output
