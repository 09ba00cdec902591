"""Tuned σ grids (edgediff.lab.tune, edgediff.gridfile, edgediff tune-grid) on the
exact 2-D mixture, whose denoiser is the analytic one: no training noise."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("torch", reason="exporting needs torch")

from edgediff.errors import EdgediffError
from edgediff.gridfile import (
    SidecarMismatchError,
    TunedEntry,
    find_grid,
    read_grids,
    sidecar_path,
    write_grid,
)
from edgediff.settings import SolverSettings


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    from edgediff.export.onnx import ExportOptions, export_onnx
    from edgediff.models.loader import resolve_source

    path = tmp_path_factory.mktemp("tune") / "mixture.onnx"
    model, digest = resolve_source("mixture2d")
    export_onnx(model, path, ExportOptions(validate=False), source_sha256=digest)
    return path


@pytest.fixture(scope="module")
def tuned(mixture):
    """dpmpp_2m at 4 steps, tuned on 128 samples of seed 1000."""
    from edgediff import runtime
    from edgediff.lab.tune import TuneOptions, tune_grid

    D = runtime.load(mixture, threads=1)
    seen = []
    entry = tune_grid(D, "dpmpp_2m", 4, tune=TuneOptions(
        calibration=128, reference_steps=60, evaluations=60, batch=128),
        progress=lambda done, total, best: seen.append((done, total, best)))
    return D, entry, seen


def entry_for(sigmas, solver="heun", options=None, **kw):
    return TunedEntry(solver=solver, steps=len(sigmas) - 1, options=options or {},
                      sigmas=sigmas, default_sigmas=sigmas, calibration={"seed": 1, "first": 0,
                                                                         "num": 4,
                                                                         "reference_steps": 9},
                      objective_before=2.0, objective_after=1.0, **kw)


def test_every_logit_vector_is_a_strictly_decreasing_grid_in_the_trained_range():
    from edgediff.lab.tune import grid_from_logits, logits_from_grid

    rng = np.random.default_rng(0)
    for _ in range(200):
        theta = rng.normal(0, 3, size=rng.integers(2, 9))
        s = grid_from_logits(theta, 80.0, 0.002)
        assert s[0] == 80.0 and s[-1] == 0.0 and len(s) == len(theta) + 1
        assert np.all(np.diff(s) < 0) and s[-2] >= 0.002 * (1 - 1e-12)
    grid = [80.0, 10.0, 1.0, 0.1, 0.0]  # ends above σ_min: recovered exactly
    np.testing.assert_allclose(grid_from_logits(logits_from_grid(grid, 0.002), 80.0, 0.002),
                               grid, rtol=1e-12)


def test_nelder_mead_finds_a_quadratic_minimum():
    from edgediff.lab.tune import nelder_mead

    target = np.array([1.0, -2.0, 0.5])
    x, fx, calls = nelder_mead(lambda x: float(np.sum((x - target) ** 2)), np.zeros(3),
                               evaluations=400)
    assert calls <= 400 and fx < 1e-8
    np.testing.assert_allclose(x, target, atol=1e-4)


def test_a_tuned_grid_lowers_the_error_on_calibration_and_on_held_out_seeds(tuned):
    from edgediff.lab.tune import TuneOptions, calibration_error

    D, entry, seen = tuned
    assert entry.objective_after < 0.8 * entry.objective_before
    assert entry.sigmas != entry.default_sigmas and entry.sigmas[0] == entry.default_sigmas[0]
    assert entry.sigmas[-2] >= D.info.sigma_min
    held_out = TuneOptions(calibration=256, seed=7, reference_steps=60, batch=256)
    assert (calibration_error(D, entry, entry.sigmas, held_out)
            < 0.8 * calibration_error(D, entry, entry.default_sigmas, held_out))
    # progress: the reference, then every run; the best never rises
    assert seen[-1][0] == entry.evaluations + 1 and seen[0][2] is None
    bests = [b for _, _, b in seen if b is not None]
    assert bests == sorted(bests, reverse=True) and bests[-1] == entry.objective_after


@pytest.mark.parametrize("solver", ["euler_ancestral", "ddpm", "dpmpp_2m_sde"])
def test_stochastic_solvers_are_refused(tuned, solver):
    from edgediff.lab.tune import tune_grid

    with pytest.raises(EdgediffError, match="draws fresh noise"):
        tune_grid(tuned[0], solver, 4)


def test_the_sidecar_round_trips_and_keeps_one_grid_per_solver_steps_and_options(tmp_path):
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"graph")
    first = entry_for([80.0, 3.0, 0.5, 0.0])
    write_grid(artifact, first)
    third = entry_for([80.0, 2.0, 0.3, 0.0], "dpmpp_3m", {"weights": "third_order"})
    published = entry_for([80.0, 1.0, 0.2, 0.0], "dpmpp_3m", {"weights": "published"})
    write_grid(artifact, third)
    write_grid(artifact, published)
    again = entry_for([80.0, 4.0, 0.6, 0.0])  # replaces heun-3
    path = write_grid(artifact, again)
    assert path == sidecar_path(artifact) == tmp_path / "model.onnx.grids.json"
    assert sorted(read_grids(artifact), key=lambda e: e.sigmas) == sorted(
        [again, third, published], key=lambda e: e.sigmas)
    assert find_grid(artifact, "heun", 3, {}) == again
    assert find_grid(artifact, "dpmpp_3m", 3, {"weights": "published"}) == published
    assert find_grid(artifact, "heun", 4, {}) is None
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temp file left
    data = json.loads(path.read_text())
    assert data["artifact"] == "model.onnx" and len(data["artifact_sha256"]) == 64


def test_a_tuned_entry_must_be_a_grid():
    with pytest.raises(EdgediffError, match="strictly decreasing"):
        entry_for([80.0, 3.0, 3.0, 0.0])
    with pytest.raises(EdgediffError, match="strictly decreasing"):
        entry_for([80.0, 3.0, 0.1])


def test_a_sidecar_of_another_artifact_is_refused_and_commands_ignore_it(tmp_path, mixture):
    from edgediff import runtime
    from edgediff.lab.tuned import tuned_sigmas

    artifact = tmp_path / "model.onnx"
    shutil.copy(mixture, artifact)
    write_grid(artifact, entry_for([80.0, 3.0, 0.5, 0.0]))
    info = runtime.load(artifact).info
    heun3 = SolverSettings("heun", 3)
    assert tuned_sigmas(artifact, info, heun3, {})[0] == [80.0, 3.0, 0.5, 0.0]
    sigmas, note = tuned_sigmas(artifact, info, heun3, {"grid": "default"})  # --grid default
    assert sigmas is None and "grid=default as asked" in note
    assert tuned_sigmas(artifact, info, SolverSettings("heun", 4), {}) == (None, None)
    artifact.write_bytes(artifact.read_bytes() + b"\0")  # another artifact, the same name
    with pytest.raises(SidecarMismatchError, match="tuned for another artifact"):
        read_grids(artifact)
    sigmas, note = tuned_sigmas(artifact, info, heun3, {})
    assert sigmas is None and note.startswith("warning:") and "tune-grid" in note


@pytest.mark.extra("lab")  # the plot and bench's figures
def test_tune_grid_writes_the_sidecar_and_plot_and_sample_uses_the_grid(mixture, tmp_path):
    from click.testing import CliRunner

    from edgediff.cli import main

    artifact = tmp_path / "m.onnx"
    shutil.copy(mixture, artifact)

    def run(*args):
        r = CliRunner().invoke(main, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        return r.output

    out = run("tune-grid", artifact, "--solver", "ipndm", "--steps", "3", "--calibration", 64,
              "--reference-steps", 40, "--evaluations", 30, "-o", tmp_path / "plots")
    assert "wrote " + str(sidecar_path(artifact)) in out
    assert (tmp_path / "plots" / "m.onnx.grid-ipndm-3.png").stat().st_size > 0
    entry = find_grid(artifact, "ipndm", 3, {"order": 4})
    assert entry is not None and entry.objective_after < entry.objective_before

    def meta(folder):
        with np.load(folder / "samples.npz") as f:
            return json.loads(str(f["meta"]))

    out = run("sample", artifact, "--solver", "ipndm", "--steps", 3, "--num", 4, "-o",
              tmp_path / "tuned")
    assert "σ grid: tuned for ipndm-3" in out
    assert meta(tmp_path / "tuned")["sigmas"] == entry.sigmas
    out = run("sample", artifact, "--solver", "ipndm", "--steps", 3, "--num", 4, "--grid",
              "default", "-o", tmp_path / "default")
    assert "not used" in out and meta(tmp_path / "default")["sigmas"] is None
    # generate and bench pick the same grid up: generate's manifest and samples, bench's rows
    out = run("generate", artifact, "--solver", "ipndm", "--steps", 3, "--num", 4, "-o",
              tmp_path / "gen")
    job = json.loads((tmp_path / "gen" / "manifest.json").read_text())["job"]
    assert job["sigmas"] == entry.sigmas and "σ grid: " in out
    shards = sorted((tmp_path / "gen").glob("*samples*.npy"))
    with np.load(tmp_path / "tuned" / "samples.npz") as z:
        assert np.array_equal(np.concatenate([np.load(p) for p in shards]), z["samples"])
    out = run("bench", artifact, "--solvers", "ipndm", "--steps", 3, "--num", 4, "--batch", 4,
              "-o", tmp_path / "bench")
    rows = json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]
    assert rows[0]["sigmas"] == entry.sigmas and "(tuned)" in rows[0]["label"]
    r = CliRunner().invoke(main, ["tune-grid", str(artifact), "--solver", "euler_ancestral",
                                  "--steps", "3"])
    assert r.exit_code == 1 and "draws fresh noise" in r.output and "Traceback" not in r.output
