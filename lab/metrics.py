"""Sample-quality metrics in NumPy (docs/design.md, "Measuring")."""

from __future__ import annotations

import numpy as np


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, n_projections: int = 256,
                       seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two equal-size point clouds [n, d]:
    the root mean, over random unit directions, of the 1-D W2² of the projections."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"sliced_wasserstein needs equal shapes, got {a.shape} and {b.shape}")
    dirs = np.random.default_rng(seed).standard_normal((a.shape[1], n_projections))
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
    return float(np.sqrt(np.mean((pa - pb) ** 2)))


def mode_statistics(samples: np.ndarray, mixture) -> dict[str, np.ndarray]:
    """Assign each sample to its most probable component (at σ = 0) and return
    the per-mode fraction [K], count [K], mean [K, d] and variance [K, d]
    (per coordinate, unbiased). Modes with no sample get NaN moments."""
    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    finite = np.all(np.isfinite(x), axis=1)
    labels = np.full(len(x), -1)
    labels[finite] = mixture.responsibilities(x[finite]).argmax(1)
    K, d = mixture.num_components, mixture.dim
    count = np.bincount(labels[labels >= 0], minlength=K)
    mean, var = np.full((K, d), np.nan), np.full((K, d), np.nan)
    for k in range(K):
        xk = x[labels == k]
        if len(xk) > 1:
            mean[k], var[k] = xk.mean(0), xk.var(0, ddof=1)
    return {"fraction": count / len(x), "count": count, "mean": mean, "var": var}


def frechet_distance_from_moments(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray,
                                  cov2: np.ndarray) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), the 2-Wasserstein distance² between
    Gaussians (Dowson & Landau 1982; FID's formula). Tr((Σ₁Σ₂)^½) is computed as
    Tr((Σ₁^½ Σ₂ Σ₁^½)^½), a symmetric PSD root, with eigh: no scipy needed."""
    def psd_sqrt(a):
        w, v = np.linalg.eigh((a + a.T) / 2)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    s1 = psd_sqrt(cov1)
    inner = np.linalg.eigvalsh(s1 @ cov2 @ s1)
    tr_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


def frechet_distance(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between two feature sets [n, d] (unbiased covariances)."""
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    return frechet_distance_from_moments(f1.mean(0), np.cov(f1, rowvar=False),
                                         f2.mean(0), np.cov(f2, rowvar=False))
