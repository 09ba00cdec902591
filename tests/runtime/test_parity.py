"""The NumPy runtime against the torch reference, fed identical noise.

For every solver, on the exported analytic mixture and the exported bundled
digits model: same x_T, same per-step noise (each side gets its own copy of
the per-sample streams), torch module in float32 vs ONNX Runtime. The two
sides differ only in their float32 kernels, so final samples must agree within
``edgediff.tolerance``'s bound for the run's own trajectory: float32 resolution
× the calls made × the size of |x̂| along the way (the argument is written out
in that module). The bound is an argument, not a measurement: on the machine
that wrote these tests the differences sit 2–3 orders of magnitude below it.
"""

import numpy as np
import pytest

from edgediff import runtime
from edgediff.catalogue import CATALOGUE
from edgediff.samplers.reference import reference_run
from edgediff.settings import SolverSettings
from edgediff.streams import NoiseStreams
from edgediff.tolerance import TrajectoryScale

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
    "euler_ancestral": ("euler_ancestral", 20, {"eta": 1.0}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", 20, {"eta": 1.0}),
    "dpmpp_3m": ("dpmpp_3m", 20, {}),
    "dpmpp_3m-published": ("dpmpp_3m", 20, {"weights": "published"}),
    "ipndm": ("ipndm", 20, {"order": 4}),
    "deis": ("deis", 20, {"order": 3}),
    "deis-log_rho": ("deis", 20, {"basis": "log_rho"}),
    "unipc": ("unipc", 20, {"order": 3}),
    "cm": ("cm", 4, {}),
    "cm-clip": ("cm", 4, {"clip": True, "sigma_min": 0.01}),
    "lcm": ("lcm", 4, {}),
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
    settings = SolverSettings(solver, steps, options)
    sigmas = runtime.sigma_grid(D.info, steps).tolist()
    streams = NoiseStreams(SEED, range(BATCH), D.info.sample_shape)
    scale = TrajectoryScale.for_solver(CATALOGUE[solver], D.info.data_range)
    got = runtime.sample_batch(D, settings, sigmas, streams, callback=scale)
    ref = torch_reference(model, D.info, settings, sigmas, SEED, range(BATCH))
    err, bound = np.abs(got - ref).max(), scale.bound()
    print(f"{name} {case} {steps} steps: max abs diff {err:.2e}, bound {bound:.2e}")
    assert np.all(np.isfinite(got)) and got.std() > 0.1  # real samples, not a collapse
    assert err <= bound


def test_parity_would_catch_a_different_noise_stream(exported):
    """The oracle has teeth: one different seed on the torch side fails the bound."""
    model, path = exported["mixture"]
    D = runtime.load(path)
    settings = SolverSettings("ddpm", 60, {})
    sigmas = runtime.sigma_grid(D.info, 60).tolist()
    scale = TrajectoryScale(1, D.info.data_range)
    got = runtime.sample_batch(D, settings, sigmas, NoiseStreams(SEED, range(BATCH), (2,)),
                               callback=scale)
    ref = torch_reference(model, D.info, settings, sigmas, SEED + 1, range(BATCH))
    assert np.abs(got - ref).max() > scale.bound()


@pytest.mark.parametrize("solver", ["ddpm", "ddim"])
def test_clip_clamps_every_denoised_estimate(exported, solver):
    """clip=True clamps D to the data range on both sides: the final samples lie in
    it, the clamp binds (the unclipped run leaves it), and the two sides agree."""
    model, path = exported["digits"]
    D = runtime.load(path, threads=2)
    lo, hi = D.info.data_range
    runs = {}
    for clip in (False, True):
        settings = SolverSettings(solver, 12, {"clip": clip})
        sigmas = runtime.sigma_grid(D.info, 12).tolist()
        seen, scale = [], TrajectoryScale(1, D.info.data_range)

        def record(step, seen=seen, scale=scale):
            seen.append(step["denoised"].copy())
            scale(step)

        runs[clip] = runtime.sample_batch(D, settings, sigmas,
                                          NoiseStreams(SEED, range(BATCH), D.info.sample_shape),
                                          callback=record)
        if clip:
            assert all(d.min() >= lo and d.max() <= hi for d in seen)
            ref = torch_reference(model, D.info, settings, sigmas, SEED, range(BATCH))
            assert np.abs(runs[clip] - ref).max() <= scale.bound()
    assert runs[False].min() < lo or runs[False].max() > hi
    assert np.abs(runs[True] - runs[False]).max() > 1e-3


class Elementwise:
    """D(x̂; σ) = x̂/(1 + σ²), the exact denoiser of N(0, I) data, in NumPy: every
    operation is elementwise and correctly rounded, so a sample's result cannot
    depend on which batch computes it — any difference is the noise's."""

    def __init__(self, info):
        self.info = info

    def __call__(self, x, sigma):
        return (x / (1 + sigma.astype(np.float64) ** 2).reshape(-1, *[1] * (x.ndim - 1))
                ).astype(np.float32)


class BatchDependentStreams(NoiseStreams):
    """What a batch-size bug looks like: streams seeded by the batch, not the sample."""

    def __init__(self, seed, indices, sample_shape):
        indices = list(indices)
        super().__init__(seed + 1000 * len(indices), indices, sample_shape)


OPTIONS = {"edm": {"S_churn": 10.0}, "ddim": {"eta": 1.0}}


def _three_ways(D, solver, monkeypatch=None, streams=None):
    """Samples 0…6 of seed 3 as one batch, as batches of 3, and samples 5…6 alone;
    and the bound for the whole batch's trajectory."""
    if streams is not None:
        monkeypatch.setattr("edgediff.runtime.sampling.NoiseStreams", streams)
    scale = TrajectoryScale.for_solver(CATALOGUE[solver], D.info.data_range)
    common = dict(seed=3, solver=solver, steps=12, options=OPTIONS.get(solver, {}))
    whole = runtime.sample(D, 7, run=runtime.RunOptions(batch=7, callback=scale), **common)
    split = runtime.sample(D, 7, run=runtime.RunOptions(batch=3), **common)
    tail = runtime.sample(D, 2, run=runtime.RunOptions(first=5, batch=1), **common)
    return whole, split, tail, scale.bound()


@pytest.mark.parametrize("solver", list(runtime.SOLVERS))
def test_the_noise_makes_sample_k_bitwise_the_same_whatever_the_batch(exported, solver):
    """The exact half of batch invariance, on every machine: with a denoiser whose
    arithmetic cannot depend on the batch, sample k is identical to the last bit."""
    _, path = exported["mixture"]
    D = Elementwise(runtime.load(path).info)
    whole, split, tail, _ = _three_ways(D, solver)
    assert np.array_equal(whole, split) and np.array_equal(whole[5:], tail)


def test_the_noise_streams_are_bitwise_the_same_whatever_the_batch():
    a, b, c = (NoiseStreams(11, idx, (1, 8, 8)) for idx in (range(7), range(3, 6), [6]))
    xa = a.initial()
    assert np.array_equal(xa[3:6], b.initial()) and np.array_equal(xa[6:], c.initial())
    for i in (0, 1, 5):
        za, zb, zc = a(i).copy(), b(i).copy(), c(i).copy()
        assert np.array_equal(za[3:6], zb) and np.array_equal(za[6:], zc)


@pytest.mark.parametrize("solver", ["heun", "ddpm", "edm"])
def test_sample_k_is_the_same_whatever_the_batch(exported, solver):
    """Through ONNX Runtime, whose kernels differ by batch size: equal within the
    float32 drift bound of the run's own trajectory."""
    _, path = exported["digits"]
    D = runtime.load(path, threads=2)
    whole, split, tail, bound = _three_ways(D, solver)
    print(f"{solver}: batch 7 vs 3 {np.abs(whole - split).max():.2e}, vs 1 "
          f"{np.abs(whole[5:] - tail).max():.2e}, bound {bound:.2e}")
    assert np.abs(whole - split).max() <= bound
    assert np.abs(whole[5:] - tail).max() <= bound
    other = runtime.sample(D, 7, seed=4, solver=solver, steps=12,
                           options=OPTIONS.get(solver, {}), run=runtime.RunOptions(batch=7))
    assert np.abs(whole - other).max() > 0.1


@pytest.mark.parametrize("model", ["exact", "onnx"])
@pytest.mark.parametrize("solver", ["ddpm", "edm", "ddim"])
def test_batch_invariance_tests_fail_when_the_streams_depend_on_the_batch(
        exported, monkeypatch, solver, model):
    """Both halves have teeth: seed the streams by batch and each check fails."""
    _, path = exported["digits"]
    D = runtime.load(path, threads=2)
    if model == "exact":
        D = Elementwise(D.info)
    whole, split, tail, bound = _three_ways(D, solver, monkeypatch, BatchDependentStreams)
    assert np.abs(whole - split).max() > bound
    assert np.abs(whole[5:] - tail).max() > bound
