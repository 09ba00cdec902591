"""A flow artifact (the exact mixture velocity exported with parameterization "flow")
under every catalogue solver: the NumPy runtime against the torch reference with the
same noise, as tests/runtime/test_parity.py does for the other parameterizations,
within ``edgediff.tolerance``'s bound (float32 resolution × calls × |x̂| along the
run). Also with classifier-free guidance, and on a shifted grid."""

import numpy as np
import pytest

from edgediff import runtime
from edgediff.catalogue import CATALOGUE
from edgediff.runtime.guidance import Condition
from edgediff.samplers.reference import reference_run
from edgediff.settings import SolverSettings
from edgediff.streams import NoiseStreams
from edgediff.tolerance import TrajectoryScale

# every catalogue solver, with tests/runtime/test_parity.py's step counts and options
CASES = {
    "ddpm": ("ddpm", 60, {"variance": "large"}),
    "euler_maruyama": ("euler_maruyama", 60, {}),
    "euler": ("euler", 20, {}),
    "euler-shift3": ("euler", 20, {"shift": 3.0}),
    "heun": ("heun", 10, {}),
    "edm": ("edm", 16, {"S_churn": 20.0, "S_tmin": 0.05, "S_tmax": 20.0, "S_noise": 1.003}),
    "ddim": ("ddim", 20, {"eta": 0.5}),
    "dpmpp_2m": ("dpmpp_2m", 10, {}),
    "euler_ancestral": ("euler_ancestral", 20, {"eta": 1.0}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", 20, {"eta": 1.0}),
    "dpmpp_3m": ("dpmpp_3m", 20, {}),
    "ipndm": ("ipndm", 20, {"order": 4}),
    "deis": ("deis", 20, {"order": 3}),
    "unipc": ("unipc", 20, {"order": 3}),
    "cm": ("cm", 4, {}),
    "lcm": ("lcm", 4, {}),
}
SEED, BATCH = 5, 6


@pytest.fixture(scope="module")
def flow_artifact(tmp_path_factory):
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.analytic import mixture_model

    model = mixture_model(flow=True, conditional=True)
    path = tmp_path_factory.mktemp("flow") / "flow.onnx"
    export_onnx(model, path, ExportOptions(validate=False), source_sha256="0" * 64)
    return model, runtime.load(path, threads=2)


def _run(flow_artifact, solver, steps, options, condition=None):
    model, D = flow_artifact
    settings = SolverSettings(solver, steps, options)
    sigmas = runtime.sigma_grid(D.info, steps, shift=options.get("shift")).tolist()
    scale = TrajectoryScale.for_solver(CATALOGUE[solver], D.info.data_range)
    streams = NoiseStreams(SEED, range(BATCH), D.info.sample_shape)
    den = D
    if condition is not None:
        from edgediff.runtime.guidance import guided_denoiser
        den = guided_denoiser(D, condition.labels, condition.guidance, None)
    got = runtime.sample_batch(den, settings, sigmas, streams, callback=scale)
    ref = reference_run(model.denoiser, D.info, settings, sigmas, SEED, range(BATCH),
                        condition=condition)
    return got, ref, scale.bound()


def test_every_solver_is_covered():
    assert {solver for solver, _, _ in CASES.values()} == set(CATALOGUE)


@pytest.mark.parametrize("case", list(CASES))
def test_flow_runtime_matches_torch_reference(flow_artifact, case):
    solver, steps, options = CASES[case]
    got, ref, bound = _run(flow_artifact, solver, steps, options)
    err = np.abs(got - ref).max()
    print(f"flow {case}: max abs diff {err:.2e}, bound {bound:.2e}")
    assert np.all(np.isfinite(got)) and got.std() > 0.1
    assert err <= bound


@pytest.mark.parametrize("solver,options", [("euler", {"shift": 3.0}),
                                            ("dpmpp_2m_sde", {"eta": 1.0}),
                                            ("heun", {})])
def test_flow_guided_parity(flow_artifact, solver, options):
    labels = np.array([0, 1, 2, 0, 1, 2])
    got, ref, bound = _run(flow_artifact, solver, 12, options,
                           Condition(labels=labels, guidance=2.0))
    assert np.abs(got - ref).max() <= bound
