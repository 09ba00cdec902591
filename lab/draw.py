"""``edgediff sample`` as a library call: resolve what to draw from the artifact's
metadata and the caller's choices, draw it with the runtime, write the files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.conditioning import check_interval, labels_from_text
from edgediff.errors import EdgediffError
from edgediff.settings import SolverSettings


@dataclass
class Draw:
    """One resolved draw: the solver settings, the labels (one per sample) and, for
    ``--class all`` or lists, how many samples per class (one grid row each)."""

    denoiser: Any
    settings: SolverSettings
    num: int
    seed: int
    batch: int
    labels: np.ndarray | None
    per_class: int | None
    guidance: float | None
    guide: Any
    tensors: dict[str, np.ndarray] | None = None  # tensor conditioning (--cond)
    guidance_interval: tuple[float, float] | None = None  # guided only for LO < σ ≤ HI
    sigmas: list[float] | None = None  # a tuned grid (edgediff.lab.tuned), else the settings'
    grid_note: str | None = None  # which grid, for the user, when a sidecar is involved

    @property
    def steps_total(self) -> int:
        """Solver steps over all batches: the progress bar's length."""
        return -(-self.num // self.batch) * self.settings.steps

    def run(self, folder: Path, artifact: Path, *, figures: bool = True,
            callback: Callable[[int], None] | None = None) -> list[Path]:
        """Sample, then write samples.npz (and the figure) into ``folder``."""
        from edgediff.lab.outputs import write_samples
        from edgediff.runtime import Condition, RunOptions, sample

        s = self.settings
        samples = sample(self.denoiser, self.num, seed=self.seed, solver=s.solver,
                         steps=s.steps, options=s.options,
                         condition=Condition(self.labels, self.guidance, self.guide,
                                             self.tensors, self.guidance_interval),
                         run=RunOptions(batch=self.batch, callback=callback,
                                        sigmas=self.sigmas))
        meta = {"artifact": str(artifact), "solver": s.solver, "steps": s.steps,
                "options": s.options, "seed": self.seed, "num": self.num,
                "guidance": self.guidance,
                "guidance_interval": (None if self.guidance_interval is None
                                      else list(self.guidance_interval)),
                "guide": None if self.guide is None else str(self.guide.path),
                "sigmas": self.sigmas}
        return write_samples(folder, samples, self.denoiser.info, meta, self.labels,
                             self.per_class, figures=figures)


@dataclass(frozen=True)
class DrawOptions:
    """What ``edgediff sample`` is asked: ``num`` samples (with ``classes`` "all" or a
    list: per class) of ``seed``, ``batch`` at a time, with the artifact's default
    solver or ``solver``/``steps``/``options``, at guidance scale ``guidance``."""

    num: int
    seed: int = 0
    batch: int = 16
    solver: str | None = None
    steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    classes: str | None = None
    guidance: float | None = None
    guidance_interval: tuple[float, float] | None = None  # LO < σ ≤ HI

    def __post_init__(self):
        for name, low in (("num", 1), ("batch", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise EdgediffError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if self.guidance_interval is not None:
            if self.guidance is None:
                raise EdgediffError("a guidance interval needs a guidance scale (--guidance W)")
            object.__setattr__(self, "guidance_interval", check_interval(self.guidance_interval))


def plan_draw(denoiser, options: DrawOptions, guide=None) -> Draw:
    """Everything checked before the first step: solver, options, grid (an exact one
    from --sigmas/--timesteps, else a tuned one from the artifact's sidecar, else the
    schedule's), labels, guide (autoguidance's second, opened artifact)."""
    from edgediff.grids import exact_grid, settings_grid

    o, info = options, denoiser.info
    asked = dict(o.options)
    exact = exact_grid(info, asked, o.steps)
    steps = o.steps if exact is None else len(exact) - 1
    settings = SolverSettings.resolve(info, o.solver, steps, asked)
    settings_grid(info, settings)
    labels = labels_from_text(o.classes, info, o.num)
    per_class = o.num if labels is not None and len(labels) > o.num else None
    if guide is not None:
        from edgediff.runtime.guidance import check_guide

        check_guide(info, guide.info)
    from edgediff.lab.tuned import tuned_sigmas

    if exact is not None:
        sigmas, note = exact, "σ grid: " + ", ".join(f"{s:.6g}" for s in exact[:-1]) + " (asked)"
    else:
        sigmas, note = tuned_sigmas(getattr(denoiser, "path", None), info, settings, asked)
    return Draw(denoiser, settings, o.num if labels is None else len(labels), o.seed, o.batch,
                labels, per_class, o.guidance, guide, guidance_interval=o.guidance_interval,
                sigmas=sigmas, grid_note=note)
