"""Consistency distillation (models/distill.py): the teacher's Heun step is the
second-order step it claims, resuming is bitwise, the student is a consistency
model (boundary condition exact) that loads and exports, and bad teachers are
refused in one line."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgediff.cli import main
from edgediff.datasets import load_dataset
from edgediff.errors import EdgediffError
from edgediff.models.checkpoint import LoadedModel, build_denoiser, make_config, save_checkpoint
from edgediff.models.distill import DistillSettings, distill, heun_step, teacher_grid
from edgediff.models.readers.native import load_checkpoint
from edgediff.schedules import EDMSchedule, VPSchedule

MLP = {"dim": 2, "hidden": 16, "depth": 2}


def teacher(par="edm", seed=0) -> LoadedModel:
    torch.manual_seed(seed)
    sch = EDMSchedule() if par == "edm" else VPSchedule()
    config = make_config("mlp", MLP, par, sch, (2,), provenance={"dataset": "mixture2d"})
    D, schedule = build_denoiser(config)
    return LoadedModel(D.eval(), config, schedule)


def test_heun_step_is_second_order_on_gaussian_data():
    """Data N(0, c²): D(x; σ) = x·c²/(c² + σ²) and the PF-ODE carries x(σ0) to
    x(σ0)·sqrt((c² + σ²)/(c² + σ0²)). A second-order step's error is O(h³): halving
    h divides it by 8, up to the O(h⁴) term (hence the band 6…10, not a fit)."""
    c2 = 0.25
    D = lambda x, s, y=None: x * c2 / (c2 + s[:, None] ** 2)  # noqa: E731
    x = torch.ones(1, 2, dtype=torch.float64)

    def error(h):
        hi, lo = torch.tensor([1.0], dtype=torch.float64), torch.tensor([1.0 - h],
                                                                         dtype=torch.float64)
        exact = x * torch.sqrt((c2 + lo**2) / (c2 + hi**2))
        return (heun_step(D, x, hi, lo) - exact).abs().max().item()

    assert 6 < error(0.1) / error(0.05) < 10


def test_grid_runs_from_sigma_max_to_sigma_min():
    grid = teacher_grid(DistillSettings(discretisation=18), 0.002, 80.0)
    assert len(grid) == 18 and grid[0] == pytest.approx(80) and grid[-1] == pytest.approx(0.002)
    assert bool((grid[1:] < grid[:-1]).all())


def test_resuming_is_bitwise_and_the_student_is_a_consistency_model(tmp_path):
    data = load_dataset("mixture2d")[:256]
    s4 = DistillSettings(steps=4, batch=8, checkpoint_every=2)
    straight = distill(teacher(), data, tmp_path / "a", s4)
    distill(teacher(), data, tmp_path / "b", DistillSettings(steps=2, batch=8, checkpoint_every=2))
    resumed = distill(teacher(), data, tmp_path / "b", s4, resume=True)
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    model = load_checkpoint(tmp_path / "b")
    assert model.config["parameterization"]["name"] == "consistency"
    assert model.config["provenance"]["steps"] == 4
    x = torch.randn(5, 2)
    with torch.no_grad():  # f(x, σ_min) = x: c_skip = 1 and c_out = 0 exactly
        torch.testing.assert_close(model.denoiser(x, torch.full((5,), 0.002)), x, rtol=0, atol=0)
        assert not torch.allclose(model.denoiser(x, torch.full((5,), 1.0)), x)


def test_the_student_starts_as_the_teacher_away_from_the_boundary(tmp_path):
    """Same network, same c_in and c_noise: at σ ≫ σ_min the student's f equals the
    teacher's D up to the boundary's shift of c_skip and c_out by σ_min/σ."""
    t = teacher()
    student = distill(t, load_dataset("mixture2d")[:64], tmp_path / "s",
                      DistillSettings(steps=1, batch=4, lr=1e-12))
    x, s = torch.randn(6, 2) * 10, torch.full((6,), 10.0)
    with torch.no_grad():
        np.testing.assert_allclose(student(x, s).numpy(), t.denoiser(x, s).numpy(),
                                   atol=2e-3 * float(x.abs().max()))


def test_non_edm_and_misshapen_teachers_are_refused(tmp_path):
    with pytest.raises(EdgediffError, match="EDM-preconditioned teacher"):
        distill(teacher("vp"), load_dataset("mixture2d")[:64], tmp_path / "x",
                DistillSettings(steps=1, batch=4))
    with pytest.raises(EdgediffError, match="--target-decay"):
        DistillSettings(target_decay=1.0)
    save_checkpoint(tmp_path / "t2d", teacher().denoiser, teacher().config)
    r = CliRunner().invoke(main, ["train", "digits", "--distill", "consistency", "--teacher",
                                  str(tmp_path / "t2d.json"), "-o", str(tmp_path / "s")])
    assert r.exit_code != 0 and "shape [2]" in r.output and "Traceback" not in r.output


def test_train_cli_distils_a_teacher_into_a_loadable_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "t", teacher().denoiser, teacher().config)
    r = CliRunner().invoke(main, ["train", "mixture2d", "--distill", "consistency", "--teacher",
                                  str(tmp_path / "t.json"), "-o", str(tmp_path / "s"),
                                  "--steps", "3", "--batch", "4"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "s.json").read_text())
    assert cfg["parameterization"]["name"] == "consistency"
    assert "--distill consistency" in cfg["provenance"]["command"]
    assert cfg["provenance"]["distillation"]["batch"] == 4
