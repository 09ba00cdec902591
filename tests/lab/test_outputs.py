"""What ``sample`` and ``bench`` write, called as library functions."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib is not installed (the lab extra)")
pytest.importorskip("PIL", reason="Pillow is not installed (the lab extra)")
from PIL import Image

from edgediff.artifact import ArtifactInfo
from edgediff.lab.bench import Row
from edgediff.lab.outputs import write_bench, write_samples
from edgediff.mixture import default_mixture_2d
from edgediff.schedules import EDMSchedule


def info(shape, reference=None):
    return ArtifactInfo("edm", EDMSchedule(), 0.002, 80.0, 0.5, shape, (-1.0, 1.0), "0" * 64,
                        {"solver": "heun", "steps": 18}, "fp32", reference)


def test_images_become_an_npz_and_a_grid_with_one_row_per_class(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (30, 1, 8, 8)).astype(np.float32)
    labels = np.repeat(np.arange(3), 10)
    written = write_samples(tmp_path, x, info((1, 8, 8)), {"seed": 0}, labels, columns=10)
    assert [p.name for p in written] == ["samples.npz", "samples.png"]
    with np.load(tmp_path / "samples.npz") as z:
        assert np.array_equal(z["samples"], x) and np.array_equal(z["labels"], labels)
        assert json.loads(str(z["meta"])) == {"seed": 0}
    with Image.open(tmp_path / "samples.png") as im:  # 10 columns × 3 rows of 8×8 + padding
        w, h = im.size
        assert w / h == pytest.approx((10 * 9 + 1) / (3 * 9 + 1))


def test_points_become_a_scatter_and_figures_can_be_left_out(tmp_path):
    mix = default_mixture_2d()
    ref = {"kind": "gaussian_mixture", "mixture": mix.to_dict()}
    x, _ = mix.sample(64, np.random.default_rng(0))
    meta = {"artifact": "out/mixture.onnx", "solver": "heun", "steps": 18}
    names = [p.name for p in write_samples(tmp_path, x, info((2,), ref), meta)]
    assert names == ["samples.npz", "scatter.png"]
    (tmp_path / "bare").mkdir()
    assert [p.name for p in write_samples(tmp_path / "bare", x, info((2,), ref), meta,
                                          figures=False)] == ["samples.npz"]


def row(label, solver, nfe, rms, dist):
    return Row(label, solver, nfe, nfe, 1.0 * nfe, 1.2 * nfe, 1e3 / nfe, rms, dist, "FD")


def test_bench_tables_and_figures(tmp_path):
    rows = [row("euler-5", "euler", 5, 0.3, 20.0), row("euler-35", "euler", 35, 0.07, 5.6),
            row("ddpm-1000", "ddpm", 1000, None, 4.0)]
    meta = {"artifact_name": "digits", "num": 256, "seed": 0, "reference_steps": 100,
            "distance_floor": 3.46}
    names = [p.name for p in write_bench(tmp_path, rows, meta)]
    assert names == ["bench.csv", "bench.json", "reference_rms_vs_nfe.png",
                     "reference_rms_vs_latency.png", "distance_vs_nfe.png",
                     "distance_vs_latency.png"]
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["distance_floor"] == 3.46 and [r["label"] for r in saved["rows"]] == [
        "euler-5", "euler-35", "ddpm-1000"]
    assert (tmp_path / "bench.csv").read_text().splitlines()[0].startswith("label,solver,steps")
