"""``edgediff serve`` under load: step-level batching against whole-request batching
and one request at a time, each a real server process on loopback, the same request
mix sent to each (docs/serve.md, "Load test"; issue 27).

    python benchmarks/serve_load.py [--requests 256] [--clients 64] [--reps 3] [--quick]

The claim: step-level batching (``--batching step``, the default) beats whole-request
batching (``--batching request``) on throughput and on the p99 latency of the short
(4-step) requests, because a request joins the running batch at the next denoiser
call and leaves it at its own last step, instead of waiting for the longest request
of the group ahead of it.

The load: the class-conditional digits model (``edgediff export bundled-cond``), one
server per mode (``edgediff serve --max-batch 16 --threads 2``, all three started
while the model is exported and up before any load, so startup is not timed; an idle
server costs nothing), each warmed up with a few requests. ``--clients`` clients
(asyncio + httpx) take requests from one fixed seeded list until it is empty: steps
from 4, 8, 16, 25, 50; solvers euler, heun, dpmpp_2m, ddim, euler_ancestral; a third
unconditional, a third with a class label, a third with a label and guidance w = 2
(two rows per sample); n = 2 for one in eight, else 1; ``.npy`` responses, each
checked: 200, shape [n, 1, 8, 8], finite; anything else is an error. The modes run
interleaved, ``--reps`` rounds.

Per mode: throughput (samples / wall seconds of a round; median [p90] over rounds),
mean batch fill (rows per denoiser call / max batch), calls per round, milliseconds of
denoiser call per row and the share of the wall time spent in denoiser calls ("in D"),
all from /metrics before and after each round, and errors; then p50 and p99 latency
(send to response, ms) per step count, pooled over rounds; then step against request:
throughput × (the median, and round by round: the rounds are interleaved, so each pair
ran under the same conditions) and the 4-step p99 ×. The goal is met when step is
faster in every round and its short-request p99 is lower. Each server is stopped with
SIGTERM and must exit 0.

``--quick`` is a smoke run of seconds: 24 requests of 4 and 8 steps from 8 clients,
max batch 8, one round; its figures are not measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from edgediff.hardware import describe_cpu

MODES = ("step", "request", "single")
SOLVERS = ("euler", "heun", "dpmpp_2m", "ddim", "euler_ancestral")
STEPS = (4, 8, 16, 25, 50)
SHAPE = (1, 8, 8)
QUICK = {"requests": 24, "clients": 8, "reps": 1, "max_batch": 8, "max_steps": 8}


def request_mix(count: int, max_steps: int, seed: int = 0) -> list[dict]:
    """The fixed request list: request k has seed k; the rest drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    steps = [s for s in STEPS if s <= max_steps]
    mix = []
    for k in range(count):
        body = {"n": 2 if rng.random() < 1 / 8 else 1, "seed": k, "format": "npy",
                "steps": int(rng.choice(steps)), "solver": str(rng.choice(SOLVERS))}
        kind = rng.integers(3)  # 0 unconditional, 1 a class label, 2 label and guidance
        if kind:
            body["class_label"] = int(rng.integers(10))
        if kind == 2:
            body["guidance"] = 2.0
        mix.append(body)
    return mix


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ``edgediff serve ARTIFACT …`` (sys.argv[1:]) once ARTIFACT exists: the process imports
# what the server needs while this one exports the artifact (startup is not timed)
SERVER = """import sys, time
from pathlib import Path
import fastapi, onnxruntime, uvicorn
import edgediff.runtime.serve
from edgediff.cli import main
while not Path(sys.argv[2]).exists():
    time.sleep(0.02)
main()
"""


def start_server(artifact: Path, mode: str, max_batch: int, log: Path):
    """``edgediff serve`` in a process of its own: (process, base URL); not yet up."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, "serve", str(artifact), "--port", str(port),
         "--threads", "2", "--max-batch", str(max_batch), "--batching", mode,
         "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"))
    return proc, f"http://127.0.0.1:{port}"


def export_artifact(path: Path) -> None:
    """The class-conditional digits model (written atomically: the servers wait for it)."""
    from edgediff.export.onnx import ExportOptions, export_source  # torch: imported here

    export_source("bundled-cond", path, ExportOptions(validate=False))


def wait_healthy(proc, url: str, log: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server for {url} exited:\n{log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > end:
            raise SystemExit(f"the server for {url} did not come up:\n{log.read_text()}")
        time.sleep(0.05)


def counters(url: str) -> dict[str, float]:
    """From /metrics: denoiser calls, rows through it, seconds in it."""
    text = httpx.get(url + "/metrics", timeout=10).text
    found = dict(re.findall(r"^edgediff_serve_denoiser_(calls_total|rows_total|call_seconds_sum)"
                            r" (\S+)$", text, re.M))
    return {k.split("_")[0]: float(v) for k, v in found.items()}


async def _client(client: httpx.AsyncClient, queue: asyncio.Queue, results: list) -> None:
    while not queue.empty():
        body = queue.get_nowait()
        t0 = time.perf_counter()
        try:
            r = await client.post("/v1/samples", json=body)
            ok = r.status_code == 200
            if ok:
                x = np.load(io.BytesIO(r.content))
                ok = x.shape == (body["n"], *SHAPE) and bool(np.isfinite(x).all())
        except httpx.HTTPError:
            ok = False
        results.append((body, time.perf_counter() - t0, ok))


async def _load(url: str, mix: list[dict], clients: int) -> list:
    queue: asyncio.Queue = asyncio.Queue()
    for body in mix:
        queue.put_nowait(body)
    results: list = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await asyncio.gather(*(_client(client, queue, results) for _ in range(clients)))
    return results


def round_on(url: str, mix: list[dict], clients: int, max_batch: int) -> dict:
    """One round of the mix against one server: wall seconds, fill, per-request results."""
    before = counters(url)
    t0 = time.perf_counter()
    results = asyncio.run(_load(url, mix, clients))
    wall = time.perf_counter() - t0
    after = counters(url)
    calls, rows, busy = (after[k] - before[k] for k in ("calls", "rows", "call"))
    return {"wall": wall, "samples": sum(b["n"] for b in mix), "calls": calls, "rows": rows,
            "busy": busy, "results": results}


def stopped(proc, log: Path, strict: bool = True) -> None:
    """Wait for a server sent SIGTERM; once serving (``strict``), it drains and exits 0."""
    rc = proc.wait(60)
    if strict and rc != 0:
        raise SystemExit(f"the server exited {rc} on SIGTERM:\n{log.read_text()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3, help="rounds, the modes interleaved")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-steps", type=int, default=50, help="largest step count in the mix")
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)  # flags given explicitly still win
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgediff-serve-load-") as tmp:
        measure(args, Path(tmp))


def measure(args: argparse.Namespace, tmp: Path) -> None:
    t0 = time.perf_counter()
    artifact = tmp / "digits-cond.onnx"
    mix = request_mix(args.requests, args.max_steps)
    servers = {m: start_server(artifact, m, args.max_batch, tmp / f"{m}.log") for m in MODES}
    rounds: dict[str, list[dict]] = {m: [] for m in MODES}
    try:
        export_artifact(artifact)
        for m, (proc, url) in servers.items():
            wait_healthy(proc, url, tmp / f"{m}.log")
        t_up, t0 = time.perf_counter() - t0, time.perf_counter()
        for _, url in servers.values():
            asyncio.run(_load(url, request_mix(4, 8, seed=1), 4))  # warm-up, untimed
        for _ in range(args.reps):
            for m in MODES:  # interleaved: drift hits all alike
                rounds[m].append(round_on(servers[m][1], mix, args.clients, args.max_batch))
        t_load = time.perf_counter() - t0
    finally:
        for proc, _ in servers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for m, (proc, _) in servers.items():
            stopped(proc, tmp / f"{m}.log", strict=artifact.exists())
    report(args, mix, rounds)
    print(f"setup: export and three servers up {t_up:.1f} s; warm-up and load "
          f"{t_load:.1f} s; every server exited 0 on SIGTERM")


def report(args, mix: list[dict], rounds: dict[str, list[dict]]) -> None:
    steps = sorted({b["steps"] for b in mix})
    guided = sum("guidance" in b for b in mix)
    print(f"CPU: {describe_cpu()}")
    print(f"digits-cond (1×8×8, 10 classes), {len(mix)} requests ({sum(b['n'] for b in mix)} "
          f"samples, {guided} guided w=2) from {args.clients} clients; steps "
          f"{', '.join(map(str, steps))}; solvers {', '.join(SOLVERS)}; max batch "
          f"{args.max_batch}, 2 threads; {args.reps} round(s), modes interleaved")
    print(f"{'mode':<9}{'samples/s':>16}{'mean fill':>11}{'rows/call':>11}{'calls':>8}"
          f"{'ms/row':>8}{'in D':>7}{'errors':>8}")
    rate, p99 = {}, {}
    for m in MODES:
        rs = rounds[m]
        rates = [r["samples"] / r["wall"] for r in rs]
        rate[m] = statistics.median(rates)
        calls, rows, busy = (sum(r[k] for r in rs) for k in ("calls", "rows", "busy"))
        wall = sum(r["wall"] for r in rs)
        errors = sum(not ok for r in rs for *_, ok in r["results"])
        print(f"{m:<9}{rate[m]:>8.1f} [{np.percentile(rates, 90):>5.1f}]"
              f"{rows / calls / args.max_batch:>11.2f}{rows / calls:>11.1f}"
              f"{calls / len(rs):>8.0f}{busy / rows * 1e3:>8.2f}{busy / wall:>7.0%}{errors:>8d}")
    print("latency, ms (p50 / p99)")
    print(f"{'steps':<7}{'requests':>9}" + "".join(f"{m:>18}" for m in MODES))
    for s in steps:
        cells = []
        for m in MODES:
            ms = [t * 1e3 for r in rounds[m] for b, t, _ in r["results"] if b["steps"] == s]
            p50, p99[m, s] = np.percentile(ms, 50), np.percentile(ms, 99)
            cells.append(f"{p50:>9.0f} /{p99[m, s]:>6.0f}")
        count = sum(b["steps"] == s for b in mix)
        print(f"{s:<7}{count:>9}" + "".join(f"{c:>18}" for c in cells))
    short = steps[0]
    faster = rate["step"] / rate["request"]
    paired = [b["wall"] / a["wall"] for a, b in zip(rounds["step"], rounds["request"],
                                                     strict=True)]
    lower = p99["request", short] / p99["step", short]
    print(f"step vs request: throughput {faster:.2f}× (round by round: "
          f"{', '.join(f'{x:.2f}' for x in paired)}), p99 of {short}-step requests "
          f"{lower:.2f}× lower; step vs single: throughput {rate['step'] / rate['single']:.2f}×")
    met = min(paired) > 1 and lower > 1  # beats: in every round, not by the median alone
    print(f"goal (step beats request on throughput and short-request p99): "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
