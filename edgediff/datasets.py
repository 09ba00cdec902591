"""The local datasets, in NumPy: the exact 2-D Gaussian mixture (drawn on the
spot) and scikit-learn's 8×8 digits (the data ships inside scikit-learn, so
nothing is downloaded). Training, the feature space and FID read them from here.
"""

from __future__ import annotations

import numpy as np

from edgediff.errors import EdgediffError, missing_extra
from edgediff.mixture import default_mixture_2d

DATASETS = ("digits", "mixture2d")


NUM_CLASSES = {"digits": 10, "mixture2d": 3}  # digits 0–9; the mixture's components


def load_dataset(name: str, split: str = "train", seed: int = 0, *, labels: bool = False
                 ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """float32 data in the model's range. digits: [N, 1, 8, 8] in [−1, 1], a fixed
    80/20 train/held-out split (seeded permutation); mixture2d: [N, 2] exact draws.
    ``labels=True`` also returns the class of each (the digit; the component)."""
    if split not in ("train", "test"):
        raise EdgediffError(f"unknown split {split!r}; choose train or test")
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise missing_extra("scikit-learn", "train") from None
        digits = load_digits()
        images = digits.images.astype(np.float32) / 8.0 - 1.0  # 0..16 → −1..1
        order = np.random.default_rng(seed).permutation(len(images))
        cut = int(0.8 * len(images))
        idx = order[:cut] if split == "train" else order[cut:]
        x, y = images[idx, None], digits.target[idx].astype(np.int64)
    elif name == "mixture2d":
        n, offset = (50_000, 0) if split == "train" else (10_000, 1)
        x, y = default_mixture_2d().sample(n, np.random.default_rng(seed + offset))
        x, y = x.astype(np.float32), y.astype(np.int64)
    else:
        raise EdgediffError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return (x, y) if labels else x
