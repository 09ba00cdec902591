"""The torch reference's guidance (``samplers.guidance.guided``) against the
runtime's (``runtime.guidance.Guided``), on the exact class-conditional mixture:
the torch module in float32 on one side, the NumPy oracle cast to float32 on the
other, identical noise. They agree within the float32 drift bound of the run's
own trajectory times what guidance amplifies, |w| + |1 − w| (edgediff.conditioning)."""

import numpy as np
import pytest
import torch

from edgediff import runtime
from edgediff.catalogue import CATALOGUE
from edgediff.conditioning import guidance_gain
from edgediff.mixture import default_mixture_2d
from edgediff.models.analytic import GaussianMixtureDenoiser
from edgediff.runtime.guidance import Guided
from edgediff.samplers import SOLVERS, at_precision
from edgediff.samplers.guidance import guided
from edgediff.settings import SolverSettings, loop_options
from edgediff.streams import NoiseStreams
from edgediff.tolerance import TrajectoryScale

MIXTURE = default_mixture_2d()
MODULE = GaussianMixtureDenoiser(MIXTURE).float()
NULL = MIXTURE.null_label


class Labelled:
    def __init__(self, label, info):
        self.label, self.info = label, info

    def __call__(self, x, sigma):
        return MIXTURE.denoise_given(x, sigma, self.label).astype(np.float32)


def torch_labelled(label):
    def D(x, sigma):
        return MODULE(x, sigma, class_labels=torch.full((len(x),), label))
    return at_precision(D)


def test_the_torch_module_is_the_conditional_oracle():
    x = torch.randn(6, 2, dtype=torch.float64) * 3
    s = torch.linspace(0.01, 20, 6, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, NULL, 1, NULL])
    got = GaussianMixtureDenoiser(MIXTURE)(x, s, class_labels=labels).numpy()  # float64
    np.testing.assert_allclose(got, MIXTURE.denoise_given(x.numpy(), s.numpy(), labels.numpy()),
                               rtol=1e-12, atol=1e-12)


CASES = [("ddpm", 40, {}), ("edm", 16, {"S_churn": 20.0, "S_tmin": 0.05, "S_tmax": 20.0}),
         ("heun", 10, {}), ("dpmpp_2m", 10, {}), ("euler", 20, {}), ("ddim", 20, {"eta": 0.5}),
         ("euler_maruyama", 40, {})]


@pytest.mark.parametrize("w", [1.0, 2.5])
@pytest.mark.parametrize("solver,steps,options", CASES, ids=[c[0] for c in CASES])
def test_runtime_guidance_matches_the_torch_reference(solver, steps, options, w):
    from edgediff.models.analytic import mixture_model

    info = _info(mixture_model())
    settings = SolverSettings(solver, steps, options)
    sigmas = runtime.sigma_grid(info, steps).tolist()
    k = 2
    G = Guided(Labelled(k, info), Labelled(NULL, info), w)
    scale = TrajectoryScale.for_solver(CATALOGUE[solver], info.data_range)
    got = runtime.sample_batch(G, settings, sigmas, NoiseStreams(5, range(6), (2,)),
                               callback=scale)
    streams = NoiseStreams(5, range(6), (2,))
    x = torch.from_numpy(streams.initial() * float(info.schedule.prior_std(sigmas[0])))
    kwargs = loop_options(info, settings)
    if CATALOGUE[solver].stochastic:
        kwargs["noise"] = lambda i: torch.from_numpy(streams(i).copy())
    ref = SOLVERS[solver](guided(torch_labelled(k), torch_labelled(NULL), w), x, sigmas,
                           **kwargs).numpy()
    err, bound = np.abs(got - ref).max(), guidance_gain(w) * scale.bound()
    print(f"{solver} w={w}: max abs diff {err:.2e}, bound {bound:.2e}")
    assert err <= bound
    # and the guided run is not the unguided one
    plain = runtime.sample_batch(Labelled(NULL, info), settings, sigmas,
                                 NoiseStreams(5, range(6), (2,)))
    assert np.abs(got - plain).max() > bound


def _info(model):
    from edgediff.artifact import ArtifactInfo
    from edgediff.export.describe import artifact_info

    info = artifact_info(model, "0" * 64)
    assert isinstance(info, ArtifactInfo)
    return info
