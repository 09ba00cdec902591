"""The backend flags reach the Ray workers: ``generate`` and ``bench`` with --ray
hand every actor the caller's ``BackendOptions`` (--cuda-graph included), which it
opens the artifact with. Ray's calls are served in this process by a stand-in, so
the test needs neither the ray extra nor a GPU: the workers are the real
``ArtifactWorker`` class, and their output must be the local run's."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from edgediff.cli import main


class _Ref:
    def __init__(self, value):
        self.value = value


class _Actor:
    """An actor handle: ``actor.method.remote(*args)`` runs the method now."""

    def __init__(self, obj):
        self.obj = obj

    def __getattr__(self, name):
        method = getattr(self.obj, name)
        return SimpleNamespace(remote=lambda *args: _Ref(method(*args)))


class InProcessRay:
    """The part of Ray's API ``edgediff.lab.cluster`` uses, run in this process;
    ``workers`` holds every actor the pool made."""

    exceptions = SimpleNamespace(RayActorError=type("RayActorError", (Exception,), {}))

    def __init__(self):
        self.workers = []

    def is_initialized(self):
        return True

    def remote(self, **_resources):
        def wrap(cls):
            def make(*args):
                self.workers.append(cls(*args))
                return _Actor(self.workers[-1])
            return SimpleNamespace(remote=make)
        return wrap

    def put(self, value):
        return value

    def get(self, refs):
        return [r.value for r in refs] if isinstance(refs, list) else refs.value

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def kill(self, actor, no_restart=True):
        pass


@pytest.fixture
def fake_ray(monkeypatch):
    import edgediff.lab.cluster as cluster

    ray = InProcessRay()
    monkeypatch.setattr(cluster, "ray_module", lambda: ray)
    return ray


def invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def test_generate_passes_cuda_graph_to_every_worker(artifacts, fake_ray, tmp_path):
    args = ["generate", artifacts["mixture"], "--num", 40, "--shard-size", 16, "--batch", 8,
            "--solver", "euler", "--steps", 4]
    invoke(*args, "-o", tmp_path / "local")
    invoke(*args, "--cuda-graph", "--ray", "--workers", 2, "-o", tmp_path / "ray")
    assert len(fake_ray.workers) == 2
    for worker in fake_ray.workers:
        assert worker.backend.cuda_graph is True
        assert worker.backend.threads == 1 and worker.backend.max_batch == 8

    def files(folder):
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    assert files(tmp_path / "ray") == files(tmp_path / "local")


def test_bench_passes_cuda_graph_to_every_worker(artifacts, fake_ray, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the lab extra)")
    args = ["bench", artifacts["mixture"], "--solvers", "euler,heun", "--nfe", "3,5", "--num",
            16, "--batch", 8, "--threads", 2]
    invoke(*args, "-o", tmp_path / "local")
    invoke(*args, "--cuda-graph", "--ray", "--workers", 2, "-o", tmp_path / "ray")
    assert len(fake_ray.workers) == 2
    for worker in fake_ray.workers:
        assert worker.backend.cuda_graph is True
        assert worker.backend.threads == 2 and worker.backend.max_batch == 8

    def quality(folder):
        rows = json.loads((folder / "bench.json").read_text())["rows"]
        return [(r["label"], r["nfe"], r["reference_rms"], r["distance"]) for r in rows]

    assert quality(tmp_path / "ray") == quality(tmp_path / "local")
