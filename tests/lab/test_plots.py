"""The lab's figures: what a reader needs is on them (ticks and labels, log axes
where the data spans decades, a legend, a title, the floor, the exact density)."""

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib is not installed (the lab extra)")
pytest.importorskip("PIL", reason="Pillow is not installed (the lab extra)")
import matplotlib
from PIL import Image

from edgediff.lab.plots import (
    line_figure,
    line_plot,
    mass_levels,
    scatter_figure,
    scatter_plot,
    spans_decades,
)
from edgediff.mixture import default_mixture_2d

SERIES = {"euler": ([5, 9, 19, 35], [0.3, 0.19, 0.12, 0.077]),
          "heun": ([5, 9, 19, 35], [6.2, 1.4, 0.2, 0.06])}


def test_figures_use_the_file_backend():
    assert matplotlib.get_backend().lower() == "agg"


def test_log_axes_where_the_values_span_a_decade():
    assert spans_decades([5, 35, 100]) and not spans_decades([5, 35])
    assert not spans_decades([0.0, 10, 100])  # a zero cannot go on a log axis
    fig = line_figure(SERIES, xlabel="NFE", ylabel="RMS", title="RMS against NFE")
    ax = fig.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "log")
    assert len(ax.get_yticks()) >= 3 and ax.get_xlabel() == "NFE"
    assert ax.get_title() == "RMS against NFE"


def test_the_legend_names_every_series_and_the_floor_line():
    fig = line_figure(SERIES, xlabel="NFE", ylabel="FD", title="t", floor=0.05,
                      floor_label="real vs real: 0.05")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["euler", "heun", "real vs real: 0.05"]
    floor = next(ln for ln in ax.get_lines() if ln.get_label() == "real vs real: 0.05")
    assert np.allclose(floor.get_ydata(), 0.05) and floor.get_linestyle() == "--"


def test_nothing_finite_to_plot_is_refused():
    with pytest.raises(ValueError, match="nothing finite"):
        line_figure({"a": ([1.0], [float("nan")])}, xlabel="x", ylabel="y", title="t")


def test_the_mass_contours_hold_their_mass():
    """P(log p(X) ≥ level) for fresh exact draws X equals the level's mass, within 5
    binomial standard errors of 20,000 draws (and the level's own quantile error)."""
    mix = default_mixture_2d()
    x, _ = mix.sample(20_000, np.random.default_rng(7))
    logp = mix.log_prob(x)
    for level, label in mass_levels(mix):
        mass = float(label.rstrip("%")) / 100
        se = np.sqrt(mass * (1 - mass) / len(x))
        assert abs(np.mean(logp >= level) - mass) < 5 * np.sqrt(2) * se


def test_the_scatter_draws_the_exact_density_under_the_samples():
    mix = default_mixture_2d()
    pts, _ = mix.sample(500, np.random.default_rng(0))
    ax = scatter_figure(pts, mix, title="500 samples").axes[0]
    assert len(ax.collections[0].levels) == 3  # the three mass contours
    assert len(ax.collections[-1].get_offsets()) == 500  # every sample, over them
    assert ax.get_aspect() == 1.0
    lo, hi = ax.get_xlim()
    assert lo < mix.means[:, 0].min() and hi > mix.means[:, 0].max()


def test_pngs_are_written(tmp_path):
    line_plot(tmp_path / "a.tmp", SERIES, xlabel="NFE", ylabel="RMS", title="t", floor=0.1)
    scatter_plot(tmp_path / "b.tmp", np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]), title="t")
    for name in ("a.tmp", "b.tmp"):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and min(im.size) > 300
