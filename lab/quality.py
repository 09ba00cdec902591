"""Sample quality, measured the same way every time (docs/design.md, "Measuring").

- ``reference_rms``: RMS error of final samples against a high-accuracy solution
  from the same x_T — pure discretization error, for deterministic solvers.
- An artifact's ``reference`` metadata picks a distribution score:
  the exact Gaussian mixture → sliced Wasserstein-2 distance to exact samples
  (a single number whose floor is known); digits → Fréchet distance
  in the shipped feature space against the held-out split's moments.
Each score comes with its floor: the same score between real sets of the same
size, so "2× the floor" reads as what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgediff.artifact import ArtifactInfo
from edgediff.lab.metrics import frechet_distance_from_moments, sliced_wasserstein
from edgediff.mixture import GaussianMixture


def reference_rms(samples: np.ndarray, reference: np.ndarray) -> float:
    d = np.asarray(samples, np.float64) - np.asarray(reference, np.float64)
    return float(np.sqrt(np.mean(d**2)))


@dataclass
class Score:
    name: str
    floor: float
    scorer: Any
    floor_note: str = ""  # what the floor compares

    def __call__(self, samples: np.ndarray) -> float:
        return float(self.scorer(samples))


def mixture_score(mixture: GaussianMixture, n: int, seed: int = 0) -> Score:
    """SW2 to one exact sample set; the floor is the mean SW2 of 8 other exact sets
    to it (the modes lie far apart, so multinomial weight noise alone moves SW2
    a lot at these sizes: one pair is not a floor)."""
    exact = mixture.sample(n, np.random.default_rng(seed + 10_001))[0]
    floor = float(np.mean([sliced_wasserstein(mixture.sample(
        n, np.random.default_rng(seed + 10_002 + k))[0], exact) for k in range(8)]))
    return Score("SW2", floor, lambda x: sliced_wasserstein(
        np.asarray(x, np.float64).reshape(len(x), -1), exact),
        f"mean over 8 exact sets of {n}")


def digits_score() -> Score:
    from edgediff.lab.features import DigitsFeatures, heldout_moments

    feats, ref = DigitsFeatures(), heldout_moments()

    def fd(x):
        f = feats(x)
        return frechet_distance_from_moments(f.mean(0), np.cov(f, rowvar=False), ref["mean"],
                                             ref["cov"])
    return Score("FD", ref["floor"], fd,
                 f"{ref['n']} train vs {ref['n']} held-out digits; FD is biased upward at "
                 f"small n, so read it against samples of about that size")


def score_for(info: ArtifactInfo, n: int, seed: int = 0) -> Score | None:
    """The distribution score the artifact's metadata asks for, or None."""
    ref = info.reference or {}
    if ref.get("kind") == "gaussian_mixture":
        return mixture_score(GaussianMixture.from_dict(ref["mixture"]), n, seed)
    if ref.get("kind") == "dataset" and ref.get("name") == "digits":
        return digits_score()
    return None


def class_labels_for(info: ArtifactInfo, num: int) -> np.ndarray:
    """Labels for ``num`` conditional samples in the data's class proportions (the
    exact mixture's weights; otherwise uniform), so that distance-to-the-data
    scores compare like with like."""
    ref = info.reference or {}
    if ref.get("kind") == "gaussian_mixture":
        weights = GaussianMixture.from_dict(ref["mixture"]).weights
    else:
        weights = np.full(info.num_classes, 1 / info.num_classes)
    quantiles = (np.arange(num) + 0.5) / num
    order = np.searchsorted(np.cumsum(weights), quantiles).clip(max=info.num_classes - 1)
    return np.random.default_rng(0).permutation(order).astype(np.int64)


def label_accuracy_for(info: ArtifactInfo):
    """``accuracy(samples, labels)``: the share of samples a fixed classifier puts in
    the class they were asked for — the exact mixture's most probable component,
    or the shipped digits classifier (edgediff/features.py) — or None."""
    ref = info.reference or {}
    if ref.get("kind") == "gaussian_mixture":
        mixture = GaussianMixture.from_dict(ref["mixture"])

        def classify(x):
            return mixture.responsibilities(np.asarray(x).reshape(len(x), -1)).argmax(1)
    elif ref.get("kind") == "dataset" and ref.get("name") == "digits":
        from edgediff.lab.features import DigitsFeatures

        classify = DigitsFeatures().classify
    else:
        return None
    return lambda x, labels: float(np.mean(classify(x) == np.asarray(labels)))
