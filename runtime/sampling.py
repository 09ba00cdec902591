"""Sampling from an artifact: the metadata picks the shape, σ range, schedule and
default solver; the caller picks at most a solver, steps, options and seeds."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.catalogue import SOLVER_NAMES, spec
from edgediff.conditioning import check_labels
from edgediff.errors import EdgediffError
from edgediff.grids import check_grid_range, settings_grid
from edgediff.runtime import multistep, ode, stochastic  # noqa: F401 (they register their loops)
from edgediff.runtime._call import Callback, Denoiser
from edgediff.runtime.backends import BackendOptions, open_artifact
from edgediff.runtime.guidance import Condition, check_guide, guided_denoiser
from edgediff.settings import SolverSettings, loop_options
from edgediff.streams import NoiseStreams
from edgediff.tensor_conditioning import check_tensors

log = logging.getLogger(__name__)

# every catalogue solver's NumPy loop (an unregistered one fails here, at import)
SOLVERS = {name: spec(name).loop("numpy") for name in SOLVER_NAMES}


def sample_batch(denoiser: Denoiser, settings: SolverSettings, sigmas: list[float],
                 streams: NoiseStreams, callback: Callback = None) -> np.ndarray:
    """Run one batch: x̂_T = prior std·z, then the solver's step loop."""
    info = denoiser.info
    x = streams.initial()
    x *= float(info.schedule.prior_std(sigmas[0]))
    kwargs = loop_options(info, settings)
    if settings.spec.stochastic:
        kwargs["noise"] = streams
    return SOLVERS[settings.solver](denoiser, x, sigmas, callback=callback, **kwargs)


def _count(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise EdgediffError(f"{name} must be an integer ≥ {low}, got {value!r}")


@dataclass(frozen=True, eq=False)
class RunOptions:
    """How a run is carried out, checked when made: samples ``first`` … of the seed's
    streams, ``batch`` at a time (sample k depends only on (seed, k), not on the
    batch); ``sigmas`` replaces the schedule's grid; ``callback`` sees every step
    (``edgediff.runtime._call.report``); ``on_batch(done, num)`` reports progress
    after each batch."""

    first: int = 0
    batch: int = 16
    sigmas: Sequence[float] | None = None
    callback: Callback = None
    on_batch: Callable[[int, int], None] | None = None

    def __post_init__(self):
        _count("batch", self.batch, 1)
        _count("first", self.first, 0)


def sample(denoiser: Denoiser, num: int, *, seed: int = 0, solver: str | None = None,
           steps: int | None = None, options: dict[str, Any] | None = None,
           condition: Condition | None = None, run: RunOptions | None = None) -> np.ndarray:
    """Samples ``first … first+num−1`` of seed ``seed``, float32 [num, *sample_shape],
    with the artifact's default solver or ``solver``, ``steps`` and ``options``.

    ``run`` (``RunOptions``) sets the first sample, the batch, a σ grid of the
    caller's (then ``steps`` is its length − 1) and the callbacks. ``condition``
    (``Condition``) gives a class-conditional model its labels and a guidance scale:
    classifier-free guidance against the null label, or with ``condition.guide`` (a
    second, weaker artifact) autoguidance (``edgediff.runtime.guidance``).
    """
    info = denoiser.info
    run = RunOptions() if run is None else run
    condition = Condition() if condition is None else condition
    _count("num", num, 1)
    _count("seed", seed, 0)
    sigmas = run.sigmas
    if sigmas is not None:
        sigmas = check_grid_range(info, sigmas)
        steps = len(sigmas) - 1
    settings = SolverSettings.resolve(info, solver, steps, options)
    if sigmas is None:
        sigmas = settings_grid(info, settings)
    labels = check_labels(info, condition.labels, num)
    tensors = check_tensors(info.tensors, condition.tensors, num)
    if condition.guide is not None:
        check_guide(info, condition.guide.info)
    out = np.empty((num, *info.sample_shape), dtype=np.float32)
    for start in range(0, num, run.batch):
        stop = min(start + run.batch, num)
        streams = NoiseStreams(seed, range(run.first + start, run.first + stop),
                               info.sample_shape)
        D = guided_denoiser(denoiser, None if labels is None else labels[start:stop],
                            condition.guidance, condition.guide, {
                                k: v if len(v) == 1 else v[start:stop] for k, v in tensors.items()
                            }, condition.guidance_interval) if condition.given else denoiser
        out[start:stop] = sample_batch(D, settings, sigmas, streams, run.callback)
        if run.on_batch is not None:
            run.on_batch(stop, num)
    return out


def load(path: str | Path, options: BackendOptions | None = None,
         **shorthands: Any) -> Denoiser:
    """Open an artifact with the engine its suffix names (``edgediff.runtime.backends``):
    ``.onnx`` with ONNX Runtime (or OpenVINO: ``engine="openvino"``), ``.plan`` with
    TensorRT (it must carry its sidecar). ``options`` (``BackendOptions``) say how;
    keywords are shorthands for its fields (``provider``, ``threads``, ``cuda_graph``,
    ``metadata``, ``max_batch``, ``engine``, ``precision``, ``device``:
    ``runtime.load(path, threads=2)``, ``runtime.load(path, engine="openvino",
    precision="bf16")``) and override it; None leaves a field as it is.
    (``runtime.load`` itself is ``edgediff.runtime.pipeline.load``, which also opens
    bundle folders.)"""
    known = {f.name for f in fields(BackendOptions)}
    unknown = sorted(set(shorthands) - known)
    if unknown:
        raise EdgediffError(f"runtime.load takes no keyword {unknown[0]!r}; the shorthands are "
                            f"BackendOptions' fields: {', '.join(sorted(known))}")
    given = {k: v for k, v in shorthands.items() if v is not None}
    options = BackendOptions() if options is None else options
    if given:
        options = replace(options, **given)
    return open_artifact(path, options)
