"""Quality scores, presets and suites: the lab's measuring sticks."""

import numpy as np
import pytest

from edgediff import configs
from edgediff.catalogue import SOLVER_NAMES, nfe, steps_for_nfe
from edgediff.errors import EdgediffError
from edgediff.lab.quality import digits_score, mixture_score, reference_rms
from edgediff.mixture import default_mixture_2d


def test_mixture_score_separates_exact_samples_from_wrong_ones():
    mixture = default_mixture_2d()
    score = mixture_score(mixture, 4000)
    fresh = [score(mixture.sample(4000, np.random.default_rng(99 + k))[0]) for k in range(8)]
    assert 0.5 * score.floor < np.mean(fresh) < 2 * score.floor
    exact = mixture.sample(4000, np.random.default_rng(99))[0]
    assert score(exact + 0.5) > 3 * score.floor  # a shift of 0.5 is plainly visible
    collapsed = np.repeat(mixture.means[:1], 4000, axis=0)
    assert score(collapsed) > 10 * score.floor


def test_digits_score_ranks_real_digits_above_noise():
    pytest.importorskip("sklearn")
    from edgediff.datasets import load_dataset

    score = digits_score()
    train = load_dataset("digits", "train")[:360]
    noise = np.random.default_rng(0).uniform(-1, 1, train.shape).astype(np.float32)
    assert score(train) == pytest.approx(score.floor, rel=1e-6)  # the floor is exactly this
    assert score(noise) > 20 * score.floor


def test_reference_rms():
    a = np.zeros((4, 3))
    assert reference_rms(a, a) == 0 and reference_rms(a + 2, a) == pytest.approx(2.0)


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_steps_for_nfe_spends_at_most_the_budget(solver):
    for n in range(2, 60):
        steps = steps_for_nfe(solver, n)
        assert nfe(solver, steps) in (n, n + 1)  # Heun-type: odd budgets exactly
        assert steps >= 1


def test_every_preset_is_a_valid_solver_and_every_suite_resolves():
    from edgediff.grids import EXACT
    from edgediff.settings import SolverSettings

    for name in configs.presets():
        solver, steps, options = configs.preset(name)
        exact = [options.pop(k) for k in EXACT if k in options]  # a distilled model's list
        assert all(len(v) == steps for v in exact), name
        SolverSettings(solver, steps, options)  # raises on unknown options
    for name in configs.suites():
        runs, _ = configs.suite_runs(name)
        assert runs and all(SolverSettings(s, n, {k: v for k, v in o.items() if k not in EXACT})
                            for _, s, n, o in runs)
    assert configs.preset("edm-heun-18") == ("heun", 18, {})
    with pytest.raises(EdgediffError, match="unknown preset 'x'; choose one of edm-heun-18"):
        configs.preset("x")


def test_fid_skips_with_a_reason_instead_of_failing(monkeypatch):
    import sys
    from types import SimpleNamespace

    from edgediff.lab.fid import fid

    points = SimpleNamespace(reference={"kind": "gaussian_mixture"}, sample_shape=(2,))
    assert fid(np.zeros((4, 2)), points) == (None, "FID skipped: it needs an image model "
                                                   "trained on a dataset edgediff knows")
    digits = SimpleNamespace(reference={"kind": "dataset", "name": "digits"},
                             sample_shape=(1, 8, 8), data_range=(-1.0, 1.0))
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails
    value, why = fid(np.zeros((4, 1, 8, 8)), digits)
    assert value is None and why.startswith("FID skipped: torch-fidelity is not usable here")
