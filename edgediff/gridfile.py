"""Tuned σ grids in a sidecar beside their artifact (``model.onnx.grids.json``):
one grid per (solver, steps, solver options), made by ``edgediff tune-grid``
(``edgediff.lab.tune``) and picked up by ``sample`` (``edgediff.lab.tuned``).

The sidecar names its artifact by sha256. A grid is tuned against one network's
trajectories, so a sidecar whose sha256 is not the artifact's (the model was
re-exported or retrained, or the file was copied beside another) is refused
here (``SidecarMismatchError``); the commands that pick grids up turn that into a
warning and sample on the schedule's grid, and ``tune-grid`` starts a new file.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_path, sha256_of

SUFFIX = ".grids.json"
FORMAT = "edgediff-grids/1"


class SidecarMismatchError(EdgediffError):
    """A sidecar that belongs to another artifact (its sha256 differs)."""


@dataclass(frozen=True)
class TunedEntry:
    """One tuned grid: ``sigmas`` (steps + 1 values, strictly decreasing, ending in
    0) for ``solver`` at ``steps`` with solver ``options`` (every non-grid option,
    defaults filled in), the grid it started from, the calibration it was tuned on
    (seed, first sample, number of samples, reference Heun steps) and the mean
    squared error against the reference before and after."""

    solver: str
    steps: int
    options: dict[str, Any]
    sigmas: list[float]
    default_sigmas: list[float]
    calibration: dict[str, int]
    objective_before: float
    objective_after: float
    evaluations: int = 0
    date: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        s = self.sigmas
        if (len(s) != self.steps + 1 or s[-1] != 0 or not all(map(math.isfinite, s))
                or any(a <= b for a, b in itertools.pairwise(s))):
            raise EdgediffError(f"a tuned grid for {self.solver}-{self.steps} must hold "
                                f"{self.steps + 1} strictly decreasing σ's ending in 0, got {s}")

    def matches(self, solver: str, steps: int, options: dict[str, Any]) -> bool:
        return (self.solver, self.steps, self.options) == (solver, steps, dict(options))


def sidecar_path(artifact: str | Path) -> Path:
    """Where ``artifact``'s tuned grids live: beside it, its name + .grids.json."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SUFFIX)


def read_grids(artifact: str | Path, sha256: str | None = None) -> list[TunedEntry]:
    """The tuned grids beside ``artifact`` ([] without a sidecar). A sidecar made for
    another artifact raises ``SidecarMismatchError``; ``sha256``: the artifact's, if known."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        entries = [TunedEntry(**e) for e in data["grids"]]
        owner = data["artifact_sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise EdgediffError(f"{path} is not an edgediff grid sidecar ({e}); delete it or make "
                            f"it again with edgediff tune-grid") from None
    sha256 = sha256 or sha256_of(artifact)
    if owner != sha256:
        raise SidecarMismatchError(f"{path} was tuned for another artifact (sha256 {owner[:12]}…, "
                              f"this one is {sha256[:12]}…); rerun edgediff tune-grid {artifact}")
    return entries


def find_grid(artifact: str | Path, solver: str, steps: int,
              options: dict[str, Any]) -> TunedEntry | None:
    """The tuned grid for (solver, steps, options) beside ``artifact``, or None."""
    for entry in read_grids(artifact):
        if entry.matches(solver, steps, options):
            return entry
    return None


def write_grid(artifact: str | Path, entry: TunedEntry) -> Path:
    """Add ``entry`` to ``artifact``'s sidecar (replacing the grid of the same solver,
    steps and options), atomically. A sidecar of another artifact is replaced."""
    sha256 = sha256_of(artifact)
    try:
        entries = read_grids(artifact, sha256)
    except SidecarMismatchError:
        entries = []
    entries = [e for e in entries if not e.matches(entry.solver, entry.steps, entry.options)]
    entries.append(entry)
    entries.sort(key=lambda e: (e.solver, e.steps, json.dumps(e.options, sort_keys=True)))
    path = sidecar_path(artifact)
    data = {"format": FORMAT, "artifact": Path(artifact).name, "artifact_sha256": sha256,
            "grids": [asdict(e) for e in entries]}
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return path
