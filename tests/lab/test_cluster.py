"""Shards on Ray give the local run's files byte for byte, with 1 or 2 workers and
when a worker is killed mid-shard; ``bench --ray`` gives the local table. One local
Ray instance on 2 CPUs serves the module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgediff.lab.cluster import RayOptions
from edgediff.lab.generate import GenerateOptions, generate_artifact
from edgediff.lab.manifest import MANIFEST
from edgediff.runtime import BackendOptions

ray = pytest.importorskip("ray", reason="ray is not installed (the ray extra)")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("torch", reason="exporting needs torch")


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from edgediff.export.onnx import ExportOptions, export_source

    path = tmp_path_factory.mktemp("ray-artifacts") / "digits.onnx"
    export_source("bundled", path, ExportOptions(validate=False))
    return path


JOB = dict(num=96, shard_size=16, batch=8, solver="dpmpp_2m", steps=6,
           backend=BackendOptions(threads=1), images=True)


@pytest.fixture(scope="module")
def local_run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "g"
    generate_artifact(digits, out, GenerateOptions(**JOB))
    return files(out)


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_writes_the_local_runs_bytes(cluster, digits, local_run, tmp_path, workers):
    seen = set()
    generate_artifact(digits, tmp_path / "g",
                      GenerateOptions(ray=RayOptions("local", workers), **JOB),
                      progress=lambda item, done, total: seen.add(getattr(item, "worker", "")))
    assert files(tmp_path / "g") == local_run
    assert len(seen) == workers  # every actor did some of the work


def test_a_worker_killed_mid_shard_costs_one_retry_and_changes_nothing(cluster, digits,
                                                                      tmp_path):
    from edgediff.lab.cluster import RayPool
    from edgediff.lab.generate import generate_artifact as run

    pool_box = {}
    made_by = []

    def make_pool(job):
        pool_box["pool"] = RayPool(digits, BackendOptions(threads=1, max_batch=job.batch),
                                   RayOptions(workers=2), job=job)
        return pool_box["pool"]

    def progress(item, done, total):
        made_by.append(item.worker)
        if done == 1:  # both workers are busy: kill the one that did not just finish
            pool = pool_box["pool"]
            victim = pool.actors[1 - pool.names.index(item.worker)]
            ray.kill(victim, no_restart=False)

    slow = {**JOB, "solver": "heun", "steps": 40}  # shards long enough to be killed inside
    run(digits, tmp_path / "g", GenerateOptions(**slow), pool_factory=make_pool,
        progress=progress)
    generate_artifact(digits, tmp_path / "local", GenerateOptions(**slow))
    assert files(tmp_path / "g") == files(tmp_path / "local")
    assert len(made_by) == 96 // 16  # every shard written once
    restarted = set(made_by) - set(pool_box["pool"].names)
    assert len(restarted) == 1  # the killed worker came back (a new pid) and did shards


def test_bench_on_ray_prints_the_local_table(cluster, digits, tmp_path):
    """Quality columns equal (same samples); the timing columns are the workers' own."""
    from click.testing import CliRunner

    from edgediff.cli import main

    args = ["bench", str(digits), "--solvers", "euler,heun", "--nfe", "5,9", "--num", "24",
            "--batch", "8", "--threads", "1"]
    local = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    on_ray = CliRunner().invoke(main, [*args, "--ray", "--workers", "2",
                                       "-o", str(tmp_path / "ray")])
    assert on_ray.exit_code == 0, on_ray.output

    def quality(folder):
        rows = json.loads((folder / "bench.json").read_text())["rows"]
        return [(r["label"], r["nfe"], r["reference_rms"], r["distance"]) for r in rows]

    assert quality(tmp_path / "ray") == quality(tmp_path / "local")


def test_without_ray_the_flag_prints_the_install_line(tmp_path):
    block = ("import importlib.abc, sys\n"
             "class Block(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'ray':\n"
             "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
             "sys.meta_path.insert(0, Block())\n")
    code = block + ("from edgediff.cli import main\n"
                    f"main(['generate', {str(MANIFEST)!r}, '--num', '4', '--ray', "
                    f"'-o', {str(tmp_path / 'g')!r}])")
    (tmp_path / MANIFEST).write_text("{}")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 1
    assert 'pip install "edgediff[ray]"' in res.stderr and "Traceback" not in res.stderr


def test_the_workers_open_the_artifact_with_the_callers_backend_options(cluster, digits):
    """--cuda-graph (and every other backend option) reaches the actors on Ray: each
    opens the artifact with the caller's BackendOptions, one thread unless asked."""
    from edgediff.lab.cluster import RayPool

    asked = BackendOptions(cuda_graph=True, max_batch=8)
    pool = RayPool(digits, asked, RayOptions(workers=1))
    try:
        got = ray.get(pool.actors[0].options_of.remote())
    finally:
        pool.close()
    assert got.cuda_graph is True and got.max_batch == 8 and got.threads == 1
