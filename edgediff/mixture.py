"""Isotropic Gaussian mixtures: data whose denoiser, density and samples are exact.

For p(x0) = Σ_k π_k N(μ_k, τ_k² I), the noisy marginal at level σ is
Σ_k π_k N(μ_k, (τ_k² + σ²) I) and the ideal denoiser (docs/design.md, "Exact oracles") is

    D(x̂; σ) = Σ_k r_k(x̂, σ)·(μ_k + τ_k²/(τ_k² + σ²)·(x̂ − μ_k)),

with r_k the posterior weights of the components at x̂. This NumPy version is
the oracle; ``edgediff.models.analytic`` is the same function as a torch module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgediff.errors import EdgediffError


@dataclass(frozen=True)
class GaussianMixture:
    """Weights π [K], means μ [K, d], per-component isotropic stds τ [K]."""

    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray

    def __post_init__(self):
        try:
            w = np.asarray(self.weights, dtype=np.float64)
            mu = np.asarray(self.means, dtype=np.float64)
            tau = np.asarray(self.stds, dtype=np.float64)
        except (TypeError, ValueError):
            raise EdgediffError("a mixture's weights, means and stds must be numbers") from None
        if mu.ndim != 2 or w.shape != (mu.shape[0],) or tau.shape != (mu.shape[0],):
            raise EdgediffError(
                f"a mixture needs weights [K], means [K, d] and stds [K]; got shapes "
                f"{w.shape}, {mu.shape}, {tau.shape}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(mu)) and np.all(np.isfinite(tau))
                and np.all(w > 0) and np.all(tau > 0) and mu.size > 0):
            raise EdgediffError("mixture weights, means and stds must be finite, with positive "
                                "weights and stds")
        object.__setattr__(self, "weights", w / w.sum())
        object.__setattr__(self, "means", mu)
        object.__setattr__(self, "stds", tau)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def _log_joint(self, x: np.ndarray, sigma) -> np.ndarray:
        """log π_k + log N(x; μ_k, (τ_k² + σ²) I), shape [B, K]."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.dim)
        var = self.stds**2 + np.asarray(sigma, dtype=np.float64).reshape(-1, 1) ** 2
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        return np.log(self.weights) - 0.5 * self.dim * np.log(2 * np.pi * var) - 0.5 * sq / var

    def responsibilities(self, x: np.ndarray, sigma=0.0) -> np.ndarray:
        """Posterior component weights r_k(x, σ), shape [B, K]."""
        lj = self._log_joint(x, sigma)
        lj -= lj.max(axis=1, keepdims=True)
        r = np.exp(lj)
        return r / r.sum(axis=1, keepdims=True)

    def log_prob(self, x: np.ndarray, sigma=0.0) -> np.ndarray:
        """log p(x; σ) of the noisy marginal, shape [B]."""
        lj = self._log_joint(x, sigma)
        m = lj.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(lj - m).sum(axis=1, keepdims=True)))[:, 0]

    def denoise(self, x: np.ndarray, sigma) -> np.ndarray:
        """The exact denoiser D(x̂; σ) = E[x0 | x̂], same shape as x."""
        shape = np.shape(x)
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.dim)
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64).reshape(-1), (x.shape[0],))
        r = self.responsibilities(x, sigma)
        shrink = self.stds**2 / (self.stds**2 + sigma[:, None] ** 2)           # [B, K]
        per_k = self.means[None] + shrink[..., None] * (x[:, None] - self.means[None])
        return (r[..., None] * per_k).sum(1).reshape(shape)

    def velocity(self, x: np.ndarray, t) -> np.ndarray:
        """The exact rectified-flow velocity E[ε − x0 | x_t] at x_t = (1−t)x0 + tε
        (docs/flow.md): per component x_t ~ N((1−t)μ_k, V_k I), V_k = (1−t)²τ_k² + t²,
        and v_k = ((t − (1−t)τ_k²)/V_k)·(x_t − (1−t)μ_k) − μ_k. No division by t or
        1 − t, so it holds on all of [0, 1], t = 1 (x_t = ε) included."""
        shape = np.shape(x)
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.dim)
        t = np.broadcast_to(np.asarray(t, dtype=np.float64).reshape(-1), (x.shape[0],))[:, None]
        var = (1 - t) ** 2 * self.stds**2 + t**2                                 # [B, K]
        diff = x[:, None] - (1 - t)[..., None] * self.means[None]              # [B, K, d]
        logits = (np.log(self.weights) - 0.5 * self.dim * np.log(var)
                  - 0.5 * (diff**2).sum(-1) / var)
        r = np.exp(logits - logits.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        per_k = ((t - (1 - t) * self.stds**2) / var)[..., None] * diff - self.means[None]
        return (r[..., None] * per_k).sum(1).reshape(shape)

    @property
    def null_label(self) -> int:
        """The class id that means "no label": one past the components."""
        return self.num_components

    def denoise_given(self, x: np.ndarray, sigma, labels) -> np.ndarray:
        """The class-conditional exact denoiser, the classes being the components:
        D(x̂; σ | k) = μ_k + τ_k²/(τ_k² + σ²)·(x̂ − μ_k), that Gaussian's own; the
        null label gives the mixture's D."""
        shape = np.shape(x)
        x = np.asarray(x, dtype=np.float64).reshape(shape[0], -1, self.dim)
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64).reshape(-1), (shape[0],))
        labels = np.broadcast_to(np.asarray(labels).reshape(-1), (shape[0],))
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
                or labels.max() > self.null_label:
            raise EdgediffError(f"class labels are integers 0…{self.num_components - 1}, or "
                                f"{self.null_label} for none; got {labels.tolist()}")
        out = np.empty_like(x)
        null = labels == self.null_label
        if null.any():
            out[null] = self.denoise(x[null], np.repeat(sigma[null], x.shape[1]).reshape(
                -1)).reshape(x[null].shape)
        k = labels[~null]
        shrink = (self.stds[k] ** 2 / (self.stds[k] ** 2 + sigma[~null] ** 2))[:, None, None]
        out[~null] = self.means[k][:, None] + shrink * (x[~null] - self.means[k][:, None])
        return out.reshape(shape)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n exact draws and their component labels."""
        labels = rng.choice(self.num_components, size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        return self.means[labels] + self.stds[labels, None] * z, labels

    def to_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "means": self.means.tolist(),
                "stds": self.stds.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GaussianMixture:
        if not isinstance(d, dict):
            raise EdgediffError("a mixture is described by an object with weights, means and "
                                "stds")
        missing = [k for k in ("weights", "means", "stds") if k not in d]
        if missing:
            raise EdgediffError(f"mixture description lacks {', '.join(missing)}")
        return cls(d["weights"], d["means"], d["stds"])


def default_mixture_2d() -> GaussianMixture:
    """Three well-separated 2-D modes of unequal weight and spread (the demo's data)."""
    return GaussianMixture(
        weights=np.array([0.5, 0.3, 0.2]),
        means=np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]),
        stds=np.array([0.3, 0.5, 0.2]),
    )
