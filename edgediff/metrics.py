"""Sample-quality metrics in NumPy (DESIGN.md §6)."""

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
