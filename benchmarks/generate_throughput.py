"""``generate`` throughput: local against Ray with 1 and 2 workers, side by side in
one process, and the fixed cost Ray adds per shard.

    python benchmarks/generate_throughput.py [--num 2048] [--reps 3] [--quick]

Throughput: the bundled digits model, Heun 18 steps (35 NFE), shards of 256,
batches of 64. Local runs shards one after another with ONNX Runtime's threads
(1 and 2); Ray runs one actor per worker, 1 thread each, on a local cluster of
2 CPUs. Every configuration writes the same bytes (checked here too).

Per-shard cost: the exact mixture (no network) at 1 Euler step with shards of one
sample, so a shard is almost all overhead: (Ray time − local time) / shards is
what each shard costs in scheduling, transfer and the driver's writes beyond a
local run. Median and p90 over ``--reps`` runs after one warm-up round; startup
(cluster, actors loading the artifact) is reported apart.

``--quick`` is a smoke run of seconds: 64 samples at 4 steps in shards of 16,
batches of 8, 16 one-sample shards, 2 repetitions; its figures are not measurements.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from edgediff.catalogue import nfe
from edgediff.export.onnx import ExportOptions, export_source
from edgediff.lab.cluster import RayOptions, RayPool
from edgediff.lab.generate import GenerateOptions, generate_artifact
from edgediff.runtime import BackendOptions


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def timed(artifact: Path, out: Path, job: dict, workers: int | None, threads: int):
    """Seconds for one generate run (Ray: the actors made beforehand, not timed)."""
    pool = None
    if workers:
        pool = RayPool(artifact, BackendOptions(threads=threads, max_batch=job["batch"]),
                       RayOptions(workers=workers))

    def factory(j):
        pool.job = j  # the actors take the job with each shard below
        return pool

    t0 = time.perf_counter()
    generate_artifact(artifact, out, GenerateOptions(backend=BackendOptions(threads=threads),
                                                     **job),
                      pool_factory=factory if pool else None)
    return time.perf_counter() - t0


QUICK = {"num": 64, "reps": 2, "steps": 4, "shard_size": 16, "batch": 8, "shards": 16}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=18, help="Heun steps of the throughput runs")
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--shards", type=int, default=256, help="one-sample shards of the cost run")
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)  # flags given explicitly still win
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgediff-gen-bench-") as tmp:
        measure(args, Path(tmp))


def measure(args: argparse.Namespace, tmp: Path) -> None:
    digits, mixture = tmp / "digits.onnx", tmp / "mixture.onnx"
    export_source("bundled", digits, ExportOptions(validate=False))
    export_source("mixture2d", mixture, ExportOptions(validate=False))

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    RayPool(digits, BackendOptions(threads=1), RayOptions(workers=2)).close()
    t_actors = time.perf_counter() - t0

    job = dict(num=args.num, shard_size=args.shard_size, batch=args.batch, solver="heun",
               steps=args.steps)
    configs = [("local, 1 thread", None, 1), ("local, 2 threads", None, 2),
               ("Ray, 1 worker", 1, 1), ("Ray, 2 workers", 2, 1)]
    times = {name: [] for name, _, _ in configs}
    digests = set()
    for rep in range(-1, args.reps):  # rep −1 warms up, untimed
        for name, workers, threads in configs:  # interleaved: drift hits all alike
            out = tmp / f"digits-{rep}-{name.replace(' ', '').replace(',', '-')}"
            seconds = timed(digits, out, job, workers, threads)
            if rep >= 0:
                times[name].append(seconds)
            digests.add(digest(out))
    base = statistics.median(times["local, 1 thread"])
    print(f"digits, heun {args.steps} steps ({nfe('heun', args.steps)} NFE), {args.num} samples "
          f"in shards of {args.shard_size}, batch {args.batch}; median [p90] of {args.reps}")
    print(f"{'configuration':<20}{'s':>16}{'samples/s':>11}{'vs local 1 thread':>19}")
    for name, *_ in configs:
        t = statistics.median(times[name])
        p90 = f"[{np.percentile(times[name], 90):.2f}]"
        print(f"{name:<20}{t:>8.2f} {p90:>7}{args.num / t:>11.1f}{base / t:>18.2f}x")
    print(f"identical files in every configuration: {len(digests) == 1}")

    tiny = dict(num=args.shards, shard_size=1, batch=1, solver="euler", steps=1)
    local, remote = [], []
    for rep in range(args.reps):
        local.append(timed(mixture, tmp / f"tiny-local-{rep}", tiny, None, 1))
        remote.append(timed(mixture, tmp / f"tiny-ray-{rep}", tiny, 1, 1))
    per_local = statistics.median(local) / tiny["num"] * 1e3
    per_ray = statistics.median(remote) / tiny["num"] * 1e3
    print(f"\nper shard (mixture, 1 sample, 1 Euler step, {tiny['num']} shards): local "
          f"{per_local:.2f} ms, Ray 1 worker {per_ray:.2f} ms: Ray adds "
          f"{per_ray - per_local:.2f} ms per shard")
    print(f"startup: ray.init {t_init:.1f} s; 2 actors loading the digits artifact "
          f"{t_actors:.1f} s")
    ray.shutdown()


if __name__ == "__main__":
    main()
