"""``edgediff serve`` over HTTP (docs/serve.md): bad input named by field, the API key,
a full queue, deadlines, disconnects, a NaN that fails only its own request, metrics,
the model card, response formats; and a real ``edgediff serve`` process: a request
alone is bitwise ``runtime.sample``, and SIGTERM lets a running request finish.

In-process apps run on uvicorn in a thread (real sockets, so a client can go away);
the 422s need no server and use FastAPI's TestClient. Fakes wrap the exact mixture:
a gate that holds a call until the test opens it, and a model that returns NaN for
the rows of one class."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="edgediff serve needs the serve extra")
httpx = pytest.importorskip("httpx", reason="the tests' client is httpx")

from edgediff import runtime  # noqa: E402
from edgediff.artifact import ArtifactInfo  # noqa: E402
from edgediff.runtime import Condition, RunOptions  # noqa: E402
from edgediff.runtime.serve import ServeOptions, make_app  # noqa: E402
from edgediff.schedules import EDMSchedule  # noqa: E402
from edgediff.tensor_conditioning import declare  # noqa: E402

HEAVY = ("torch", "onnx", "tensorrt")


class Gate:
    """The model behind a gate: a call (one whose labels ``holds``, by default every
    call) waits until the test opens the gate; records the class labels of every call."""

    def __init__(self, denoiser, holds=lambda labels: True):
        self.denoiser, self.info, self.holds = denoiser, denoiser.info, holds
        self.open, self.entered = threading.Event(), threading.Event()
        self.labels: list[list[int]] = []

    def __call__(self, x, sigma, **feeds):
        labels = feeds["class_labels"].tolist() if "class_labels" in feeds else []
        self.labels.append(labels)
        if self.holds(labels):
            self.entered.set()
            assert self.open.wait(30)
        return self.denoiser(x, sigma, **feeds)


class Poisoned(Gate):
    """NaN for the rows of class 1 once σ < 1."""

    def __call__(self, x, sigma, **feeds):
        out = super().__call__(x, sigma, **feeds).copy()
        out[(feeds["class_labels"] == 1) & (sigma < 1)] = np.nan
        return out


class Gaussian:
    """N(μ, I) data with μ = Σ_rows emb (zero without it): D = (x̂ + σ²μ)/(1 + σ²),
    elementwise, so a row's D cannot depend on its batch."""

    def __init__(self, info):
        self.info = info

    def __call__(self, x, sigma, class_labels=None, guidance=None, emb=None):
        s2 = sigma.astype(np.float64).reshape(-1, *[1] * (x.ndim - 1)) ** 2
        mu = 0.0 if emb is None else np.broadcast_to(emb.sum(1), x.shape)  # [1 or B, 3, 2]
        return ((x + s2 * mu) / (1 + s2)).astype(np.float32)


PLAIN = ArtifactInfo("edm", EDMSchedule(), 0.002, 80.0, 0.5, (2,), (-4.0, 4.0), "0" * 64,
                     {"solver": "heun", "steps": 4}, "fp32")
TENSORS = dataclasses.replace(PLAIN, conditioning={"tensors": {"emb": declare("emb", [3, 2])}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app):
    """The app on uvicorn in a thread of this process; an httpx client for it."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.config.port}",
                          timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)


def wait_for(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def start_server(artifact: Path, log: Path, *flags: str, env: dict | None = None):
    """A real ``edgediff serve`` process on a free loopback port: (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from edgediff.cli import main; main()", "serve", str(artifact),
         "--port", str(port), "--threads", "1", *flags],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"the server exited:\n{log.read_text()}"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < end, log.read_text()
        time.sleep(0.05)


def npy(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


# --- bad input: 422 naming the field ---------------------------------------------------

CASES = [  # (model, body, field)
    ("mixture", {"n": 65}, "n"),
    ("mixture", {"steps": 1001}, "steps"),
    ("mixture", {"solver": "nope"}, "solver"),
    ("mixture", {"solver": "edm", "options": {"S_churn": -1}}, "options"),
    ("mixture", {"class_label": 4}, "class_label"),
    ("mixture", {"n": 3, "class_label": [0, 1]}, "class_label"),
    ("mixture", {"format": "png"}, "format"),
    ("mixture", {"guidance_interval": [0.1, 2.0]}, "guidance_interval"),
    ("mixture", {"guidance": -1}, "guidance"),
    ("mixture", {"cond": {"emb": [1, 2]}}, "cond"),
    ("mixture", {"bogus": 1}, "bogus"),
    ("mixture", {"deadline": 0}, "deadline"),
    ("gaussian", {"guidance": 2.0}, "guidance"),  # an unconditional model: nothing to guide
    ("gaussian", {"class_label": 0}, "class_label"),
    ("tensors", {"cond": {"emb": [[1.0, 2.0]]}}, "cond"),  # [1, 2], not [3, 2]
    ("tensors", {"cond": {"emb": [[1.0, 2.0], [3.0]]}}, "cond"),  # ragged
]


@pytest.fixture(scope="module")
def clients(mixture_path):
    from fastapi.testclient import TestClient

    models = {"mixture": runtime.load(mixture_path, threads=1), "gaussian": Gaussian(PLAIN),
              "tensors": Gaussian(TENSORS)}
    with TestClient(make_app(models["mixture"])) as a, \
            TestClient(make_app(models["gaussian"])) as b, \
            TestClient(make_app(models["tensors"])) as c:
        yield {"mixture": a, "gaussian": b, "tensors": c}


@pytest.mark.parametrize("model,body,field", CASES, ids=[f"{m}-{f}" for m, _, f in CASES])
def test_bad_input_gets_422_naming_the_field(clients, model, body, field):
    r = clients[model].post("/v1/samples", json=body)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", field] and error["msg"]


def test_tensor_conditioning_is_served_and_matches_the_runtime(clients):
    emb = np.array([[1.0, 0.5], [0.0, -1.0], [0.25, 0.0]])
    r = clients["tensors"].post("/v1/samples", json={"n": 3, "seed": 4,
                                                     "cond": {"emb": emb.tolist()}})
    want = runtime.sample(Gaussian(TENSORS), 3, seed=4, condition=Condition(tensors={"emb": emb}))
    np.testing.assert_array_equal(npy(r), want)


# --- formats ---------------------------------------------------------------------------

@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB")])
def test_png_npy_and_npz_decode_to_the_samples(channels, mode):
    from fastapi.testclient import TestClient

    Image = pytest.importorskip("PIL.Image")
    info = dataclasses.replace(PLAIN, sample_shape=(channels, 4, 5), reference=None)
    with TestClient(make_app(Gaussian(info))) as client:
        x = npy(client.post("/v1/samples", json={"n": 5, "seed": 2, "format": "npy"}))
        assert x.shape == (5, channels, 4, 5) and x.dtype == np.float32
        z = client.post("/v1/samples", json={"n": 5, "seed": 2},
                        headers={"Accept": "application/x-npz"})
        assert z.headers["content-type"] == "application/x-npz"
        np.testing.assert_array_equal(np.load(io.BytesIO(z.content))["samples"], x)
        one = client.post("/v1/samples", json={"n": 1, "seed": 2})  # an image model: PNG
        grid = client.post("/v1/samples", json={"n": 5, "seed": 2, "format": "png"})
    assert one.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(one.content))
    assert image.mode == mode and image.size == (5, 4)
    pixels = np.round(np.clip((x[0].astype(np.float64) + 4) / 8, 0, 1) * 255)  # range ±4
    np.testing.assert_array_equal(np.asarray(image).reshape(4, 5, channels),
                                  pixels.transpose(1, 2, 0))
    assert Image.open(io.BytesIO(grid.content)).size == (3 * 6 + 1, 2 * 5 + 1)  # 3 × 2 tiles


# --- the API key, the model card, metrics ----------------------------------------------

def test_the_api_key_guards_every_endpoint_but_healthz(mixture):
    from fastapi.testclient import TestClient

    key = "k3y-for-tests"
    with TestClient(make_app(mixture, ServeOptions(api_key=key))) as client:
        assert client.get("/healthz").status_code == 200
        for method, path in (("get", "/v1/model"), ("get", "/metrics"), ("get", "/docs"),
                             ("post", "/v1/samples")):
            for headers in ({}, {"Authorization": "Bearer wrong-key!"},
                            {"Authorization": key}):
                r = getattr(client, method)(path, headers=headers)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": f"Bearer {key}"}
        assert client.get("/v1/model", headers=good).status_code == 200
        assert client.post("/v1/samples", json={"n": 2}, headers=good).status_code == 200
        text = client.get("/metrics", headers=good).text
    assert 'edgediff_serve_rejected_total{reason="unauthorized"} 12.0' in text


def test_the_model_card_is_the_artifacts_metadata(mixture):
    from fastapi.testclient import TestClient

    with TestClient(make_app(mixture, ServeOptions(max_n=7))) as client:
        card = client.get("/v1/model").json()
        assert "/v1/samples" in client.get("/openapi.json").json()["paths"]
    assert card["metadata"] == mixture.info.to_props()
    assert ArtifactInfo.from_props(card["metadata"]).to_props() == mixture.info.to_props()
    assert card["sample_shape"] == [2] and card["num_classes"] == 3 and card["null_label"] == 3
    assert card["limits"]["max_n"] == 7 and "heun" in card["solvers"]


def test_metrics_count_calls_rows_and_outcomes(mixture):
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    with TestClient(make_app(mixture)) as client:
        npy(client.post("/v1/samples", json={"n": 3, "solver": "euler", "steps": 5}))
        assert client.post("/v1/samples", json={"n": 0}).status_code == 422
        text = client.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("edgediff_serve_denoiser_calls_total", ())] == 5
    assert samples[("edgediff_serve_denoiser_rows_total", ())] == 15
    assert samples[("edgediff_serve_requests_total", (("outcome", "ok"),))] == 1
    assert samples[("edgediff_serve_rejected_total", (("reason", "invalid"),))] == 1
    assert samples[("edgediff_serve_batch_rows_count", ())] == 5
    assert samples[("edgediff_serve_request_seconds_count", (("outcome", "ok"),))] == 1
    for name in ("queue_depth", "running_requests", "batch_fill_count",
                 "denoiser_call_seconds_count", "dropped_submissions_total"):
        assert ("edgediff_serve_" + name, ()) in samples
    assert ("edgediff_serve_cancelled_total", (("reason", "disconnected"),)) in samples


# --- load and faults, on a real socket -------------------------------------------------

def _post(client, body, out: dict, key: str, **kw) -> threading.Thread:
    def run():
        try:
            out[key] = client.post("/v1/samples", json=body, **kw)
        except httpx.TimeoutException as e:
            out[key] = e
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_full_queue_answers_503_with_retry_after(mixture):
    gate = Gate(mixture)
    app = make_app(gate, ServeOptions(max_batch=2, queue=1))
    scheduler, out = app.state.scheduler, {}
    with serving(app) as client:
        a = _post(client, {"n": 2, "class_label": 0, "steps": 2, "solver": "euler"}, out, "a")
        assert gate.entered.wait(10)
        b = _post(client, {"n": 2, "class_label": 1, "steps": 2, "solver": "euler"}, out, "b")
        wait_for(lambda: scheduler.stats()["waiting"] == 1)
        c = client.post("/v1/samples", json={"n": 1})
        gate.open.set()
        a.join(30), b.join(30)
    assert c.status_code == 503 and c.headers["retry-after"] == "1"
    assert npy(out["a"]).shape == npy(out["b"]).shape == (2, 2)


def test_past_its_deadline_a_request_gets_504_and_leaves_the_batch(mixture):
    gate = Gate(mixture)
    app = make_app(gate, ServeOptions(deadline=30))
    with serving(app) as client:
        began = time.monotonic()
        r = client.post("/v1/samples", json={"n": 2, "class_label": 2, "deadline": 0.3})
        took = time.monotonic() - began
        calls = len(gate.labels)
        gate.open.set()
        ok = client.post("/v1/samples", json={"n": 1, "class_label": 0, "steps": 3,
                                              "solver": "euler"})
    assert r.status_code == 504 and "deadline" in r.json()["detail"]
    assert 0.3 <= took < 5
    assert calls == 1 and app.state.scheduler.stats()["cancelled"] == {"deadline": 1}
    assert npy(ok).shape == (1, 2) and all(2 not in labels for labels in gate.labels[calls:])


def test_a_client_that_disconnects_has_its_rows_dropped(mixture):
    """b's rows are in a call that hangs when its client gives up: they are dropped,
    and a, which shared that call, goes on alone."""
    gate = Gate(mixture, holds=lambda labels: 1 in labels)
    app = make_app(gate, ServeOptions(gather_s=0.05))
    scheduler, out = app.state.scheduler, {}
    with serving(app) as client:
        a = _post(client, {"n": 2, "class_label": 0, "solver": "euler", "steps": 1000}, out,
                  "a")
        wait_for(lambda: len(gate.labels) > 0)
        b = _post(client, {"n": 3, "class_label": 1, "solver": "euler", "steps": 4}, out, "b",
                  timeout=0.5)
        assert gate.entered.wait(10)  # a call with b's rows hangs
        b.join(10)
        wait_for(lambda: scheduler.stats()["cancelled"].get("disconnected") == 1)
        gate.open.set()
        a.join(30)
    assert isinstance(out["b"], httpx.TimeoutException)
    assert npy(out["a"]).shape == (2, 2)
    assert scheduler.stats()["dropped"] == 1
    with_b = [k for k, labels in enumerate(gate.labels) if 1 in labels]
    assert len(with_b) == 1 and 0 in gate.labels[with_b[0]]  # one shared call, then a alone
    assert len(gate.labels) == 1000  # a's calls, one of them shared with b


def test_nan_rows_fail_only_their_own_request(mixture):
    poisoned = Poisoned(mixture)
    app = make_app(poisoned, ServeOptions(gather_s=0.05))
    out = {}
    body = {"n": 2, "solver": "heun", "steps": 12}
    with serving(app) as client:
        a = _post(client, {**body, "class_label": 0}, out, "a")
        assert poisoned.entered.wait(10)
        b = _post(client, {**body, "class_label": 1}, out, "b")
        wait_for(lambda: app.state.scheduler.stats()["waiting"] == 1)
        poisoned.open.set()  # b starts at the next tick; from then on they share calls
        a.join(30), b.join(30)
    assert npy(out["a"]).shape == (2, 2)
    assert out["b"].status_code == 500
    detail = out["b"].json()["detail"]
    assert "NaN" in detail and "step" in detail and "σ" in detail
    assert any(set(labels) == {0, 1} for labels in poisoned.labels)


def test_draining_refuses_new_requests_with_503(mixture):
    from fastapi.testclient import TestClient

    app = make_app(mixture)
    with TestClient(app) as client:
        app.state.drain()
        assert client.post("/v1/samples", json={"n": 1}).status_code == 503
        assert client.get("/healthz").json()["status"] == "draining"


# --- a real process ------------------------------------------------------------------

def test_importing_the_server_and_making_an_app_loads_no_torch(mixture_path):
    code = ("import sys\nimport edgediff.runtime.serve, fastapi, uvicorn, prometheus_client\n"
            "from edgediff import runtime\nfrom edgediff.runtime.serve import make_app\n"
            f"make_app(runtime.load({str(mixture_path)!r}))\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_request_alone_is_bitwise_runtime_sample_over_http(mixture_path, tmp_path):
    proc, url = start_server(mixture_path, tmp_path / "server.log", "--log-level", "warning")
    try:
        body = {"n": 4, "seed": 5, "solver": "dpmpp_2m", "steps": 10, "class_label": [0, 1, 2, 3]}
        r = httpx.post(url + "/v1/samples", json=body, timeout=60)
        assert r.headers["x-edgediff-solver"] == "dpmpp_2m"
        want = runtime.sample(runtime.load(mixture_path, threads=1), 4, seed=5, solver="dpmpp_2m",
                              steps=10, condition=Condition(labels=[0, 1, 2, 3]),
                              run=RunOptions(batch=4))
        np.testing.assert_array_equal(npy(r), want)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_sigterm_lets_a_running_request_finish_then_exits_0(mixture_path, tmp_path):
    log = tmp_path / "server.log"
    proc, url = start_server(mixture_path, log, "--max-steps", "5000")
    body = {"n": 2, "seed": 9, "solver": "euler", "steps": 3000, "class_label": 1}
    out: dict = {}
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            thread = _post(client, body, out, "r")
            wait_for(lambda: httpx.get(url + "/healthz").json()["running"] == 1)
            proc.send_signal(signal.SIGTERM)
            thread.join(60)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "draining: new requests get 503; 1 running" in log.read_text()
    want = runtime.sample(runtime.load(mixture_path, threads=1), 2, seed=9, solver="euler",
                          steps=3000, condition=Condition(labels=1))
    np.testing.assert_array_equal(npy(out["r"]), want)
