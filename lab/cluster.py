"""Shards on Ray: one actor per worker, each loading the artifact once.

The artifact's bytes (a plan's with its sidecar) go into Ray's object store once
(``ray.put``), so a worker on any node can load it without a shared file system;
it writes them to a private temp folder and opens them with the runtime like any
local run, with the caller's ``BackendOptions`` (provider, ``--cuda-graph``, ...).
Workers on the ``cuda``/``tensorrt`` providers, or on a plan, ask Ray for one GPU
each. Results (samples and feature moments) come back to the driver, which writes
every file, so the output folder is the driver's alone and identical to a local
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
from dataclasses import dataclass, replace
from pathlib import Path

from edgediff.errors import EdgediffError, missing_extra
from edgediff.lab.moments import feature_space
from edgediff.lab.shards import Job, Shard, ShardResult, run_shard
from edgediff.lab.timing import TimedRequest, timed_sample
from edgediff.runtime.backends import BackendOptions

RESTARTS = 3  # per worker; a worker that keeps dying is a bug, not bad luck


@dataclass(frozen=True)
class RayOptions:
    """Where the work runs: ``address`` "local" starts a cluster on this machine,
    "auto" joins the one it belongs to, ``host:port`` or ``ray://…`` another;
    ``workers`` actors, each loading the artifact once."""

    address: str = "local"
    workers: int = 2

    def __post_init__(self):
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) \
                or self.workers < 1:
            raise EdgediffError(f"--workers must be ≥ 1, got {self.workers!r}")

    @property
    def join(self) -> str | None:
        """The cluster to join, or None to start a local one."""
        return None if self.address == "local" else self.address


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
    """One worker: the artifact (and a guide) opened once with ``backend``, the
    caller's ``BackendOptions`` (``--cuda-graph`` included), then shard after shard."""

    def __init__(self, files: dict[str, bytes], backend: BackendOptions,
                 guide_files: dict[str, bytes] | None = None):
        from edgediff import runtime

        def opened(files: dict[str, bytes]):
            folder = Path(tempfile.mkdtemp(prefix="edgediff-worker-"))
            for name, data in files.items():
                (folder / name).write_bytes(data)
            return runtime.load(folder / next(iter(files)), backend)

        self.backend = backend
        self.denoiser = opened(files)
        self.guide = None if guide_files is None else opened(guide_files)
        runtime.sample(self.denoiser, 1, solver="euler", steps=2)  # warm: bench times it
        space = feature_space(self.denoiser.info)
        self.features = None if space is None else space[1]
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def name_of(self) -> str:
        return self.name

    def options_of(self) -> BackendOptions:
        """The backend options this worker opened the artifact with."""
        return self.backend

    def run(self, job: Job, shard: Shard) -> ShardResult:
        result = run_shard(self.denoiser, job, shard, self.features, self.guide)
        result.worker = self.name
        return result

    def sample_timed(self, request: TimedRequest):
        """One bench request: samples of one run, and wall time per sample per batch."""
        return timed_sample(self.denoiser, request)


def worker_backend(artifact: Path, backend: BackendOptions) -> BackendOptions:
    """What the workers open the artifact with: the caller's options, one ONNX
    Runtime thread each unless asked otherwise. Metadata given beside the file
    stays on the driver, so it is refused here, before any work."""
    if backend.metadata:
        raise EdgediffError(f"--metadata is for local runs; give Ray workers an artifact "
                            f"exported by edgediff, not {Path(artifact).name} with metadata "
                            f"beside it")
    return replace(backend, threads=backend.threads or 1)


class RayPool:
    """``ray.workers`` actors over the artifact, each opening it with ``backend``;
    ``run`` keeps each busy with one shard of ``job`` at a time and yields results
    as they finish; ``map_timed`` answers bench requests (no job needed)."""

    def __init__(self, artifact: Path, backend: BackendOptions, ray_options: RayOptions, *,
                 job: Job | None = None, guide: Path | None = None):
        self.backend = worker_backend(artifact, backend)
        ray = ray_module()
        connect(ray_options.join, num_cpus=None if ray_options.join else ray_options.workers)
        gpu = backend.provider != "cpu" or Path(artifact).suffix in (".plan", ".engine")
        remote = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_restarts=RESTARTS,
                            max_task_retries=RESTARTS)(ArtifactWorker)
        # held by the pool: a restarted worker reads them again in its constructor
        self.files = files = ray.put(artifact_files(artifact))
        self.guide_files = guide_files = None if guide is None else ray.put(
            artifact_files(guide))
        self.job = job
        self.actors = [remote.remote(files, self.backend, guide_files)
                       for _ in range(ray_options.workers)]
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

    def map_timed(self, requests: list[TimedRequest]) -> list:
        """Bench requests spread over the workers; each answer (samples, wall time per
        sample per batch) in request order."""
        ray = ray_module()
        refs = [self.actors[k % len(self.actors)].sample_timed.remote(r)
                for k, r in enumerate(requests)]
        return ray.get(refs)

    def close(self) -> None:
        ray = ray_module()
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
