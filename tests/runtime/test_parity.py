"""The NumPy runtime against the torch reference, fed identical noise.

For every solver, on the exported analytic mixture and the exported bundled
digits model: same x_T, same per-step noise (each side gets its own copy of
the per-sample streams), torch module in float32 vs ONNX Runtime. Final
samples must agree to max abs diff ≤ 1e-4.
"""

import numpy as np
import pytest

from edgediff import runtime
from edgediff.runtime.noise import NoiseStreams
from edgediff.runtime.sampling import SamplerSettings
from edgediff.samplers.reference import reference_run

# case -> (solver, steps, options): enough steps to exercise each loop, few enough to stay quick
CASES = {
    "ddpm": ("ddpm", 60, {"variance": "large"}),
    "ddpm-clip": ("ddpm", 60, {"clip": True}),
    "euler_maruyama": ("euler_maruyama", 60, {}),
    "euler": ("euler", 20, {}),
    "heun": ("heun", 10, {}),
    "edm": ("edm", 16, {"S_churn": 20.0, "S_tmin": 0.05, "S_tmax": 20.0, "S_noise": 1.003}),
    "ddim": ("ddim", 20, {"eta": 0.5}),
    "ddim-clip": ("ddim", 20, {"eta": 0.0, "clip": True}),
    "dpmpp_2m": ("dpmpp_2m", 10, {}),
}
SEED, BATCH = 7, 6


def torch_reference(model, info, settings, sigmas, seed, indices):
    return reference_run(model.denoiser, info, settings, sigmas, seed, indices)


@pytest.mark.parametrize("name", ["mixture", "digits"])
@pytest.mark.parametrize("case", list(CASES))
def test_runtime_matches_torch_reference(exported, name, case):
    model, path = exported[name]
    D = runtime.load(path, threads=2)
    solver, steps, options = CASES[case]
    settings = SamplerSettings(solver, steps, options)
    sigmas = runtime.sigma_grid(D.info, steps).tolist()
    streams = NoiseStreams(SEED, range(BATCH), D.info.sample_shape)
    got = runtime.sample_batch(D, settings, sigmas, streams)
    ref = torch_reference(model, D.info, settings, sigmas, SEED, range(BATCH))
    err = np.abs(got - ref).max()
    print(f"{name} {case} {steps} steps: max abs diff {err:.2e}")
    assert np.all(np.isfinite(got)) and got.std() > 0.1  # real samples, not a collapse
    assert err <= 1e-4


def test_parity_would_catch_a_different_noise_stream(exported):
    """The oracle has teeth: one different seed on the torch side fails the bound."""
    model, path = exported["mixture"]
    D = runtime.load(path)
    settings = SamplerSettings("ddpm", 60, {})
    sigmas = runtime.sigma_grid(D.info, 60).tolist()
    got = runtime.sample_batch(D, settings, sigmas, NoiseStreams(SEED, range(BATCH), (2,)))
    ref = torch_reference(model, D.info, settings, sigmas, SEED + 1, range(BATCH))
    assert np.abs(got - ref).max() > 1e-2


@pytest.mark.parametrize("solver", ["ddpm", "ddim"])
def test_clip_clamps_every_denoised_estimate(exported, solver):
    """clip=True clamps D to the data range on both sides: the final samples lie in
    it, the clamp binds (the unclipped run leaves it), and the two sides agree."""
    model, path = exported["digits"]
    D = runtime.load(path, threads=2)
    lo, hi = D.info.data_range
    runs = {}
    for clip in (False, True):
        settings = SamplerSettings(solver, 12, {"clip": clip})
        sigmas = runtime.sigma_grid(D.info, 12).tolist()
        seen = []
        runs[clip] = runtime.sample_batch(D, settings, sigmas,
                                          NoiseStreams(SEED, range(BATCH), D.info.sample_shape),
                                          callback=lambda s, seen=seen: seen.append(
                                              s["denoised"].copy()))
        if clip:
            assert all(d.min() >= lo and d.max() <= hi for d in seen)
            ref = torch_reference(model, D.info, settings, sigmas, SEED, range(BATCH))
            assert np.abs(runs[clip] - ref).max() <= 1e-4
    assert runs[False].min() < lo or runs[False].max() > hi
    assert np.abs(runs[True] - runs[False]).max() > 1e-3


@pytest.mark.parametrize("solver", ["heun", "ddpm", "edm"])
def test_sample_k_is_the_same_whatever_the_batch(exported, solver):
    _, path = exported["digits"]
    D = runtime.load(path, threads=2)
    opts = {"S_churn": 10.0} if solver == "edm" else {}
    whole = runtime.sample(D, 7, seed=3, batch=7, solver=solver, steps=12, options=opts)
    split = runtime.sample(D, 7, seed=3, batch=3, solver=solver, steps=12, options=opts)
    tail = runtime.sample(D, 2, seed=3, first=5, batch=1, solver=solver, steps=12, options=opts)
    # identical noise; ONNX Runtime's kernels differ by batch size only in float32 round-off
    assert np.abs(whole - split).max() <= 1e-5
    assert np.abs(whole[5:] - tail).max() <= 1e-5
    other = runtime.sample(D, 7, seed=4, batch=7, solver=solver, steps=12, options=opts)
    assert np.abs(whole - other).max() > 0.1
