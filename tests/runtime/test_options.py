"""Solver options are checked against the catalogue's ranges before any denoiser
call, with the reason given; what the maths does not support never gets as far
as a NaN. Hypothesis generates option sets for every solver: each run either
finishes with finite samples, or is refused with EdgediffError up front."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgediff import runtime
from edgediff.artifact import ArtifactInfo
from edgediff.catalogue import CATALOGUE, SOLVER_NAMES, Churn
from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.options import GRID_OPTIONS
from edgediff.runtime import NonFiniteOutputError
from edgediff.schedules import EDMSchedule, VPSchedule


class GaussianData:
    """D(x̂; σ) = x̂/(1 + σ²), the exact denoiser of N(0, I) data; counts its calls."""

    def __init__(self, info):
        self.info, self.calls = info, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return (x / (1 + sigma.astype(np.float64) ** 2)[:, None]).astype(np.float32)


def info_for(schedule) -> ArtifactInfo:
    if isinstance(schedule, DiscreteSchedule):
        lo, hi = float(schedule.sigma_table[0]), float(schedule.sigma_table[-1])
    else:
        lo, hi = schedule.sigma_min, schedule.sigma_max
    return ArtifactInfo("analytic", schedule, lo, hi, 1.0, (2,), (-4.0, 4.0), "unknown",
                        {"solver": "euler", "steps": 10}, "fp32")


INFOS = {"edm": info_for(EDMSchedule()), "vp": info_for(VPSchedule()),
         "ddpm": info_for(DiscreteSchedule.from_betas())}


@pytest.mark.parametrize("solver,options,says", [
    ("ddim", {"eta": -0.1}, "eta = -0.1 is not allowed; it takes a number in [0, 1]"),
    ("ddim", {"eta": 1.5}, "more variance than the step has"),
    ("ddim", {"eta": math.nan}, "eta = nan"),
    ("edm", {"S_churn": -1.0}, "S_churn = -1.0"),
    ("edm", {"S_noise": 5.0}, "EDM uses 1.000–1.010"),
    ("edm", {"S_tmin": 10.0, "S_tmax": 1.0}, "need S_tmin ≤ S_tmax"),
    ("edm", {"S_churn": math.inf}, "finite"),
    ("ddpm", {"variance": "huge"}, "one of small, large"),
    ("ddpm", {"clip": 1}, "true or false"),
    ("heun", {"eta": 0.5}, "heun takes no option eta"),
    ("heun", {"rho": 0.3}, "crowds the steps at σ_max"),
    ("euler", {"rho": "7"}, "rho = '7'"),
])
def test_out_of_range_options_are_refused_before_any_call(solver, options, says):
    D = GaussianData(INFOS["edm"])
    with pytest.raises(EdgediffError) as e:
        runtime.sample(D, 2, solver=solver, steps=8, options=options)
    assert says in str(e.value) and D.calls == 0


def test_steps_beyond_the_discrete_table_are_refused_before_any_call():
    D = GaussianData(INFOS["ddpm"])
    with pytest.raises(EdgediffError, match="1001 steps asked of a chain of 1000 timesteps"):
        runtime.sample(D, 2, solver="ddpm", steps=1001)
    assert D.calls == 0


def test_each_loop_checks_its_options_itself_too():
    """Called directly (no settings in between), the loops use the same catalogue."""
    from edgediff.runtime import stochastic

    D = GaussianData(INFOS["edm"])
    x = np.zeros((1, 2))
    with pytest.raises(EdgediffError, match=r"eta = 2\.0 is not allowed"):
        stochastic.ddim(D, x, [1.0, 0.0], noise=lambda i: x, eta=2.0)
    with pytest.raises(EdgediffError, match=r"S_noise = -1\.0 is not allowed"):
        stochastic.edm(D, x, [1.0, 0.0], noise=lambda i: x, churn=Churn(S_noise=-1.0))
    assert D.calls == 0


# -- generated option sets -------------------------------------------------------------

any_value = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10**6)
             | st.booleans() | st.none() | st.text(max_size=8)
             | st.sampled_from(["small", "large", "leading", "trailing", "linspace"]))


def plausible(option):
    """Values near and inside an option's range, and its choices."""
    if option.choices:
        return st.sampled_from(option.choices)
    if isinstance(option.default, bool):
        return st.booleans()
    hi = 1e4 if option.high == math.inf else option.high
    return st.floats(option.low - 1, hi + 1, allow_nan=False) | st.sampled_from(
        [option.low, option.high])


@st.composite
def option_sets(draw, solver):
    spec = CATALOGUE[solver]
    options = {}
    for opt in spec.options + GRID_OPTIONS:
        # shift and mu shape only flow grids: rarer, so the other cases still sample
        rare = opt.name in ("shift", "mu")
        if draw(st.booleans()) and (not rare or draw(st.integers(0, 7)) == 0):
            options[opt.name] = draw(plausible(opt) | any_value)
    if draw(st.integers(0, 9)) == 0:
        options[draw(st.sampled_from(["eta", "S_churn", "colour", "order"]))] = draw(any_value)
    # any value but a huge step count: 10^6 steps are legal and take minutes a case
    steps = draw(st.integers(-2, 40) | st.sampled_from([1000, 1001])
                 | any_value.filter(lambda v: not isinstance(v, int) or v <= 1001))
    return draw(st.sampled_from(sorted(INFOS))), steps, options


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_generated_options_finish_finite_or_are_refused_up_front(solver):
    outcomes = set()

    @settings(max_examples=150, deadline=None, derandomize=True,  # both outcomes, every run
              suppress_health_check=[HealthCheck.too_slow])
    @given(option_sets(solver))
    def check(case):
        name, steps, options = case
        D = GaussianData(INFOS[name])
        try:
            x = runtime.sample(D, 2, seed=1, solver=solver, steps=steps, options=options)
        except NonFiniteOutputError as e:
            raise AssertionError(f"got as far as a NaN: {e}") from None
        except EdgediffError:
            assert D.calls == 0, "refused, but only after calling the denoiser"
            outcomes.add("refused")
            return
        assert np.all(np.isfinite(x)) and D.calls > 0
        outcomes.add("sampled")

    check()
    assert outcomes == {"refused", "sampled"}  # the generator reaches both
