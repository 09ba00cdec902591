"""The bundled digits model loads from the installed package and samples digits."""

import numpy as np
import torch

from edgediff.features import DigitsFeatures
from edgediff.metrics import frechet_distance
from edgediff.models.bundled import bundled_path, load_bundled
from edgediff.models.training import load_dataset
from edgediff.samplers import at_precision, heun
from edgediff.schedules import EDMSchedule


def test_bundled_model_is_small_and_self_describing():
    model = load_bundled()
    assert bundled_path().with_suffix(".safetensors").stat().st_size < 8 * 2**20
    assert model.sample_shape == (1, 8, 8)
    assert model.config["parameterization"]["name"] == "edm"
    prov = model.config["provenance"]
    assert prov["command"].startswith("edgediff train digits") and "--seed 0" in prov["command"]


def test_bundled_model_samples_are_digits():
    """35-NFE Heun: all ten classes appear and the Fréchet distance to held-out digits
    stays within 2× the real-vs-real distance at the same size (measured: 4.24 vs 2.93)."""
    model = load_bundled()
    feats, train, test = DigitsFeatures(), load_dataset("digits"), load_dataset("digits", "test")
    sigmas = EDMSchedule().sigmas(18)
    x = torch.randn(len(test), 1, 8, 8, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64) * sigmas[0]
    gen = heun(at_precision(model.denoiser), x, sigmas).float().numpy()
    floor = frechet_distance(feats(train[: len(test)]), feats(test))
    fd = frechet_distance(feats(gen), feats(test))
    print(f"\nFD samples vs held-out {fd:.3f}; train vs held-out {floor:.3f}")
    assert np.all(np.bincount(feats.classify(gen), minlength=10) > 0)
    assert fd < 2 * floor
