"""A flow artifact against diffusers' flow schedulers, an external reference: from the
same x_T, with the same velocity (the mixture's exact v, ``GaussianMixture.velocity``,
float64 on diffusers' side; the exported float32 graph on edgediff's).

- ``euler`` on the grid of ``FlowMatchEulerDiscreteScheduler`` (shift 1 and 3):
  diffusers shifts the times it is given, t = s·u/(1 + (s−1)u); it is given edgediff's
  unshifted u (``edgediff.sigmas.flow_times``), so both grids start at t_max < 1
  (edgediff's prior endpoint rule, docs/flow.md) and are the same to float32 rounding.
- ``dpmpp_2m`` on ``DPMSolverMultistepScheduler(use_flow_sigmas=True,
  prediction_type="flow_prediction", flow_shift=s)``'s own grid (it starts below t = 1).

Bound 1e-5: the two sides differ by edgediff's float32 graph (D's rounding ≈ 2^-24 ×
|x̂| ≲ 5 per call) and diffusers' float32 time grid, which both sides share. Those
contract through these solvers (error gain ≤ 1.5 per call, tolerance.py), so
20 calls × 1.5 × 5 × 6e-8 ≈ 1e-5 is the float32 worst case.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("diffusers", reason="diffusers is not installed (pip install diffusers)")
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler  # noqa: E402

from edgediff import runtime  # noqa: E402
from edgediff.mixture import default_mixture_2d  # noqa: E402
from edgediff.settings import SolverSettings  # noqa: E402
from edgediff.sigmas import flow_times, shift_time  # noqa: E402
from edgediff.streams import NoiseStreams  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
STEPS, BATCH, BOUND = 20, 16, 1e-5


@pytest.fixture
def keep_float64(monkeypatch):
    """diffusers casts the state to float32 before a step: leave float64 in float64."""
    to = torch.Tensor.to

    def to_keeping_float64(self, *args, **kwargs):
        if self.dtype == torch.float64:
            args = tuple(a for a in args if a is not torch.float32)
            if kwargs.get("dtype") is torch.float32:
                kwargs.pop("dtype")
        return to(self, *args, **kwargs)
    monkeypatch.setattr(torch.Tensor, "to", to_keeping_float64)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.analytic import mixture_model

    path = tmp_path_factory.mktemp("flow") / "flow.onnx"
    export_onnx(mixture_model(flow=True), path, ExportOptions(validate=False),
                source_sha256="0" * 64)
    return runtime.load(path, threads=2)


def diffusers_loop(sched, z, t0):
    """diffusers' own loop from x_T = sqrt((1−t0)² + t0²)·z (edgediff's prior at t0)."""
    mix = default_mixture_2d()
    for name, value in list(vars(sched).items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            setattr(sched, name, value.double())
    x = torch.from_numpy(np.sqrt((1 - t0) ** 2 + t0**2) * z)
    for i, step in enumerate(sched.timesteps):
        v = torch.from_numpy(mix.velocity(x.numpy(), float(sched.sigmas[i])))
        x = sched.step(v, step, x).prev_sample
    return x.numpy()


def edgediff_run(D, solver, times):
    sigmas = np.append(times / (1 - times), 0.0).tolist()
    z = NoiseStreams(0, range(BATCH), D.info.sample_shape).initial()
    streams = NoiseStreams(0, range(BATCH), D.info.sample_shape)
    return runtime.sample_batch(D, SolverSettings(solver, len(times)), sigmas, streams), z


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_matches_flow_match_euler(artifact, keep_float64, shift):
    f = artifact.info.schedule
    u = shift_time(flow_times(STEPS, f.t_min, f.t_max, shift), 1 / shift)
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(sigmas=u.tolist())
    times = sched.sigmas[:-1].double().numpy()
    # edgediff's shifted grid is diffusers' (to its float32 rounding)
    assert np.allclose(times, flow_times(STEPS, f.t_min, f.t_max, shift), rtol=2e-7)
    got, z = edgediff_run(artifact, "euler", times)
    ref = diffusers_loop(sched, z, times[0])
    err = np.abs(got - ref).max()
    print(f"euler shift {shift}: max abs diff {err:.2e}")
    assert err <= BOUND


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_dpmpp_2m_matches_dpm_solver_flow(artifact, keep_float64, shift):
    sched = DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction",
                                        flow_shift=shift, solver_order=2,
                                        algorithm_type="dpmsolver++", solver_type="midpoint")
    sched.set_timesteps(STEPS)
    times = sched.sigmas[:-1].double().numpy()
    got, z = edgediff_run(artifact, "dpmpp_2m", times)
    ref = diffusers_loop(sched, z, times[0])
    err = np.abs(got - ref).max()
    print(f"dpmpp_2m flow_shift {shift}: max abs diff {err:.2e}")
    assert err <= BOUND
