"""The torch reference sampler run exactly as the runtime runs an artifact: the
same σ grid, schedule, options and per-sample noise streams — what parity
checks (tests, ``benchmarks/parity.py``, the fp16 export check) compare against."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from edgediff.artifact import ArtifactInfo
from edgediff.catalogue import CATALOGUE
from edgediff.conditioning import check_labels
from edgediff.runtime.guidance import Condition
from edgediff.samplers import SOLVERS, at_precision
from edgediff.samplers._common import Denoiser
from edgediff.samplers.guidance import guided
from edgediff.settings import SolverSettings, loop_options
from edgediff.streams import NoiseStreams


def labelled(module: nn.Module, labels: np.ndarray | None) -> Denoiser:
    """The float32 module with its class ids fixed (None: no labels), called in float64."""
    module = module.float().eval()
    if labels is None:
        return at_precision(module)
    ids = torch.from_numpy(np.asarray(labels, np.int64))
    return at_precision(lambda x, sigma: module(x, sigma, ids))


def reference_run(module: nn.Module, info: ArtifactInfo, settings: SolverSettings,
                  sigmas: Sequence[float], seed: int, indices: Sequence[int], *,
                  condition: Condition | None = None, guide_info: ArtifactInfo | None = None
                  ) -> np.ndarray:
    """Samples ``indices`` of ``seed``: the float32 torch module under the torch
    reference sampler, x_T and step noise from the runtime's streams. With
    ``condition`` (the runtime's ``Condition``, its ``guide`` a torch module
    described by ``guide_info``): labels, and with a guidance scale classifier-free
    guidance against the null label, or autoguidance against the guide
    (``samplers.guidance.guided``, the torch twin of the runtime's; a --guidance
    graph's one launch is the same sum)."""
    condition = Condition() if condition is None else condition
    streams = NoiseStreams(seed, indices, info.sample_shape)
    x = torch.from_numpy(streams.initial() * float(info.schedule.prior_std(sigmas[0])))
    kwargs = loop_options(info, settings)
    if CATALOGUE[settings.solver].stochastic:
        kwargs["noise"] = lambda i: torch.from_numpy(streams(i).copy())
    labels = check_labels(info, condition.labels, len(indices))
    denoiser = labelled(module, labels)
    if condition.guidance is not None:
        if condition.guide is not None:
            cond = guide_info is not None and guide_info.num_classes
            other = labelled(condition.guide, labels if cond else None)
        else:
            null = np.full(len(indices), info.null_label, np.int64)
            other = labelled(module, null)
            if labels is None:
                denoiser = other
        denoiser = guided(denoiser, other, condition.guidance, condition.guidance_interval)
    return SOLVERS[settings.solver](denoiser, x, list(sigmas), **kwargs).numpy()
