"""``edgediff serve --ray`` (docs/serve.md, "Scale-out with Ray Serve"): the app as a
Ray Serve deployment of two replicas on a local Ray cluster of 2 CPUs, as the other
Ray tests start one; each request, sent alone, gets exactly the bits
``runtime.sample`` gives with the same seed and settings."""

from __future__ import annotations

import io
import socket

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="edgediff serve needs the serve extra")
httpx = pytest.importorskip("httpx", reason="the test's client is httpx")
ray = pytest.importorskip("ray", reason="ray is not installed (the ray extra)")
pytest.importorskip("ray.serve", reason="Ray Serve's dependencies are not installed "
                                        "(pip install \"ray[serve]\")")

from edgediff import runtime  # noqa: E402
from edgediff.lab.cluster import artifact_files  # noqa: E402
from edgediff.runtime import BackendOptions, RunOptions  # noqa: E402
from edgediff.runtime.serve import ServeOptions, ray_serve  # noqa: E402

BODIES = [{"n": 3, "seed": 5, "solver": "heun", "steps": 4},
          {"n": 2, "seed": 9, "solver": "euler_ancestral", "steps": 6},
          {"n": 4, "seed": 1, "solver": "dpmpp_2m", "steps": 5}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_replicas_on_ray_give_runtime_samples_bits(exported):
    path = exported["digits"][1]
    backend = BackendOptions(threads=1)
    local = runtime.load(path, backend)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        url = ray_serve.start(artifact_files(path), backend,
                              ServeOptions(port=free_port(), max_batch=8), replicas=2)
        status = ray.serve.status().applications[ray_serve.APP_NAME]
        replicas = status.deployments[ray_serve.DEPLOYMENT].replica_states
        assert replicas == {"RUNNING": 2}
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            for body in BODIES:  # one at a time: each alone in its replica's batch
                r = client.post("/v1/samples", json={**body, "format": "npy"})
                assert r.status_code == 200, r.text
                want = runtime.sample(local, body["n"], seed=body["seed"],
                                      solver=body["solver"], steps=body["steps"],
                                      run=RunOptions(batch=body["n"]))
                np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), want)
        ray_serve.stop()
    finally:
        ray.shutdown()
