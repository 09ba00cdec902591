"""--sigmas and --timesteps: a distilled model's exact σ's, checked before any call."""

from types import SimpleNamespace

import numpy as np
import pytest

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.grids import exact_grid, exact_sigmas, timestep_sigmas
from edgediff.schedules import EDMSchedule

EDM = SimpleNamespace(schedule=EDMSchedule(), sigma_min=0.002, sigma_max=80.0)
VP = DiscreteSchedule.from_betas()
DISCRETE = SimpleNamespace(schedule=VP, sigma_min=float(VP.sigma_table[0]),
                           sigma_max=float(VP.sigma_table[-1]))


def test_sigmas_come_back_with_the_final_zero():
    assert exact_sigmas(EDM, "80,24.4,5.84,0.9") == [80.0, 24.4, 5.84, 0.9, 0.0]
    assert exact_sigmas(EDM, [80, 1.38, 0]) == [80.0, 1.38, 0.0]  # a written 0 is fine


def test_timesteps_map_through_the_models_own_sigma_table():
    got = timestep_sigmas(DISCRETE, "999,759,499,259")
    abar = VP.alphas_cumprod[[999, 759, 499, 259]]
    np.testing.assert_allclose(got[:-1], np.sqrt((1 - abar) / abar), rtol=1e-12)
    assert got[-1] == 0.0


@pytest.mark.parametrize("text,message", [
    ("80,90", "strictly decreasing"), ("80,80", "strictly decreasing"),
    ("80,nan", "finite and > 0"), ("80,-1", "finite and > 0"), ("80,inf", "finite"),
    ("100,1", "the model knows"), ("80,0.0001", "the model knows"),
    ("80,abc", "comma-separated numbers"), ("", "at least one number")])
def test_bad_sigma_lists_are_one_line(text, message):
    with pytest.raises(EdgediffError, match=message):
        exact_sigmas(EDM, text)


@pytest.mark.parametrize("info,text,message", [
    (DISCRETE, "999,999", "strictly decreasing"), (DISCRETE, "500,999", "strictly decreasing"),
    (DISCRETE, "1000", "from 0 to 999"), (DISCRETE, "999.5", "whole numbers"),
    (DISCRETE, "-1", "whole numbers"), (EDM, "999", "continuous 'edm' schedule")])
def test_bad_timestep_lists_are_one_line(info, text, message):
    with pytest.raises(EdgediffError, match=message):
        timestep_sigmas(info, text)


def test_exact_grid_takes_its_keys_out_and_checks_the_step_count():
    options = {"sigmas": "80,1.38", "clip": True}
    assert exact_grid(EDM, options, 2) == [80.0, 1.38, 0.0] and options == {"clip": True}
    assert exact_grid(EDM, {"clip": True}) is None
    with pytest.raises(EdgediffError, match="--steps 3 but 2 σ's given"):
        exact_grid(EDM, {"sigmas": "80,1.38"}, 3)
    with pytest.raises(EdgediffError, match="give one"):
        exact_grid(DISCRETE, {"sigmas": "80", "timesteps": "999"})
