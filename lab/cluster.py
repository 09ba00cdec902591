"""Shards on Ray: one actor per worker, each loading the artifact once.

The artifact's bytes (a plan's with its sidecar) go into Ray's object store once
(``ray.put``), so a worker on any node can load it without a shared file system;
it writes them to a private temp folder and opens them with the runtime like any
local run. Workers on the ``cuda``/``tensorrt`` providers, or on a plan, ask Ray
for one GPU each. Results
(samples and feature moments) come back to the driver, which writes every
file, so the output folder is the driver's alone and identical to a local
run's, whatever the number of workers.

A worker that dies (its process killed, its node lost) is restarted by Ray,
which reruns its constructor (loading the artifact again) and retries the shard
it was running (``max_restarts``, ``max_task_retries``): a death costs that one
shard's time, and the shard's bytes are the same.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from edgediff.errors import EdgediffError, missing_extra
from edgediff.lab.generate import Job, Shard, ShardResult, feature_space, run_shard

RESTARTS = 3  # per worker; a worker that keeps dying is a bug, not bad luck


def ray_module():
    try:
        import ray
    except ModuleNotFoundError:
        raise missing_extra("ray", "ray") from None
    return ray


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join a cluster (``auto``: the one this machine belongs to; or ``ray://…``,
    ``host:port``) or, with no address, start a local one with ``num_cpus``."""
    ray = ray_module()
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except ConnectionError as e:
        raise EdgediffError(f"cannot join the Ray cluster at {address!r} ({e}); start one "
                            f"with 'ray start --head', or drop the address to run a local "
                            f"one") from None


def artifact_files(path: Path) -> dict[str, bytes]:
    """What a worker needs to open an artifact: the file, and a plan's sidecar."""
    from edgediff.plan import sidecar_path

    path = Path(path)
    files = {path.name: path.read_bytes()}
    if path.suffix in (".plan", ".engine"):
        files[sidecar_path(path).name] = sidecar_path(path).read_bytes()
    return files


class ArtifactWorker:
    """One worker: the artifact (and a guide) loaded once, then shard after shard."""

    def __init__(self, files: dict[str, bytes], threads: int | None,
                 guide_files: dict[str, bytes] | None = None, max_batch: int = 64,
                 provider: str = "cpu"):
        from edgediff import runtime

        def opened(files: dict[str, bytes]):
            folder = Path(tempfile.mkdtemp(prefix="edgediff-worker-"))
            for name, data in files.items():
                (folder / name).write_bytes(data)
            return runtime.load(folder / next(iter(files)), provider=provider,
                                threads=threads, max_batch=max_batch)

        self.denoiser = opened(files)
        self.guide = None if guide_files is None else opened(guide_files)
        runtime.sample(self.denoiser, 1, solver="euler", steps=2)  # warm: bench times it
        space = feature_space(self.denoiser.info)
        self.features = None if space is None else space[1]
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def name_of(self) -> str:
        return self.name

    def run(self, job: Job, shard: Shard) -> ShardResult:
        result = run_shard(self.denoiser, job, shard, self.features, self.guide)
        result.worker = self.name
        return result

    def sample_timed(self, request: dict):
        """One bench request: samples of one run, and wall time per sample per batch."""
        from edgediff.lab.bench import timed_sample

        return timed_sample(self.denoiser, **request)


class RayPool:
    """``workers`` actors over the artifact; ``run`` keeps each busy with one shard of
    ``job`` at a time and yields results as they finish; ``map_timed`` answers bench
    requests (no job needed)."""

    def __init__(self, artifact: Path, job: Job | None = None, *, workers: int,
                 threads: int | None = 1, guide: Path | None = None,
                 address: str | None = None, max_batch: int | None = None,
                 provider: str = "cpu"):
        ray = ray_module()
        connect(address, num_cpus=None if address else workers)
        if workers < 1:
            raise EdgediffError(f"--workers must be ≥ 1, got {workers}")
        gpu = provider != "cpu" or Path(artifact).suffix in (".plan", ".engine")
        remote = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_restarts=RESTARTS,
                            max_task_retries=RESTARTS)(ArtifactWorker)
        # held by the pool: a restarted worker reads them again in its constructor
        self.files = files = ray.put(artifact_files(artifact))
        self.guide_files = guide_files = None if guide is None else ray.put(
            artifact_files(guide))
        self.job = job
        max_batch = max_batch or (job.batch if job else 64)
        self.actors = [remote.remote(files, threads, guide_files, max_batch, provider)
                       for _ in range(workers)]
        self.names = ray.get([a.name_of.remote() for a in self.actors])  # all loaded

    def run(self, shards: Iterable[Shard]) -> Iterator[ShardResult]:
        ray = ray_module()
        queue = list(shards)
        busy: dict = {}  # object ref -> actor
        job = ray.put(self.job)  # once, not with every shard
        for actor in self.actors:
            if queue:
                busy[actor.run.remote(job, queue.pop(0))] = actor
        while busy:
            (ref,), _ = ray.wait(list(busy), num_returns=1)
            actor = busy.pop(ref)
            if queue:  # keep the worker busy before the driver writes
                busy[actor.run.remote(job, queue.pop(0))] = actor
            try:
                yield ray.get(ref)
            except ray.exceptions.RayActorError as e:
                raise EdgediffError(f"a Ray worker died {RESTARTS + 1} times running one "
                                    f"shard ({e.__class__.__name__}); see the worker logs "
                                    f"under /tmp/ray/session_latest/logs") from None

    def map_timed(self, requests: list[dict]) -> list:
        """Bench requests spread over the workers, answers in request order."""
        ray = ray_module()
        refs = [self.actors[k % len(self.actors)].sample_timed.remote(r)
                for k, r in enumerate(requests)]
        return ray.get(refs)

    def close(self) -> None:
        ray = ray_module()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
