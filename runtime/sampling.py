"""Sampling from an artifact: the metadata picks the shape, σ range, schedule and
default solver; the caller picks at most a solver, steps, options and seeds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.catalogue import SOLVER_NAMES, spec
from edgediff.conditioning import check_guidance, check_labels
from edgediff.errors import EdgediffError
from edgediff.grids import check_grid_range, settings_grid
from edgediff.runtime import multistep, ode, stochastic  # noqa: F401 (they register their loops)
from edgediff.runtime._call import Callback, Denoiser
from edgediff.runtime.guidance import check_guide, guided_denoiser
from edgediff.settings import SolverSettings, loop_options
from edgediff.streams import NoiseStreams

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


def sample(denoiser: Denoiser, num: int, *, seed: int = 0, first: int = 0, batch: int = 16,
           solver: str | None = None, steps: int | None = None,
           options: dict[str, Any] | None = None, sigmas=None,
           callback: Callback = None, on_batch: Callable[[int, int], None] | None = None,
           labels=None, guidance: float | None = None, guide: Denoiser | None = None,
           ) -> np.ndarray:
    """Samples ``first … first+num−1`` of seed ``seed``, float32 [num, *sample_shape].

    Sample k depends only on (seed, k) and the solver — not on ``batch``.
    ``sigmas`` replaces the schedule's grid (then ``steps`` is its length − 1).
    ``on_batch(done, num)`` reports progress after each batch.

    A class-conditional model takes ``labels`` (one id for all, or one per sample;
    its null id or None: unconditional) and a guidance scale ``guidance``:
    classifier-free guidance against the null label, or with ``guide`` (a second,
    weaker artifact) autoguidance (``edgediff.runtime.guidance``).
    """
    info = denoiser.info
    for name, value, low in (("num", num, 1), ("batch", batch, 1), ("seed", seed, 0),
                             ("first", first, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise EdgediffError(f"{name} must be an integer ≥ {low}, got {value!r}")
    if sigmas is not None:
        sigmas = check_grid_range(info, sigmas)
        steps = len(sigmas) - 1
    settings = SolverSettings.resolve(info, solver, steps, options)
    if sigmas is None:
        sigmas = settings_grid(info, settings)
    labels = check_labels(info, labels, num)
    conditioned = labels is not None or guidance is not None or guide is not None
    if guide is not None:
        check_guide(info, guide.info)
    if guidance is not None:
        check_guidance(guidance)
    out = np.empty((num, *info.sample_shape), dtype=np.float32)
    for start in range(0, num, batch):
        stop = min(start + batch, num)
        streams = NoiseStreams(seed, range(first + start, first + stop), info.sample_shape)
        D = guided_denoiser(denoiser, None if labels is None else labels[start:stop], guidance,
                            guide) if conditioned else denoiser
        out[start:stop] = sample_batch(D, settings, sigmas, streams, callback)
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

