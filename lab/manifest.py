"""A generate folder's bookkeeping: the manifest, the shards' files, and what
``--resume`` may trust. The folder holds::

    manifest.json                      what was asked (artifact sha256, solver,
                                       seed, shard size) and every finished shard
    samples-00000000-00000256.npy      float32 [n, *sample_shape], one per shard
    labels-00000000-00000256.npy       int64 [n] (class-conditional runs)
    features-00000000-00000256.npy     the shard's feature moments (edgediff.lab.moments)
    samples-00000000-00000256.png      a grid of the shard (``images=True``)
    features.npy                       all shards' moments, summed in shard order

Every file is written atomically, and a shard enters the manifest only after
its files are in place, so ``resume`` trusts exactly the shards the manifest
lists whose files still hash to what it records, and redoes the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_path, sha256_of
from edgediff.lab.shards import Job, ShardResult

FORMAT, FORMAT_VERSION = "edgediff.generate", 1
MANIFEST = "manifest.json"


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


def save_npy(path: Path, array: np.ndarray) -> str:
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
        files[shard.name("features")] = save_npy(folder / shard.name("features"),
                                                 result.moments)
    if result.labels is not None:
        files[shard.name("labels")] = save_npy(folder / shard.name("labels"), result.labels)
    if images and len(info.sample_shape) == 3 and info.sample_shape[0] in (1, 3):
        from edgediff.lab.images import grid, to_uint8, write_png

        png = folder / shard.name("samples", "png")
        side = int(np.ceil(np.sqrt(len(shard))))
        with atomic_path(png) as tmp:
            write_png(tmp, grid(to_uint8(result.samples, info.data_range), columns=side),
                      scale=max(1, 256 // (side * info.sample_shape[2])))
        files[png.name] = sha256_of(png)
    files[shard.name("samples")] = save_npy(folder / shard.name("samples"), result.samples)
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
