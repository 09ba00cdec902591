"""Sharded generation: ``num`` samples of one artifact as fixed-size shards, any
number of them at a time, on this machine or on Ray (``edgediff.lab.cluster``).

Sample k of seed s depends on nothing but (s, k) and the solver, and a shard's
batches always start at the shard's first sample, so a shard's bytes do not
depend on which worker made it, when, or beside what. The output folder holds::

    manifest.json                      what was asked (artifact sha256, solver,
                                       seed, shard size) and every finished shard
    samples-00000000-00000256.npy      float32 [n, *sample_shape], one per shard
    labels-00000000-00000256.npy       int64 [n] (class-conditional runs)
    features-00000000-00000256.npy     the shard's feature moments (below)
    samples-00000000-00000256.png      a grid of the shard (``images=True``)
    features.npy                       all shards' moments, summed in shard order

Every file is written atomically, and a shard enters the manifest only after
its files are in place, so ``resume`` trusts exactly the shards the manifest
lists whose files still hash to what it records, and redoes the rest. A run
killed at any moment and resumed ends with the same bytes as one never stopped.

Feature moments stream: a shard's features f (the artifact's feature space:
the shipped digits features, the 2-D points themselves, or nothing) become
M = Σ [1, f]ᵀ[1, f], an (d+1)×(d+1) float64 matrix holding the count, the sum
and the sum of outer products. Moments add, so the total is the sum over
shards, and mean and covariance (hence a Fréchet distance) follow from it
without ever holding more than one shard in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_path, sha256_of

FORMAT, FORMAT_VERSION = "edgediff.generate", 1
MANIFEST = "manifest.json"
MAX_RAW_FEATURES = 1024  # raw values past this size: no moments (a (d+1)² matrix per shard)


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


# ---- feature moments ---------------------------------------------------------------


def feature_space(info) -> tuple[str, Callable[[np.ndarray], np.ndarray]] | None:
    """(name, f: samples -> [n, d] features) for the artifact's data, or None: the
    shipped digits features, the points themselves for 2-D data, else the raw
    values while they stay small."""
    ref = info.reference or {}
    if ref.get("kind") == "dataset" and ref.get("name") == "digits":
        from edgediff.lab.features import DigitsFeatures

        extractor = DigitsFeatures()
        return "digits-mlp-64", extractor
    dim = int(np.prod(info.sample_shape))
    if dim > MAX_RAW_FEATURES:
        return None
    return ("points" if dim <= 3 else "pixels"), lambda x: np.asarray(x).reshape(len(x), -1)


def moments(features: np.ndarray) -> np.ndarray:
    """M = Σ_i [1, f_i]ᵀ[1, f_i] in float64: count, sum and sum of outer products."""
    a = np.concatenate([np.ones((len(features), 1)), np.asarray(features, np.float64)], 1)
    return a.T @ a


def mean_cov(total: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, unbiased covariance, n) from summed moments."""
    n = round(total[0, 0])
    if n < 2:
        raise EdgediffError("feature moments need at least 2 samples")
    mean = total[0, 1:] / n
    cov = (total[1:, 1:] - n * np.outer(mean, mean)) / (n - 1)
    return mean, (cov + cov.T) / 2, n


def reference_moments(info) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The data's own (mean, cov) in the feature space, where edgediff knows them:
    the held-out digits, or the exact mixture's closed form."""
    ref = info.reference or {}
    if ref.get("kind") == "dataset" and ref.get("name") == "digits":
        from edgediff.lab.features import heldout_moments

        m = heldout_moments()
        return m["mean"], m["cov"], f"{m['n']} held-out digits"
    if ref.get("kind") == "gaussian_mixture":
        from edgediff.mixture import GaussianMixture

        mix = GaussianMixture.from_dict(ref["mixture"])
        w, mu, tau = (np.asarray(v, np.float64) for v in (mix.weights, mix.means, mix.stds))
        mean = w @ mu
        cov = sum(wk * (tk**2 * np.eye(mu.shape[1]) + np.outer(mk - mean, mk - mean))
                  for wk, mk, tk in zip(w, mu, tau, strict=True))
        return mean, cov, "the exact mixture (closed form)"
    return None


# ---- one shard -----------------------------------------------------------------------


def run_shard(denoiser, job: Job, shard: Shard, features=None, guide=None) -> ShardResult:
    """Samples ``shard.start … shard.stop−1`` in batches that start at the shard's
    first sample (so the bytes do not depend on who runs it), and their moments."""
    from edgediff import runtime

    labels = None if job.labels is None else np.asarray(job.labels[shard.start:shard.stop],
                                                        np.int64)
    x = runtime.sample(denoiser, len(shard), seed=job.seed, first=shard.start,
                       batch=job.batch, solver=job.solver, steps=job.steps,
                       options=job.options, labels=labels, guidance=job.guidance, guide=guide)
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


# ---- the folder ----------------------------------------------------------------------


@dataclass
class Manifest:
    job: dict[str, Any]
    shards: dict[int, dict[str, Any]] = field(default_factory=dict)  # start -> record
    complete: bool = False
    features: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                           "job": self.job, "complete": self.complete,
                           "shards": [self.shards[k] for k in sorted(self.shards)],
                           "features": self.features}, indent=1) + "\n"

    def write(self, folder: Path) -> None:
        with atomic_path(folder / MANIFEST) as tmp:
            Path(tmp).write_text(self.to_json())

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        path = folder / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError("not an edgediff generate manifest")
            if data.get("format_version", 0) > FORMAT_VERSION:
                raise ValueError(f"format {data['format_version']}: upgrade edgediff")
            return cls(data["job"], {r["start"]: r for r in data["shards"]},
                       bool(data.get("complete")), data.get("features"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise EdgediffError(f"{path} cannot be read ({e}); remove the folder to start "
                                f"over") from None


def _save_npy(path: Path, array: np.ndarray) -> str:
    """np.save (a fixed header and the raw bytes: the same array, the same file),
    atomically; returns the file's sha256."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    return sha256_of(path)


def write_shard(folder: Path, result: ShardResult, info, images: bool) -> dict[str, Any]:
    """The shard's files (samples last), and its manifest record."""
    shard = result.shard
    record: dict[str, Any] = {"start": shard.start, "stop": shard.stop, "files": {}}
    files = record["files"]
    if result.moments is not None:
        files[shard.name("features")] = _save_npy(folder / shard.name("features"),
                                                  result.moments)
    if result.labels is not None:
        files[shard.name("labels")] = _save_npy(folder / shard.name("labels"), result.labels)
    if images and len(info.sample_shape) == 3 and info.sample_shape[0] in (1, 3):
        from edgediff.lab.images import grid, to_uint8, write_png

        png = folder / shard.name("samples", "png")
        side = int(np.ceil(np.sqrt(len(shard))))
        with atomic_path(png) as tmp:
            write_png(tmp, grid(to_uint8(result.samples, info.data_range), columns=side),
                      scale=max(1, 256 // (side * info.sample_shape[2])))
        files[png.name] = sha256_of(png)
    files[shard.name("samples")] = _save_npy(folder / shard.name("samples"), result.samples)
    return record


def shard_is_valid(folder: Path, record: dict[str, Any]) -> bool:
    """Every file the record names is there with the sha256 it records."""
    try:
        return all((folder / name).is_file() and sha256_of(folder / name) == digest
                   for name, digest in record["files"].items())
    except (KeyError, AttributeError, OSError):
        return False


def _stale(path: Path) -> bool:
    """A temp file of ``atomic_path`` that an interruption left behind."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file()


def prepare(folder: Path, job: Job, resume: bool) -> Manifest:
    """The manifest to continue from: a fresh one for a new (or empty) folder, the
    folder's own under ``resume`` if it was made for the very same job."""
    folder = Path(folder)
    existing = Manifest.read(folder) if folder.is_dir() else None
    if existing is None:
        if folder.is_dir() and any(p for p in folder.iterdir() if not _stale(p)):
            raise EdgediffError(f"{folder} exists and is not a generate folder; choose an "
                                f"empty or new one")
        folder.mkdir(parents=True, exist_ok=True)
        for stale in filter(_stale, folder.iterdir()):
            stale.unlink()
        return Manifest(job.settings())
    if not resume:
        raise EdgediffError(f"{folder} already holds a generate run; pass --resume to finish "
                            f"it, or choose another folder")
    for stale in filter(_stale, folder.iterdir()):
        stale.unlink()
    if existing.job != job.settings():
        changed = sorted(k for k in set(existing.job) | set(job.settings())
                         if existing.job.get(k) != job.settings().get(k))
        raise EdgediffError(f"{folder} was made with other settings ({', '.join(changed)} "
                            f"differ); --resume continues the same run only")
    return existing


def generate(folder: Path, job: Job, info, pool, *, resume: bool = False,
             images: bool = False,
             progress: Callable[[ShardResult | Shard, int, int], None] | None = None
             ) -> Manifest:
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
                               "sha256": _save_npy(folder / "features.npy", total)}
    mean, cov, n = mean_cov(total) if total[0, 0] >= 2 else (None, None, int(total[0, 0]))
    summary["n"] = n
    ref = reference_moments(info)
    if ref is not None and mean is not None:
        from edgediff.lab.metrics import frechet_distance_from_moments

        summary["frechet_distance"] = frechet_distance_from_moments(mean, cov, ref[0], ref[1])
        summary["against"] = ref[2]
    return summary


def generate_artifact(artifact: Path, out: Path, *, num: int, solver: str | None = None,
                      steps: int | None = None, options: dict | None = None, seed: int = 0,
                      shard_size: int = 256, batch: int = 64, classes: str | None = None,
                      guidance: float | None = None, guide: Path | None = None,
                      provider: str = "cpu", threads: int | None = None,
                      cuda_graph: bool = False, metadata_file: Path | None = None,
                      images: bool = False, resume: bool = False,
                      ray_address: str | None = None, workers: int = 2,
                      pool_factory: Callable[[Job], Any] | None = None,
                      progress=None) -> Manifest:
    """``edgediff generate``: resolve the job from the artifact's metadata and the
    caller's choices, then ``generate`` on this machine or on Ray (``ray_address``:
    "local" starts a cluster, "auto" joins one). ``pool_factory(job)`` makes the
    pool instead (tests reach into a Ray pool's workers that way)."""
    from edgediff import runtime
    from edgediff.conditioning import labels_from_text
    from edgediff.metadata import read_metadata_json
    from edgediff.settings import SolverSettings

    artifact, out = Path(artifact), Path(out)
    if ray_address is not None:
        from edgediff.lab.cluster import ray_module

        ray_module()  # a missing extra stops here, before any work
    metadata = read_metadata_json(metadata_file)
    D = runtime.load(artifact, provider=provider, threads=threads, cuda_graph=cuda_graph,
                     metadata=metadata, max_batch=min(batch, shard_size))
    settings = SolverSettings.resolve(D.info, solver, steps, options)
    labels = labels_from_text(classes, D.info, num)
    guide_D = None
    if guide is not None:
        guide_D = runtime.load(guide, provider=provider, threads=threads,
                               max_batch=min(batch, shard_size))
    job = Job(sha256_of(artifact), artifact.name, settings.solver, settings.steps,
              dict(settings.options), seed, num if labels is None else len(labels),
              shard_size, min(batch, shard_size),
              None if labels is None else [int(v) for v in labels], guidance,
              None if guide is None else sha256_of(guide))
    pool = None if pool_factory is None else pool_factory(job)
    if pool is None and ray_address is not None:
        if metadata:
            raise EdgediffError("--metadata is for local runs; give Ray workers an artifact "
                                "exported by edgediff")
        from edgediff.lab.cluster import RayPool

        pool = RayPool(artifact, job, workers=workers, threads=threads or 1, guide=guide,
                       address=None if ray_address == "local" else ray_address,
                       provider=provider)
    pool = pool or LocalPool(D, job, guide_D)
    try:
        return generate(out, job, D.info, pool, resume=resume, images=images,
                        progress=progress)
    finally:
        pool.close()
