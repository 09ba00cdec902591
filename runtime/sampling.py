"""Sampling from an artifact: the metadata picks the shape, σ range, schedule and
default sampler; the caller picks at most a solver, steps, options and seeds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError
from edgediff.runtime import ode, stochastic
from edgediff.runtime._call import Callback, Denoiser
from edgediff.runtime.noise import NoiseStreams
from edgediff.schedules import DDPM_SPACINGS, DiscreteSchedule, EDMSchedule, edm_sigmas
from edgediff.solvers import check_sigmas, check_solver

log = logging.getLogger(__name__)

SOLVERS = {
    "ddpm": stochastic.ddpm,
    "euler_maruyama": stochastic.euler_maruyama,
    "euler": ode.euler,
    "heun": ode.heun,
    "edm": stochastic.edm,
    "ddim": stochastic.ddim,
    "dpmpp_2m": ode.dpmpp_2m,
}
# solver options each loop takes, and which loops step in the schedule's own time
OPTIONS = {"ddpm": ("variance", "clip"), "ddim": ("eta", "clip"),
           "edm": ("S_churn", "S_tmin", "S_tmax", "S_noise")}
GRID_OPTIONS = ("spacing", "rho")
IN_SCHEDULE_TIME = ("euler", "heun", "euler_maruyama")
STOCHASTIC = ("ddpm", "ddim", "euler_maruyama", "edm")
DEFAULT_STEPS = {"ddpm": 1000, "euler_maruyama": 1000, "euler": 50, "heun": 18, "edm": 64,
                 "ddim": 50, "dpmpp_2m": 10}
SIGMA_RANGE_SLACK = 1e-6  # relative: float32 round-off at the ends of a grid


@dataclass
class SamplerSettings:
    """A solver, its step count, and its options (solver and grid options)."""

    solver: str
    steps: int
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        check_solver(self.solver)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise EdgediffError(f"steps must be an integer ≥ 1, got {self.steps!r}")
        allowed = OPTIONS.get(self.solver, ()) + GRID_OPTIONS
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise EdgediffError(f"{self.solver} takes no option {', '.join(unknown)}; its "
                                f"options are {', '.join(allowed)}")
        if not isinstance(self.options.get("clip", False), bool):
            raise EdgediffError(f"clip is true or false, got {self.options['clip']!r}")

    @classmethod
    def resolve(cls, info: ArtifactInfo, solver: str | None = None, steps: int | None = None,
                options: dict[str, Any] | None = None) -> SamplerSettings:
        """The artifact's default sampler, overridden by what the caller gives."""
        default = dict(info.default_sampler)
        default_solver = default.pop("solver", "heun")
        default_steps = default.pop("steps", DEFAULT_STEPS[default_solver])
        solver = check_solver(solver or default_solver)
        if solver == default_solver:
            base = default
        else:  # keep only the defaults that make sense for the chosen solver
            base = {k: v for k, v in default.items()
                    if k in OPTIONS.get(solver, ()) + GRID_OPTIONS}
        if steps is None:
            steps = default_steps if solver == default_solver else DEFAULT_STEPS[solver]
        return cls(solver, steps, {**base, **(options or {})})


def sigma_grid(info: ArtifactInfo, steps: int, *, spacing: str | None = None,
               rho: float | None = None) -> np.ndarray:
    """The artifact schedule's own σ grid with ``steps`` steps, ending in 0."""
    schedule = info.schedule
    if isinstance(schedule, DiscreteSchedule):
        if rho is not None:
            raise EdgediffError("rho shapes EDM grids; this model has a discrete (DDPM) schedule, "
                                "whose grid option is spacing")
        spacing = spacing or "leading"
        if spacing not in DDPM_SPACINGS:
            raise EdgediffError(f"unknown spacing {spacing!r}; choose one of "
                                f"{', '.join(DDPM_SPACINGS)}")
        return schedule.sigmas(steps, spacing)
    if spacing is not None:
        raise EdgediffError("spacing applies to discrete (DDPM) schedules; this model's is "
                            f"{type(schedule).__name__}")
    if rho is not None:
        if not isinstance(schedule, EDMSchedule):
            raise EdgediffError(f"rho shapes EDM grids; this model's schedule is "
                                f"{type(schedule).__name__}")
        return edm_sigmas(steps, schedule.sigma_min, schedule.sigma_max, rho)
    return schedule.sigmas(steps)


def check_grid_range(info: ArtifactInfo, sigmas) -> list[float]:
    """Refuse (never clamp) a σ grid that leaves the model's trained range."""
    sigmas = check_sigmas(sigmas)
    lo, hi = min(sigmas[:-1]), max(sigmas)
    if hi > info.sigma_max * (1 + SIGMA_RANGE_SLACK) or lo < info.sigma_min * (
            1 - SIGMA_RANGE_SLACK):
        raise EdgediffError(f"the σ grid spans [{lo:.6g}, {hi:.6g}] but the model knows "
                            f"[{info.sigma_min:.6g}, {info.sigma_max:.6g}]; give a grid inside "
                            f"that range (its final 0 aside)")
    return sigmas


def sample_batch(denoiser: Denoiser, settings: SamplerSettings, sigmas: list[float],
                 streams: NoiseStreams, callback: Callback = None) -> np.ndarray:
    """Run one batch: x̂_T = prior std·z, then the solver's step loop."""
    info = denoiser.info
    x = streams.initial()
    x *= float(info.schedule.prior_std(sigmas[0]))
    kwargs = loop_options(info, settings)
    if settings.solver in STOCHASTIC:
        kwargs["noise"] = streams
    return SOLVERS[settings.solver](denoiser, x, sigmas, callback=callback, **kwargs)


def loop_options(info: ArtifactInfo, settings: SamplerSettings) -> dict[str, Any]:
    """The keyword arguments a step loop takes for ``settings`` on this artifact (the
    same for the torch reference): solver options, the schedule for loops in its
    own time, and ``clip`` as the data range."""
    kwargs = {k: v for k, v in settings.options.items() if k not in GRID_OPTIONS}
    if kwargs.pop("clip", False):
        kwargs["clip"] = info.data_range
    if settings.solver in IN_SCHEDULE_TIME:
        kwargs["schedule"] = info.schedule
    return kwargs


def sample(denoiser: Denoiser, num: int, *, seed: int = 0, first: int = 0, batch: int = 16,
           solver: str | None = None, steps: int | None = None,
           options: dict[str, Any] | None = None, sigmas=None,
           callback: Callback = None, on_batch: Callable[[int, int], None] | None = None,
           ) -> np.ndarray:
    """Samples ``first … first+num−1`` of seed ``seed``, float32 [num, *sample_shape].

    Sample k depends only on (seed, k) and the sampler — not on ``batch``.
    ``sigmas`` replaces the schedule's grid (then ``steps`` is its length − 1).
    ``on_batch(done, num)`` reports progress after each batch.
    """
    info = denoiser.info
    for name, value, low in (("num", num, 1), ("batch", batch, 1), ("seed", seed, 0),
                             ("first", first, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise EdgediffError(f"{name} must be an integer ≥ {low}, got {value!r}")
    if sigmas is not None:
        sigmas = check_grid_range(info, sigmas)
        steps = len(sigmas) - 1
    settings = SamplerSettings.resolve(info, solver, steps, options)
    if sigmas is None:
        grid = sigma_grid(info, settings.steps, spacing=settings.options.get("spacing"),
                          rho=settings.options.get("rho"))
        sigmas = check_grid_range(info, grid)
    out = np.empty((num, *info.sample_shape), dtype=np.float32)
    for start in range(0, num, batch):
        stop = min(start + batch, num)
        streams = NoiseStreams(seed, range(first + start, first + stop), info.sample_shape)
        out[start:stop] = sample_batch(denoiser, settings, sigmas, streams, callback)
        if on_batch is not None:
            on_batch(stop, num)
    return out


def load(path: str | Path, *, provider: str = "cpu", threads: int | None = None,
         cuda_graph: bool = False, metadata: dict | None = None, max_batch: int = 16
         ) -> Denoiser:
    """Open an artifact: ``.onnx`` with ONNX Runtime (``provider`` cpu, cuda or
    tensorrt), ``.plan`` with TensorRT (it must carry its sidecar). ``metadata``
    overrides or supplies the ONNX file's edgediff metadata (docs/artifact.md).
    ``max_batch`` bounds the TensorRT execution provider's profile (a plan's is
    fixed when it is built)."""
    path = Path(path)
    if not path.exists():
        raise EdgediffError(f"no such file: {path}")
    if path.is_dir():
        raise EdgediffError(f"{path} is a folder; pass an exported .onnx file or a .plan")
    if path.suffix == ".onnx":
        from edgediff.runtime.ort import OrtDenoiser

        return OrtDenoiser(path, provider=provider, threads=threads, metadata=metadata,
                           max_batch=max_batch)
    if path.suffix in (".plan", ".engine"):
        if metadata:
            raise EdgediffError("a plan's metadata is its sidecar's; --metadata is for ONNX "
                                "files")
        from edgediff.runtime.tensorrt import TrtDenoiser

        return TrtDenoiser(path, cuda_graph=cuda_graph)
    raise EdgediffError(f"{path} is neither an .onnx file nor a TensorRT .plan; export a model "
                        f"with 'edgediff export' first")

