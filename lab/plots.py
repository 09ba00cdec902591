"""The solver lab's figures, drawn by matplotlib (Agg, no display needed).

- ``line_plot``: quality against cost (NFE, latency, guidance scale), one line
  per solver, log axes where the data spans a decade or more, and the
  real-vs-real floor as a dashed reference line, so "2× the floor" can be read
  off the figure.
- ``scatter_plot``: 2-D samples over the exact mixture's density contours.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; never a window
from matplotlib import pyplot as plt

from edgediff.mixture import GaussianMixture

DPI = 120


def spans_decades(values) -> bool:
    """Log scale when the positive values span a factor of 10 or more."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    return bool(v) and min(v) > 0 and max(v) / min(v) >= 10


def _save(fig, path: str | Path) -> None:
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def line_plot(path: str | Path, series: dict[str, tuple[list[float], list[float]]], *,
              xlabel: str, ylabel: str, title: str, floor: float | None = None,
              floor_label: str = "real vs real (floor)") -> None:
    """``line_figure``, written to ``path`` as PNG."""
    _save(line_figure(series, xlabel=xlabel, ylabel=ylabel, title=title, floor=floor,
                      floor_label=floor_label), path)


def line_figure(series: dict[str, tuple[list[float], list[float]]], *, xlabel: str,
                ylabel: str, title: str, floor: float | None = None,
                floor_label: str = "real vs real (floor)"):
    """Named (x, y) series with markers and a legend; x and y each on a log scale
    when their values span a decade. ``floor``: a horizontal reference line."""
    finite = {name: [(x, y) for x, y in zip(xs, ys, strict=True)
                     if x is not None and y is not None and math.isfinite(x)
                     and math.isfinite(y)]
              for name, (xs, ys) in series.items()}
    points = [p for pts in finite.values() for p in pts]
    if not points:
        raise ValueError("nothing finite to plot")
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    for name, pts in finite.items():
        if pts:
            pts.sort()
            ax.plot(*zip(*pts, strict=True), marker="o", markersize=4, linewidth=1.5,
                    label=name)
    ys = [y for _, y in points] + ([floor] if floor is not None else [])
    if floor is not None and math.isfinite(floor):
        ax.axhline(floor, color="0.35", linestyle="--", linewidth=1.2, label=floor_label)
    if spans_decades([x for x, _ in points]):
        ax.set_xscale("log")
        _plain_log_labels(ax.xaxis)
    if spans_decades(ys):
        ax.set_yscale("log")
        _plain_log_labels(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(fontsize=8, ncol=2 if len(finite) > 6 else 1, frameon=False)
    return fig


def _plain_log_labels(axis) -> None:
    """Log-axis labels as plain numbers (2, 5, 10, 20), none on the minor ticks: the
    default labels every minor tick as 3×10⁰ and they collide."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def scatter_plot(path: str | Path, points: np.ndarray, mixture: GaussianMixture | None = None,
                 *, title: str) -> None:
    """``scatter_figure``, written to ``path`` as PNG."""
    _save(scatter_figure(points, mixture, title=title), path)


def scatter_figure(points: np.ndarray, mixture: GaussianMixture | None = None, *, title: str):
    """2-D samples as dots over the exact mixture's density contours (log p at the
    levels holding 50, 90 and 99 % of the mass), equal axes."""
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    lo, hi = np.percentile(pts, [0.5, 99.5], axis=0) if len(pts) else (-1.0, 1.0)
    if mixture is not None:  # the frame holds the modes too
        spread = 3 * float(np.max(mixture.stds))
        lo = np.minimum(lo, np.min(mixture.means, axis=0) - spread)
        hi = np.maximum(hi, np.max(mixture.means, axis=0) + spread)
    mid, half = (lo + hi) / 2, max(float(np.max(hi - lo)) / 2 * 1.05, 1e-9)
    fig, ax = plt.subplots(figsize=(5.6, 5.6))
    if mixture is not None:
        g = np.linspace(-half, half, 240)
        xx, yy = np.meshgrid(g + mid[0], g + mid[1])
        logp = mixture.log_prob(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(xx.shape)
        levels = mass_levels(mixture)
        cs = ax.contour(xx, yy, logp, levels=[lv for lv, _ in levels], colors="0.3",
                        linewidths=0.9, linestyles="solid")
        ax.clabel(cs, fmt={lv: name for lv, name in levels}, fontsize=7)
    ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, color="C0", linewidths=0,
               label=f"{len(pts)} samples")
    if mixture is not None:
        ax.plot([], [], color="0.3", linewidth=0.9,
                label="exact density: regions of 50, 90, 99 % mass")
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    return fig


def mass_levels(mixture: GaussianMixture, masses=(0.99, 0.9, 0.5), draws: int = 20_000
                ) -> list[tuple[float, str]]:
    """(log p threshold, label) whose superlevel set {x: log p(x) ≥ threshold} holds
    each mass, ascending: the (1 − mass)-quantile of log p(X), X ~ p (exact draws)."""
    x, _ = mixture.sample(draws, np.random.default_rng(0))
    logp = mixture.log_prob(x)
    return [(float(np.quantile(logp, 1 - m)), f"{m:.0%}") for m in masses]
