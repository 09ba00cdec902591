"""Shards: ``num`` samples of one artifact as fixed-size pieces of work.

Sample k of seed s depends on nothing but (s, k) and the solver, and a shard's
batches always start at the shard's first sample, so a shard's bytes do not
depend on which worker made it, when, or beside what (``edgediff.lab.generate``
writes them; ``edgediff.lab.cluster`` runs them on Ray).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.lab.moments import feature_space, moments


@dataclass(frozen=True)
class Job:
    """Everything that decides the output bytes (and nothing that does not: not the
    number of workers, where they run, or how many threads ONNX Runtime gets)."""

    artifact_sha256: str
    artifact_file: str
    solver: str
    steps: int
    options: dict[str, Any]
    seed: int
    num: int
    shard_size: int
    batch: int
    labels: list[int] | None = None   # one class id per sample, or None
    guidance: float | None = None
    guide_sha256: str | None = None
    guidance_interval: list[float] | None = None  # guided only for LO < σ ≤ HI
    sigmas: list[float] | None = None  # an exact grid (--sigmas/--timesteps), else the settings'

    def __post_init__(self):
        for name in ("num", "shard_size", "batch"):
            if getattr(self, name) < 1:
                raise EdgediffError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.labels is not None and len(self.labels) != self.num:
            raise EdgediffError(f"{len(self.labels)} labels for {self.num} samples")

    def settings(self) -> dict[str, Any]:
        """The manifest's record of the job (labels by their count per class)."""
        out = {k: v for k, v in asdict(self).items() if k != "labels"}
        if self.labels is not None:
            ids, counts = np.unique(np.asarray(self.labels), return_counts=True)
            out["classes"] = {str(int(i)): int(c) for i, c in zip(ids, counts, strict=True)}
        return out


@dataclass(frozen=True)
class Shard:
    start: int
    stop: int
    width: int = 8  # digits in file names (more when num needs them)

    def name(self, kind: str, suffix: str = "npy") -> str:
        return f"{kind}-{self.start:0{self.width}d}-{self.stop:0{self.width}d}.{suffix}"

    def __len__(self) -> int:
        return self.stop - self.start


def plan_shards(num: int, shard_size: int) -> list[Shard]:
    """[0, num) in shards of ``shard_size`` (the last one shorter)."""
    width = max(8, len(str(num)))
    return [Shard(s, min(s + shard_size, num), width) for s in range(0, num, shard_size)]


@dataclass
class ShardResult:
    """What a worker returns for one shard."""

    shard: Shard
    samples: np.ndarray
    labels: np.ndarray | None
    moments: np.ndarray | None
    worker: str = ""  # who made it (host:pid), for progress and the retry test


def run_shard(denoiser, job: Job, shard: Shard, features=None, guide=None) -> ShardResult:
    """Samples ``shard.start … shard.stop−1`` in batches that start at the shard's
    first sample (so the bytes do not depend on who runs it), and their moments
    (``edgediff.lab.moments``)."""
    from edgediff import runtime

    labels = None if job.labels is None else np.asarray(job.labels[shard.start:shard.stop],
                                                        np.int64)
    x = runtime.sample(denoiser, len(shard), seed=job.seed, solver=job.solver, steps=job.steps,
                       options=job.options,
                       condition=runtime.Condition(labels=labels, guidance=job.guidance,
                                                   guide=guide,
                                                   guidance_interval=job.guidance_interval),
                       run=runtime.RunOptions(first=shard.start, batch=job.batch,
                                              sigmas=job.sigmas))
    m = None if features is None else moments(features(x))
    return ShardResult(shard, x, labels, m)


class LocalPool:
    """Shards one after another in this process, the artifact loaded once."""

    def __init__(self, denoiser, job: Job, guide=None):
        self.denoiser, self.job, self.guide = denoiser, job, guide
        space = feature_space(denoiser.info)
        self.features = None if space is None else space[1]

    def run(self, shards: Iterable[Shard]) -> Iterator[ShardResult]:
        for shard in shards:
            yield run_shard(self.denoiser, self.job, shard, self.features, self.guide)

    def close(self) -> None:
        pass
