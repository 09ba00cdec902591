"""The torch reference sampler run exactly as the runtime runs an artifact: the
same σ grid, schedule, options and per-sample noise streams — what parity
checks (tests, ``benchmarks/parity.py``, the fp16 export check) compare against."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from edgediff.artifact import ArtifactInfo
from edgediff.noise import NoiseStreams
from edgediff.samplers import SAMPLERS, at_precision
from edgediff.solvers import CATALOGUE, SamplerSettings, loop_options


def reference_run(module: nn.Module, info: ArtifactInfo, settings: SamplerSettings,
                  sigmas: Sequence[float], seed: int, indices: Sequence[int]) -> np.ndarray:
    """Samples ``indices`` of ``seed``: the float32 torch module under the torch
    reference sampler, x_T and step noise from the runtime's streams."""
    streams = NoiseStreams(seed, indices, info.sample_shape)
    x = torch.from_numpy(streams.initial() * float(info.schedule.prior_std(sigmas[0])))
    kwargs = loop_options(info, settings)
    if CATALOGUE[settings.solver].stochastic:
        kwargs["noise"] = lambda i: torch.from_numpy(streams(i).copy())
    denoiser = at_precision(module.float().eval())
    return SAMPLERS[settings.solver](denoiser, x, list(sigmas), **kwargs).numpy()
