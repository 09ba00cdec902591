"""Conditioning and guidance, runtime against torch reference, fed identical noise:
(a) classifier-free guidance with two passes of one artifact, (b) the same in one
launch of a --guidance graph, (c) autoguidance by a second, weaker artifact. On
the exact class-conditional mixture and on a random class-conditional U-Net, for
every solver; the bound is the unconditional parity tests' float32 drift bound
times what guidance amplifies, |w| + |1 − w| (edgediff.conditioning.guidance_gain)."""

import re

import numpy as np
import pytest
import torch

from edgediff import runtime
from edgediff.catalogue import CATALOGUE, SOLVER_NAMES
from edgediff.conditioning import guidance_gain
from edgediff.errors import EdgediffError
from edgediff.mixture import GaussianMixture, default_mixture_2d
from edgediff.runtime import Condition, RunOptions
from edgediff.runtime.guidance import guided_denoiser
from edgediff.samplers.reference import reference_run
from edgediff.settings import SolverSettings
from edgediff.streams import NoiseStreams
from edgediff.tolerance import TrajectoryScale

STEPS = {"ddpm": 30, "euler_maruyama": 30, "euler": 12, "heun": 8, "edm": 10, "ddim": 12,
         "dpmpp_2m": 8, "euler_ancestral": 12, "dpmpp_2m_sde": 12, "dpmpp_3m": 12, "ipndm": 12,
         "deis": 12, "unipc": 12, "cm": 4, "lcm": 4}
OPTIONS = {"edm": {"S_churn": 20.0, "S_tmin": 0.05, "S_tmax": 20.0}, "ddim": {"eta": 0.5}}
W = 2.5


def conditional_unet(seed: int):
    from edgediff.models.checkpoint import LoadedModel, build_denoiser, make_config
    from edgediff.schedules import EDMSchedule

    args = {"img_resolution": 8, "in_channels": 1, "out_channels": 1, "model_channels": 16,
            "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4],
            "label_dim": 10}
    config = make_config("unet", args, "edm", EDMSchedule(), (1, 8, 8))
    config["num_classes"] = 10
    torch.manual_seed(seed)
    D, schedule = build_denoiser(config)
    with torch.no_grad():
        for p in D.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # zero-initialised output layers would hide F
    return LoadedModel(D.eval(), config, schedule)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """name -> (torch model, plain ONNX, --guidance ONNX, guide model, guide ONNX)."""
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.analytic import mixture_model

    folder = tmp_path_factory.mktemp("conditional")
    m = default_mixture_2d()
    weaker = GaussianMixture(m.weights, m.means, m.stds * 1.6)  # a blurrier model
    models = {"mixture": (mixture_model(conditional=True), mixture_model(weaker, True)),
              "unet": (conditional_unet(0), conditional_unet(1))}
    out = {}
    for name, (model, guide) in models.items():
        paths = []
        for tag, m_, g in (("plain", model, False), ("cfg", model, True),
                           ("guide", guide, False)):
            path = folder / f"{name}-{tag}.onnx"
            export_onnx(m_, path, ExportOptions(validate=False, guidance=g), source_sha256="0" * 64)
            paths.append(path)
        out[name] = (model, paths[0], paths[1], guide, paths[2])
    return out


def labels_for(info, n=6):
    """Every kind of id: several classes and the null one."""
    return np.array([0, 1, 2, info.null_label, 1, 0][:n], np.int64)


# the mixture with every solver, the U-Net (slower) with three
CASES = [(name, form, solver) for name in ("mixture", "unet") for form in "abc"
         for solver in SOLVER_NAMES if name == "mixture" or solver in ("heun", "edm", "dpmpp_2m")]


@pytest.mark.parametrize("name,form,solver", CASES)
def test_guided_runtime_matches_the_torch_reference(artifacts, name, form, solver):
    model, plain, cfg, guide_model, guide_path = artifacts[name]
    D = runtime.load(cfg if form == "b" else plain)
    guide = runtime.load(guide_path) if form == "c" else None
    info, steps = D.info, STEPS[solver]
    settings = SolverSettings(solver, steps, OPTIONS.get(solver, {}))
    sigmas = runtime.sigma_grid(info, steps).tolist()
    labels = labels_for(info)
    scale = TrajectoryScale.for_solver(CATALOGUE[solver], info.data_range)
    got = runtime.sample_batch(guided_denoiser(D, labels, W, guide), settings, sigmas,
                               NoiseStreams(3, range(6), info.sample_shape), callback=scale)
    ref = reference_run(model.denoiser, info, settings, sigmas, 3, range(6),
                        condition=Condition(labels, W, guide_model.denoiser if guide else None),
                        guide_info=guide.info if guide else None)
    err, bound = np.abs(got - ref).max(), guidance_gain(W) * scale.bound()
    print(f"{name} form {form} {solver}: max abs diff {err:.2e}, bound {bound:.2e}")
    assert np.all(np.isfinite(got)) and err <= bound
    # the oracle has teeth: the unguided run is elsewhere
    plain_run = runtime.sample_batch(guided_denoiser(D, labels, None), settings, sigmas,
                                     NoiseStreams(3, range(6), info.sample_shape))
    assert np.abs(got - plain_run).max() > bound


@pytest.mark.parametrize("name", ["mixture", "unet"])
def test_two_passes_and_one_doubled_launch_agree(artifacts, name):
    _, plain, cfg, _, _ = artifacts[name]
    a, b = runtime.load(plain), runtime.load(cfg)
    labels = np.resize(labels_for(a.info), 10)
    scale = TrajectoryScale(2, a.info.data_range)
    xa = runtime.sample(a, 10, condition=Condition(labels, W), solver="heun", steps=8,
                        run=RunOptions(batch=5, callback=scale))
    xb = runtime.sample(b, 10, condition=Condition(labels, W), solver="heun", steps=8,
                        run=RunOptions(batch=5))
    assert np.abs(xa - xb).max() <= guidance_gain(W) * scale.bound()


@pytest.mark.parametrize("w", [0.0, 1.0])
def test_w_0_and_1_take_one_pass(artifacts, w):
    """w = 1 is the conditional model alone, w = 0 the null label alone: the same
    samples as asking for exactly that without guidance."""
    _, plain, _, _, _ = artifacts["mixture"]
    D = runtime.load(plain)
    labels = labels_for(D.info)
    guided = runtime.sample(D, 6, condition=Condition(labels, w), solver="heun", steps=8)
    direct = runtime.sample(D, 6, condition=Condition(labels if w == 1 else D.info.null_label),
                            solver="heun", steps=8)
    assert np.array_equal(guided, direct)


def test_bad_conditioning_is_refused_before_any_call(artifacts, tmp_path):
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.analytic import mixture_model

    _, plain, _, _, _ = artifacts["mixture"]
    D = runtime.load(plain)
    unconditional = tmp_path / "u.onnx"
    export_onnx(mixture_model(), unconditional, ExportOptions(validate=False),
                source_sha256="0" * 64)
    U = runtime.load(unconditional)
    digits = runtime.load(artifacts["unet"][1])
    for call, says in [
        (lambda: runtime.sample(D, 2, condition=Condition(4)), "class label 4 is out of range"),
        (lambda: runtime.sample(D, 2, condition=Condition([0, 1, 2])),
         "3 class labels for 2 samples"),
        (lambda: runtime.sample(D, 2, condition=Condition(1.5)), "whole numbers"),
        (lambda: runtime.sample(U, 2, condition=Condition(0)), "not class-conditional"),
        (lambda: runtime.sample(U, 2, condition=Condition(guidance=2.0)),
         "needs a class-conditional model"),
        (lambda: runtime.sample(D, 2, condition=Condition(0, -1.0)), "finite number ≥ 0"),
        (lambda: runtime.sample(D, 2, condition=Condition(0, float("nan"))), "finite number ≥ 0"),
        (lambda: runtime.sample(D, 2, condition=Condition(0, 2.0, digits)),
         "sample shape (1, 8, 8) vs (2,)"),
        (lambda: runtime.sample(D, 2, condition=Condition(0, guide=U)), "needs a guidance scale"),
    ]:
        with pytest.raises(EdgediffError, match=re.escape(says)):
            call()


def interval_between(sigmas, i, j):
    """(LO, HI) around grid σ's i … j−1, with edges halfway (in log σ) between grid
    points, so float32 rounding of σ cannot move a step across an edge."""
    s = np.asarray(sigmas[:-1], np.float64)
    hi = np.inf if i == 0 else float(np.sqrt(s[i - 1] * s[i]))
    return float(np.sqrt(s[j - 1] * s[j])), hi


INTERVAL_CASES = ([("a", solver) for solver in SOLVER_NAMES]
                  + [("b", "heun"), ("c", "heun"), ("b", "dpmpp_2m_sde"), ("c", "euler_ancestral")])


@pytest.mark.parametrize("form,solver", INTERVAL_CASES)
def test_interval_guidance_matches_the_torch_reference(artifacts, form, solver):
    """Guidance for LO < σ ≤ HI only (Kynkäänniemi et al. 2024), the conditional model
    alone elsewhere: every solver, each guidance form, against the torch reference.
    The bound is the guided one (guidance amplifies at most |w| + |1 − w| where it
    applies, and 1 elsewhere)."""
    model, plain, cfg, guide_model, guide_path = artifacts["mixture"]
    D = runtime.load(cfg if form == "b" else plain)
    guide = runtime.load(guide_path) if form == "c" else None
    info, steps = D.info, STEPS[solver]
    settings = SolverSettings(solver, steps, OPTIONS.get(solver, {}))
    sigmas = runtime.sigma_grid(info, steps).tolist()
    interval = interval_between(sigmas, steps // 4, 3 * steps // 4)
    labels = labels_for(info)
    scale = TrajectoryScale.for_solver(CATALOGUE[solver], info.data_range)

    def run(w, interval=None):
        return runtime.sample_batch(guided_denoiser(D, labels, w, guide, interval=interval),
                                    settings, sigmas, NoiseStreams(3, range(6), info.sample_shape),
                                    callback=scale)
    got = run(W, interval)
    ref = reference_run(model.denoiser, info, settings, sigmas, 3, range(6),
                        condition=Condition(labels, W, guide_model.denoiser if guide else None,
                                            guidance_interval=interval),
                        guide_info=guide.info if guide else None)
    err, bound = np.abs(got - ref).max(), guidance_gain(W) * scale.bound()
    print(f"form {form} {solver} interval {interval}: max abs diff {err:.2e}, bound {bound:.2e}")
    assert np.all(np.isfinite(got)) and err <= bound
    # teeth: guidance inside the interval moved the samples (that it is skipped outside
    # is the next test's: calls per sample, and the two extremes bit for bit)
    assert np.abs(got - run(1.0)).max() > bound  # w = 1: the conditional model alone


class Counting:
    """A denoiser that counts the samples it is called on (passes × batch)."""

    def __init__(self, D):
        self.D, self.info, self.rows = D, D.info, 0

    def __call__(self, x, sigma, **kwargs):
        self.rows += len(x)
        return self.D(x, sigma, **kwargs)


def test_interval_guidance_pays_one_pass_outside_and_matches_the_extremes(artifacts):
    """An interval holding every grid σ is full guidance, one holding none is the
    conditional model alone, bit for bit; calls per sample are 2 inside and 1 outside."""
    _, plain, _, _, _ = artifacts["mixture"]
    D = Counting(runtime.load(plain))
    labels, steps = labels_for(D.info), 12
    sigmas = runtime.sigma_grid(D.info, steps).tolist()
    settings = SolverSettings("euler", steps)

    def run(w, interval=None):
        D.rows = 0
        x = runtime.sample_batch(guided_denoiser(D, labels, w, interval=interval), settings,
                                 sigmas, NoiseStreams(0, range(6), D.info.sample_shape))
        return x, D.rows / 6
    full, full_calls = run(W)
    assert full_calls == 2 * steps
    everything, calls = run(W, (0.0, np.inf))
    assert np.array_equal(everything, full) and calls == 2 * steps
    alone, alone_calls = run(None)
    nothing, calls = run(W, (sigmas[-2] / 4, sigmas[-2] / 2))  # below the smallest grid σ
    assert np.array_equal(nothing, alone) and calls == alone_calls == steps
    _, calls = run(W, interval_between(sigmas, 3, 7))
    assert calls == steps + 4


def test_a_mixed_batch_guides_only_the_samples_inside(artifacts):
    """A server's batch mixes σ's: each sample gets guidance by its own σ."""
    _, plain, _, _, _ = artifacts["mixture"]
    D = runtime.load(plain)
    labels = labels_for(D.info)
    x = np.random.default_rng(0).standard_normal((6, *D.info.sample_shape)).astype(np.float32)
    sigma = np.array([0.1, 0.5, 1.0, 2.0, 5.0, 10.0], np.float32)
    got = guided_denoiser(D, labels, W, interval=(0.4, 2.0))(x, sigma).copy()
    full = np.asarray(guided_denoiser(D, labels, W)(x, sigma), np.float64).copy()
    alone = np.asarray(guided_denoiser(D, labels, None)(x, sigma), np.float64).copy()
    inside = np.array([False, True, True, True, False, False])
    np.testing.assert_array_equal(got[inside], full[inside])
    np.testing.assert_array_equal(got[~inside], alone[~inside])


@pytest.mark.parametrize("interval,message", [
    ((2.0, 1.0), "0 ≤ LO < HI"), ((-1.0, 1.0), "0 ≤ LO < HI"), ((1.0,), "two σ's"),
    ("ab", "two σ's")])
def test_bad_guidance_intervals_are_refused(interval, message):
    with pytest.raises(EdgediffError, match=message):
        Condition([1], W, guidance_interval=interval)
    with pytest.raises(EdgediffError, match="needs a guidance scale"):
        Condition([1], guidance_interval=(0.1, 1.0))
