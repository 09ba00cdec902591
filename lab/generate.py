"""Sharded generation: ``num`` samples of one artifact as fixed-size shards, any
number of them at a time, on this machine or on Ray (``edgediff.lab.cluster``).

The pieces: ``edgediff.lab.shards`` (what a shard is, and running one),
``edgediff.lab.manifest`` (the folder's files and what ``resume`` trusts) and
``edgediff.lab.moments`` (the streamed feature statistics). A run killed at any
moment and resumed ends with the same bytes as one never stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.conditioning import check_interval
from edgediff.errors import EdgediffError
from edgediff.fileio import sha256_of
from edgediff.lab.cluster import RayOptions
from edgediff.lab.manifest import Manifest, prepare, save_npy, shard_is_valid, write_shard
from edgediff.lab.moments import feature_space, mean_cov, reference_moments
from edgediff.lab.shards import Job, LocalPool, Shard, ShardResult, plan_shards
from edgediff.runtime.backends import BackendOptions

Progress = Callable[[ShardResult | Shard, int, int], None]


def _at_least_one(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EdgediffError(f"{name} must be an integer ≥ 1, got {value!r}")


@dataclass(frozen=True)
class GenerateOptions:
    """What ``edgediff generate`` is asked, checked when made.

    ``num`` samples (with ``classes`` "all" or a list: per class) of ``seed``, with
    the artifact's default solver or ``solver``/``steps``/``options``, in shards of
    ``shard_size`` and batches of ``batch``; ``classes``, ``guidance`` and
    ``guide`` (a second artifact: autoguidance) for class-conditional models;
    ``images`` adds a PNG grid per shard; ``resume`` continues the run in the
    folder. ``backend`` says how the artifact is opened, here and on every Ray
    worker (``ray``: None runs here); its ``max_batch`` is the job's batch."""

    num: int
    solver: str | None = None
    steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    shard_size: int = 256
    batch: int = 64
    classes: str | None = None
    guidance: float | None = None
    guide: Path | None = None
    guidance_interval: tuple[float, float] | None = None  # guided only for LO < σ ≤ HI
    images: bool = False
    resume: bool = False
    backend: BackendOptions = field(default_factory=BackendOptions)
    ray: RayOptions | None = None

    def __post_init__(self):
        for name in ("num", "shard_size", "batch"):
            _at_least_one(name, getattr(self, name))
        if self.seed < 0:
            raise EdgediffError(f"seed must be ≥ 0, got {self.seed}")
        if self.guide is not None and self.guidance is None:
            raise EdgediffError("a guiding model needs a guidance scale (--guidance W)")
        if self.guidance_interval is not None:
            if self.guidance is None:
                raise EdgediffError("a guidance interval needs a guidance scale (--guidance W)")
            object.__setattr__(self, "guidance_interval", check_interval(self.guidance_interval))

    @property
    def job_batch(self) -> int:
        """Samples per denoiser call: a batch never spans two shards."""
        return min(self.batch, self.shard_size)


def generate(folder: Path, job: Job, info, pool, *, resume: bool = False,
             images: bool = False, progress: Progress | None = None) -> Manifest:
    """Every shard of ``job`` not already done (and valid) made by ``pool`` and
    written into ``folder``; then the summed feature moments. ``progress(item,
    done, total)`` after each shard (a ``Shard`` for one kept from before)."""
    folder = Path(folder)
    manifest = prepare(folder, job, resume)
    shards = plan_shards(job.num, job.shard_size)
    todo, done = [], 0
    for shard in shards:
        record = manifest.shards.get(shard.start)
        if record is not None and record["stop"] == shard.stop and shard_is_valid(folder,
                                                                                  record):
            done += 1
            if progress:
                progress(shard, done, len(shards))
        else:
            manifest.shards.pop(shard.start, None)
            todo.append(shard)
    manifest.complete, manifest.features = False, None
    manifest.write(folder)
    for result in pool.run(todo):
        manifest.shards[result.shard.start] = write_shard(folder, result, info, images)
        manifest.write(folder)  # the shard counts only once its files are in place
        done += 1
        if progress:
            progress(result, done, len(shards))
    manifest.features = summarize(folder, shards, info)
    manifest.complete = True
    manifest.write(folder)
    return manifest


def summarize(folder: Path, shards: list[Shard], info) -> dict[str, Any] | None:
    """Sum the shards' moments in shard order (one shard in memory at a time), write
    features.npy, and the Fréchet distance to the data's moments where known."""
    space = feature_space(info)
    if space is None:
        return None
    total = None
    for shard in shards:
        m = np.load(folder / shard.name("features"), allow_pickle=False)
        total = m.copy() if total is None else total + m
    summary: dict[str, Any] = {"space": space[0], "file": "features.npy",
                               "sha256": save_npy(folder / "features.npy", total)}
    mean, cov, n = mean_cov(total) if total[0, 0] >= 2 else (None, None, int(total[0, 0]))
    summary["n"] = n
    ref = reference_moments(info)
    if ref is not None and mean is not None:
        from edgediff.lab.metrics import frechet_distance_from_moments

        summary["frechet_distance"] = frechet_distance_from_moments(mean, cov, ref[0], ref[1])
        summary["against"] = ref[2]
    return summary


def generate_artifact(artifact: Path, out: Path, options: GenerateOptions, *,
                      pool_factory: Callable[[Job], Any] | None = None,
                      progress: Progress | None = None) -> Manifest:
    """``edgediff generate``: resolve the job from the artifact's metadata and
    ``options``, then ``generate`` on this machine or on Ray. ``pool_factory(job)``
    makes the pool instead (tests reach into a Ray pool's workers that way)."""
    from edgediff import runtime
    from edgediff.conditioning import labels_from_text
    from edgediff.settings import SolverSettings

    o = options
    artifact, out = Path(artifact), Path(out)
    if o.ray is not None:
        from edgediff.lab.cluster import ray_module

        ray_module()  # a missing extra stops here, before any work
    backend = replace(o.backend, max_batch=o.job_batch)
    D = runtime.load(artifact, backend)
    from edgediff.grids import exact_grid

    asked = dict(o.options)
    exact = exact_grid(D.info, asked, o.steps)
    settings = SolverSettings.resolve(D.info, o.solver,
                                      o.steps if exact is None else len(exact) - 1, asked)
    if exact is None:  # a grid tuned for these settings (edgediff tune-grid), if any
        from edgediff.lab.tuned import tuned_sigmas

        exact, _ = tuned_sigmas(artifact, D.info, settings, asked)  # the manifest records it
    labels = labels_from_text(o.classes, D.info, o.num)
    guide_D = None if o.guide is None else runtime.load(o.guide, replace(backend,
                                                                         metadata=None))
    job = Job(sha256_of(artifact), artifact.name, settings.solver, settings.steps,
              dict(settings.options), o.seed, o.num if labels is None else len(labels),
              o.shard_size, o.job_batch,
              None if labels is None else [int(v) for v in labels], o.guidance,
              None if o.guide is None else sha256_of(o.guide),
              None if o.guidance_interval is None else list(o.guidance_interval), exact)
    pool = None if pool_factory is None else pool_factory(job)
    if pool is None and o.ray is not None:
        from edgediff.lab.cluster import RayPool

        pool = RayPool(artifact, backend, o.ray, job=job, guide=o.guide)
    pool = pool or LocalPool(D, job, guide_D)
    try:
        return generate(out, job, D.info, pool, resume=o.resume, images=o.images,
                        progress=progress)
    finally:
        pool.close()
