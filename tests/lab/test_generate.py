"""Sharded generation: the shards are the samples ``runtime.sample`` draws, the
moments stream exactly, and a run killed at any point and resumed ends with the
bytes of one never stopped."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgediff.errors import EdgediffError
from edgediff.lab.cluster import RayOptions
from edgediff.lab.generate import GenerateOptions, generate_artifact
from edgediff.lab.manifest import MANIFEST
from edgediff.lab.moments import mean_cov, moments, reference_moments
from edgediff.lab.shards import plan_shards

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def files(folder: Path) -> dict[str, bytes]:
    """Every file of a folder by name, with its bytes (no temp file may be left)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    pytest.importorskip("torch", reason="exporting needs torch")
    from edgediff.export.onnx import ExportOptions, export_source

    folder = tmp_path_factory.mktemp("gen-artifacts")
    out = {}
    for name, source in (("mixture", "mixture2d"), ("digits", "bundled"),
                         ("mixture-cond", "mixture2d-cond")):
        out[name] = folder / f"{name}.onnx"
        export_source(source, out[name], ExportOptions(validate=False))
    return out


@given(st.integers(1, 5000), st.integers(1, 700))
def test_shards_cover_every_sample_once_in_order(num, size):
    shards = plan_shards(num, size)
    assert shards[0].start == 0 and shards[-1].stop == num
    assert all(a.stop == b.start for a, b in itertools.pairwise(shards))
    assert all(0 < len(s) <= size for s in shards)
    names = [s.name("samples") for s in shards]
    assert names == sorted(names) and len(set(names)) == len(names)  # sort = sample order


def test_moments_add_and_give_mean_and_covariance():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((1000, 5)) * [1, 2, 3, 4, 5] + 7
    parts = moments(f[:123]) + moments(f[123:700]) + moments(f[700:])
    # float64 sums of 1000 terms of size ≤ ~(7+15)²: a few ulps of the largest total
    np.testing.assert_allclose(parts, moments(f), rtol=0, atol=1e3 * 500 * 2.0**-52 * 64)
    mean, cov, n = mean_cov(parts)
    assert n == 1000
    np.testing.assert_allclose(mean, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(f, rowvar=False), rtol=1e-9, atol=1e-9)


def test_the_mixture_moments_are_its_closed_form(artifacts):
    """The exact mixture's mean and covariance against 400k exact draws: each entry
    within 5 standard errors (its sampling spread, from the draws themselves)."""
    from edgediff import runtime
    from edgediff.mixture import GaussianMixture

    info = runtime.load(artifacts["mixture"]).info
    mean, cov, _ = reference_moments(info)
    x, _ = GaussianMixture.from_dict(info.reference["mixture"]).sample(
        400_000, np.random.default_rng(1))
    se_mean = x.std(0) / np.sqrt(len(x))
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se_mean)
    centered = x - x.mean(0)
    prods = centered[:, :, None] * centered[:, None, :]
    se_cov = prods.std(0) / np.sqrt(len(x))
    assert np.all(np.abs(np.cov(x, rowvar=False) - cov) < 5 * se_cov)


def test_the_shards_are_the_samples_runtime_sample_draws(artifacts, tmp_path):
    from edgediff import runtime

    m = generate_artifact(artifacts["mixture"], tmp_path / "g", GenerateOptions(
        num=300, shard_size=64, batch=32, seed=5, solver="heun", steps=6))
    got = np.concatenate([np.load(tmp_path / "g" / f"samples-{r['start']:08d}-{r['stop']:08d}.npy")
                          for r in m.shards.values()])
    want = runtime.sample(runtime.load(artifacts["mixture"]), 300, seed=5,
                          solver="heun", steps=6, run=runtime.RunOptions(batch=32))
    assert np.array_equal(got, want)  # shard size a multiple of the batch: same batches
    assert m.complete and [r["start"] for r in m.shards.values()] == [0, 64, 128, 192, 256]
    # the moments streamed from the shards are the moments of all the samples
    total = np.load(tmp_path / "g" / "features.npy")
    np.testing.assert_allclose(total, moments(want), rtol=1e-12, atol=1e-9)
    assert m.features["n"] == 300 and m.features["space"] == "points"
    saved = json.loads((tmp_path / "g" / MANIFEST).read_text())
    assert saved["complete"] and saved["job"]["artifact_sha256"] == m.job["artifact_sha256"]
    assert not [p for p in (tmp_path / "g").iterdir() if p.name.startswith(".")]


def test_digits_shards_with_images_and_fd(artifacts, tmp_path):
    m = generate_artifact(artifacts["digits"], tmp_path / "d", GenerateOptions(
        num=40, shard_size=16, batch=8, solver="euler", steps=4, images=True))
    names = set(files(tmp_path / "d"))
    assert {"samples-00000000-00000016.png", "samples-00000032-00000040.png",
            "features-00000016-00000032.npy", "features.npy", MANIFEST} <= names
    assert m.features["space"] == "digits-mlp-64" and m.features["frechet_distance"] > 0
    from PIL import Image

    with Image.open(tmp_path / "d" / "samples-00000000-00000016.png") as im:
        assert im.mode == "L" and im.width > 64


def test_class_conditional_shards_record_their_labels(artifacts, tmp_path):
    m = generate_artifact(artifacts["mixture-cond"], tmp_path / "c", GenerateOptions(
        num=20, shard_size=16, batch=8, classes="all", guidance=2.0, solver="euler", steps=4))
    labels = np.concatenate([np.load(tmp_path / "c" / n) for n in
                             ("labels-00000000-00000016.npy", "labels-00000016-00000032.npy",
                              "labels-00000032-00000048.npy", "labels-00000048-00000060.npy")])
    assert labels.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    assert m.job["classes"] == {"0": 20, "1": 20, "2": 20} and m.job["guidance"] == 2.0


def test_resume_redoes_a_damaged_shard_and_refuses_other_settings(artifacts, tmp_path):
    kw = dict(num=100, shard_size=32, batch=16, solver="euler", steps=5)
    generate_artifact(artifacts["mixture"], tmp_path / "g", GenerateOptions(**kw))
    before = files(tmp_path / "g")
    shard = tmp_path / "g" / "samples-00000032-00000064.npy"
    shard.write_bytes(shard.read_bytes()[:-4] + b"\0\0\0\0")   # bit rot in one shard
    (tmp_path / "g" / "features-00000064-00000096.npy").unlink()  # and a lost file
    with pytest.raises(EdgediffError, match="pass --resume"):
        generate_artifact(artifacts["mixture"], tmp_path / "g", GenerateOptions(**kw))
    redone = []
    generate_artifact(artifacts["mixture"], tmp_path / "g", GenerateOptions(resume=True, **kw),
                      progress=lambda item, done, total: redone.append(
                          getattr(item, "shard", None)))
    assert [s.start for s in redone if s is not None] == [32, 64]  # only those two
    assert files(tmp_path / "g") == before
    with pytest.raises(EdgediffError, match="seed differ"):
        generate_artifact(artifacts["mixture"], tmp_path / "g",
                          GenerateOptions(resume=True, seed=1, **kw))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(EdgediffError, match="not a generate folder"):
        generate_artifact(artifacts["mixture"], tmp_path / "other", GenerateOptions(**kw))


def test_a_run_killed_mid_way_and_resumed_gives_the_same_files(artifacts, tmp_path):
    """SIGKILL on the real command once a few shards are in, then --resume: the folder
    ends byte for byte as an uninterrupted run's."""
    args = [str(artifacts["digits"]), "--num", "480", "--shard-size", "16", "--batch", "16",
            "--solver", "heun", "--steps", "12", "--threads", "1", "--images"]
    cmd = [sys.executable, "-c", "from edgediff.cli import main; main()", "generate"]
    whole = subprocess.run(cmd + args + ["-o", str(tmp_path / "whole")], capture_output=True,
                           text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + args + ["-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait for at least three shards
            try:
                done = len(json.loads((out / MANIFEST).read_text())["shards"])
            except (OSError, ValueError):
                done = 0
            if done >= 3 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = json.loads((out / MANIFEST).read_text())
    assert not partial["complete"] and 3 <= len(partial["shards"]) < 30
    resumed = subprocess.run(cmd + args + ["-o", str(out), "--resume"], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert files(out) == files(tmp_path / "whole")  # the killed write's temp file too is gone


def test_workers_get_a_plan_with_its_sidecar(tmp_path):
    """Engines load only beside their sidecar: a Ray worker gets both, nothing else."""
    from edgediff.lab.cluster import artifact_files

    (tmp_path / "m.plan").write_bytes(b"engine")
    (tmp_path / "m.plan.json").write_text("{}")
    (tmp_path / "m.onnx").write_bytes(b"graph")
    assert artifact_files(tmp_path / "m.plan") == {"m.plan": b"engine", "m.plan.json": b"{}"}
    assert artifact_files(tmp_path / "m.onnx") == {"m.onnx": b"graph"}


def test_joining_a_cluster_that_is_not_there_says_how_and_writes_nothing(artifacts, tmp_path,
                                                                         monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (the ray extra)")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already up in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(EdgediffError, match=r"cannot join the Ray cluster at 'auto'.*ray start "
                                            r"--head"):
        generate_artifact(artifacts["mixture"], tmp_path / "g",
                          GenerateOptions(num=4, ray=RayOptions("auto")))
    assert not (tmp_path / "g").exists()


def test_options_are_checked_when_made():
    """A bad value stops at the options, before any artifact is opened."""
    with pytest.raises(EdgediffError, match="shard_size must be an integer ≥ 1"):
        GenerateOptions(num=4, shard_size=0)
    with pytest.raises(EdgediffError, match="needs a guidance scale"):
        GenerateOptions(num=4, guide=Path("weak.onnx"))
    with pytest.raises(EdgediffError, match="--workers must be ≥ 1"):
        RayOptions(workers=0)
    assert GenerateOptions(num=4, shard_size=16, batch=64).job_batch == 16
