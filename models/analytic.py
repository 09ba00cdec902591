"""The exact Gaussian-mixture denoiser as a torch module (docs/design.md, "Exact oracles").

It is a denoiser like any trained network — ``forward(x, sigma) -> denoised``
with x [B, *sample_shape] and sigma [B] — so it samples through the reference
solvers and exports to ONNX like one, while its answers are exact.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgediff.mixture import GaussianMixture


class GaussianMixtureDenoiser(nn.Module):
    """D(x̂; σ) = Σ_k r_k(x̂, σ)·(μ_k + τ_k²/(τ_k² + σ²)·(x̂ − μ_k)), computed in
    the dtype of its input."""

    def __init__(self, mixture: GaussianMixture, sample_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.mixture = mixture
        self.sample_shape = tuple(sample_shape or (mixture.dim,))
        if math.prod(self.sample_shape) != mixture.dim:
            raise ValueError(f"sample_shape {self.sample_shape} does not hold {mixture.dim} values")
        self.register_buffer("log_weights", torch.as_tensor(mixture.weights).log())
        self.register_buffer("means", torch.as_tensor(mixture.means))
        self.register_buffer("variances", torch.as_tensor(mixture.stds) ** 2)

    @property
    def null_label(self) -> int:
        """The class id that means "no label" (the classes are the components)."""
        return self.mixture.null_label

    def forward(self, x: torch.Tensor, sigma: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """D(x̂; σ), or with ``class_labels`` [B] (component ids; the null label for
        none) the class-conditional D: component k's own exact denoiser."""
        dtype = x.dtype
        flat = x.reshape(x.shape[0], -1)                                   # [B, d]
        means, tau2 = self.means.to(dtype), self.variances.to(dtype)
        var = tau2[None, :] + sigma.to(dtype).reshape(-1, 1) ** 2          # [B, K]
        diff = flat[:, None, :] - means[None]                              # [B, K, d]
        sq = (diff * diff).sum(-1)
        d = flat.shape[1]
        logits = self.log_weights.to(dtype) - 0.5 * d * torch.log(var) - 0.5 * sq / var
        r = torch.softmax(logits, dim=1)                                   # posterior weights
        per_k = means[None] + (tau2[None, :] / var)[..., None] * diff      # [B, K, d]
        mixed = (r[..., None] * per_k).sum(1)
        if class_labels is None:
            return mixed.reshape(x.shape)
        # one-hot rows (all zero for the null id) select the component: an Equal in ONNX
        onehot = (class_labels.reshape(-1, 1).long()
                  == torch.arange(len(tau2), device=x.device)[None]).to(dtype)  # [B, K]
        own = (onehot[..., None] * per_k).sum(1)                           # [B, d]
        return (own + (1 - onehot.sum(1, keepdim=True)) * mixed).reshape(x.shape)


class GaussianMixtureVelocity(nn.Module):
    """The exact flow velocity v(x_t, t) = E[ε − x0 | x_t] of the mixture
    (``GaussianMixture.velocity``), called like a flow network: ``(x_t, t[,
    class_labels])``; labels select a component's own velocity, the null id none."""

    def __init__(self, mixture: GaussianMixture, sample_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.oracle = GaussianMixtureDenoiser(mixture, sample_shape)  # its buffers

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        o, dtype = self.oracle, x.dtype
        flat, t = x.reshape(x.shape[0], -1), t.to(dtype).reshape(-1, 1)
        means, tau2 = o.means.to(dtype), o.variances.to(dtype)
        var = (1 - t) ** 2 * tau2[None] + t**2                                  # [B, K]
        diff = flat[:, None, :] - (1 - t)[..., None] * means[None]              # [B, K, d]
        logits = (o.log_weights.to(dtype) - 0.5 * flat.shape[1] * torch.log(var)
                  - 0.5 * (diff * diff).sum(-1) / var)
        per_k = ((t - (1 - t) * tau2[None]) / var)[..., None] * diff - means[None]
        pick = torch.softmax(logits, dim=1)
        if class_labels is not None:  # one-hot rows (zero for the null id) pick one
            onehot = (class_labels.reshape(-1, 1).long()
                      == torch.arange(len(tau2), device=x.device)[None]).to(dtype)
            pick = onehot + (1 - onehot.sum(1, keepdim=True)) * pick
        return (pick[..., None] * per_k).sum(1).reshape(x.shape)


def mixture_model(mixture: GaussianMixture | None = None, conditional: bool = False,
                  flow: bool = False):
    """The exact mixture denoiser as a LoadedModel, so it exports like a checkpoint.
    ``conditional``: its classes are its components (null label: their count).
    ``flow``: the exact velocity under ``FlowPrecond`` on a ``FlowSchedule``, i.e. the
    artifact a rectified-flow model makes (parameterization "flow")."""
    import numpy as np

    from edgediff.mixture import default_mixture_2d
    from edgediff.models.checkpoint import LoadedModel, make_config
    from edgediff.models.precond import FlowPrecond
    from edgediff.schedules import EDMSchedule, FlowSchedule

    mixture = mixture or default_mixture_2d()
    schedule = FlowSchedule() if flow else EDMSchedule()
    mean = (mixture.weights[:, None] * mixture.means).sum(0)
    spread = (mixture.weights * ((mixture.means - mean) ** 2).sum(1)).sum() / mixture.dim
    sigma_data = float(np.sqrt(spread + (mixture.weights * mixture.stds**2).sum()))
    reach = np.abs(mixture.means).max() + 4 * mixture.stds.max()
    config = make_config("analytic.gaussian_mixture", mixture.to_dict(),
                         "flow" if flow else "analytic", schedule,
                         (mixture.dim,), sigma_data=sigma_data, data_range=(-reach, reach),
                         provenance={"source": "analytic Gaussian mixture"})
    if conditional:
        config["num_classes"] = mixture.num_components
    denoiser = (FlowPrecond(GaussianMixtureVelocity(mixture)) if flow
                else GaussianMixtureDenoiser(mixture))
    return LoadedModel(denoiser.float(), config, schedule)
