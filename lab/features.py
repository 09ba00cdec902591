"""The fixed feature space for the digits Fréchet distance (docs/design.md, "Measuring").

A small ReLU MLP classifier (64 → 128 → 64 → 10) trained once on the digits
train split; the 64 activations of its last hidden layer are the features.
Its weights ship as ``edgediff/data/digits_features.npz`` and run in NumPy, so
quality can be measured where torch is absent. The held-out split's feature
moments ship too (``digits_heldout.npz``), so scoring samples needs neither
scikit-learn nor the dataset. Rebuild both with ``python -m edgediff.lab.features``
(needs scikit-learn; deterministic).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from edgediff.errors import EdgediffError

WEIGHTS = "digits_features.npz"
HELDOUT = "digits_heldout.npz"


class DigitsFeatures:
    """features(images [N, 1, 8, 8] in [−1, 1]) -> [N, 64]; classify(images) -> [N]."""

    def __init__(self, path: str | Path | None = None):
        src = Path(path) if path else resources.files("edgediff") / "data" / WEIGHTS
        try:
            with resources.as_file(src) as p, np.load(p) as z:
                self.layers = [(z[f"W{i}"], z[f"b{i}"]) for i in range(3)]
                self.test_accuracy = float(z["test_accuracy"])
        except (OSError, KeyError) as e:
            raise EdgediffError(f"cannot read the digits feature extractor {src}: {e}") from None

    def _hidden(self, images):
        h = np.asarray(images, dtype=np.float64).reshape(len(images), 64)
        if h.shape[1:] != (64,):
            raise EdgediffError(f"digits features need [N, 1, 8, 8] images, got {np.shape(images)}")
        for W, b in self.layers[:2]:
            h = np.maximum(h @ W + b, 0.0)
        return h

    def __call__(self, images) -> np.ndarray:
        return self._hidden(images)

    def classify(self, images) -> np.ndarray:
        W, b = self.layers[2]
        return (self._hidden(images) @ W + b).argmax(1)


def fit_digits_features(out: Path) -> float:
    """Fit the extractor on the digits train split, write it, return test accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x = digits.images.reshape(-1, 64) / 8.0 - 1.0
    order = np.random.default_rng(0).permutation(len(x))  # the split of models.training
    cut = int(0.8 * len(x))
    tr, te = order[:cut], order[cut:]
    clf = MLPClassifier(hidden_layer_sizes=(128, 64), alpha=1e-3, max_iter=600, random_state=0)
    clf.fit(x[tr], digits.target[tr])
    acc = float(clf.score(x[te], digits.target[te]))
    arrays = {f"W{i}": w for i, w in enumerate(clf.coefs_)}
    arrays |= {f"b{i}": b for i, b in enumerate(clf.intercepts_)}
    np.savez(out, test_accuracy=acc, **arrays)
    return acc


def heldout_moments() -> dict[str, np.ndarray | float]:
    """Held-out digits in the feature space: mean, cov, n, and ``floor`` — the
    Fréchet distance of as many train digits to them (what "as good as real" reads)."""
    with resources.as_file(resources.files("edgediff") / "data" / HELDOUT) as p, np.load(p) as z:
        return {"mean": z["mean"], "cov": z["cov"], "n": int(z["n"]), "floor": float(z["floor"])}


def write_heldout_moments(out: Path, features: DigitsFeatures) -> None:
    from edgediff.datasets import load_dataset
    from edgediff.lab.metrics import frechet_distance

    test, train = load_dataset("digits", "test"), load_dataset("digits", "train")
    f = features(test)
    floor = frechet_distance(features(train[: len(test)]), f)
    np.savez(out, mean=f.mean(0), cov=np.cov(f, rowvar=False), n=len(test), floor=floor)


if __name__ == "__main__":
    target = Path(__file__).with_name("data") / WEIGHTS
    print(f"wrote {target}: held-out accuracy {fit_digits_features(target):.4f}")
    write_heldout_moments(target.with_name(HELDOUT), DigitsFeatures(target))
    print(f"wrote {target.with_name(HELDOUT)}")
