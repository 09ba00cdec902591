"""Streaming feature statistics: the moments of a shard's features add, so the
mean and covariance of any number of samples (hence a Fréchet distance) follow
without ever holding more than one shard in memory.

A shard's features f (the artifact's feature space: the shipped digits features,
the 2-D points themselves, or nothing) become M = Σ [1, f]ᵀ[1, f], an
(d+1)×(d+1) float64 matrix holding the count, the sum and the sum of outer
products. The total is the sum over shards.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgediff.errors import EdgediffError

MAX_RAW_FEATURES = 1024  # raw values past this size: no moments (a (d+1)² matrix per shard)


def feature_space(info) -> tuple[str, Callable[[np.ndarray], np.ndarray]] | None:
    """(name, f: samples -> [n, d] features) for the artifact's data, or None: the
    shipped digits features, the points themselves for 2-D data, else the raw
    values while they stay small."""
    ref = info.reference or {}
    if ref.get("kind") == "dataset" and ref.get("name") == "digits":
        from edgediff.lab.features import DigitsFeatures

        extractor = DigitsFeatures()
        return "digits-mlp-64", extractor
    dim = int(np.prod(info.sample_shape))
    if dim > MAX_RAW_FEATURES:
        return None
    return ("points" if dim <= 3 else "pixels"), lambda x: np.asarray(x).reshape(len(x), -1)


def moments(features: np.ndarray) -> np.ndarray:
    """M = Σ_i [1, f_i]ᵀ[1, f_i] in float64: count, sum and sum of outer products."""
    a = np.concatenate([np.ones((len(features), 1)), np.asarray(features, np.float64)], 1)
    return a.T @ a


def mean_cov(total: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, unbiased covariance, n) from summed moments."""
    n = round(total[0, 0])
    if n < 2:
        raise EdgediffError("feature moments need at least 2 samples")
    mean = total[0, 1:] / n
    cov = (total[1:, 1:] - n * np.outer(mean, mean)) / (n - 1)
    return mean, (cov + cov.T) / 2, n


def reference_moments(info) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The data's own (mean, cov) in the feature space, where edgediff knows them:
    the held-out digits, or the exact mixture's closed form."""
    ref = info.reference or {}
    if ref.get("kind") == "dataset" and ref.get("name") == "digits":
        from edgediff.lab.features import heldout_moments

        m = heldout_moments()
        return m["mean"], m["cov"], f"{m['n']} held-out digits"
    if ref.get("kind") == "gaussian_mixture":
        from edgediff.mixture import GaussianMixture

        mix = GaussianMixture.from_dict(ref["mixture"])
        w, mu, tau = (np.asarray(v, np.float64) for v in (mix.weights, mix.means, mix.stds))
        mean = w @ mu
        cov = sum(wk * (tk**2 * np.eye(mu.shape[1]) + np.outer(mk - mean, mk - mean))
                  for wk, mk, tk in zip(w, mu, tau, strict=True))
        return mean, cov, "the exact mixture (closed form)"
    return None
