"""Small PNG plots in NumPy (no matplotlib): scatter plots of 2-D samples and
log–log line plots for the solver lab (quality vs NFE, quality vs latency).

A canvas is an [H, W, 3] uint8 array; text uses a built-in 3×5 pixel font
drawn at 2× scale. Enough to read a figure, not to typeset one.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from edgediff.images import write_png

# 3×5 glyphs, rows top to bottom, '#' = ink
_FONT = {
    "0": "###,#.#,#.#,#.#,###", "1": ".#.,##.,.#.,.#.,###", "2": "###,..#,###,#..,###",
    "3": "###,..#,.##,..#,###", "4": "#.#,#.#,###,..#,..#", "5": "###,#..,###,..#,###",
    "6": "###,#..,###,#.#,###", "7": "###,..#,.#.,.#.,.#.", "8": "###,#.#,###,#.#,###",
    "9": "###,#.#,###,..#,###", "a": ".#.,#.#,###,#.#,#.#", "b": "##.,#.#,##.,#.#,##.",
    "c": ".##,#..,#..,#..,.##", "d": "##.,#.#,#.#,#.#,##.", "e": "###,#..,##.,#..,###",
    "f": "###,#..,##.,#..,#..", "g": ".##,#..,#.#,#.#,.##", "h": "#.#,#.#,###,#.#,#.#",
    "i": "###,.#.,.#.,.#.,###", "j": "..#,..#,..#,#.#,.#.", "k": "#.#,#.#,##.,#.#,#.#",
    "l": "#..,#..,#..,#..,###", "m": "#.#,###,###,#.#,#.#", "n": "##.,#.#,#.#,#.#,#.#",
    "o": ".#.,#.#,#.#,#.#,.#.", "p": "##.,#.#,##.,#..,#..", "q": ".#.,#.#,#.#,##.,.##",
    "r": "##.,#.#,##.,#.#,#.#", "s": ".##,#..,.#.,..#,##.", "t": "###,.#.,.#.,.#.,.#.",
    "u": "#.#,#.#,#.#,#.#,###", "v": "#.#,#.#,#.#,#.#,.#.", "w": "#.#,#.#,###,###,#.#",
    "x": "#.#,#.#,.#.,#.#,#.#", "y": "#.#,#.#,.#.,.#.,.#.", "z": "###,..#,.#.,#..,###",
    ".": "...,...,...,...,.#.", "-": "...,...,###,...,...", "+": "...,.#.,###,.#.,...",
    "_": "...,...,...,...,###", "(": ".#.,#..,#..,#..,.#.", ")": ".#.,..#,..#,..#,.#.",
    "/": "..#,..#,.#.,#..,#..", "=": "...,###,...,###,...", ":": "...,.#.,...,.#.,...",
    "%": "#.#,..#,.#.,#..,#.#", "[": "##.,#..,#..,#..,##.", "]": ".##,..#,..#,..#,.##",
    " ": "...,...,...,...,...", ",": "...,...,...,.#.,#..",
}
COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
          (140, 86, 75), (227, 119, 194), (23, 190, 207)]
INK, GRID, PAPER = (30, 30, 30), (225, 225, 225), (255, 255, 255)


class Canvas:
    def __init__(self, width: int = 720, height: int = 480):
        self.px = np.full((height, width, 3), PAPER, dtype=np.uint8)

    def rect(self, x0, y0, x1, y1, color) -> None:
        h, w = self.px.shape[:2]
        x0, x1 = max(int(x0), 0), min(int(x1), w)
        y0, y1 = max(int(y0), 0), min(int(y1), h)
        if x0 < x1 and y0 < y1:
            self.px[y0:y1, x0:x1] = color

    def line(self, x0, y0, x1, y1, color, width: int = 2) -> None:
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for t in np.linspace(0.0, 1.0, n):
            x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            self.rect(x - width // 2, y - width // 2, x - width // 2 + width,
                      y - width // 2 + width, color)

    def text(self, x, y, s: str, color=INK, scale: int = 2) -> None:
        for k, ch in enumerate(s.lower()):
            rows = _FONT.get(ch, _FONT[" "]).split(",")
            for r, row in enumerate(rows):
                for c, on in enumerate(row):
                    if on == "#":
                        self.rect(x + (4 * k + c) * scale, y + r * scale,
                                  x + (4 * k + c + 1) * scale, y + (r + 1) * scale, color)

    def save(self, path: str | Path) -> None:
        write_png(path, self.px)


def text_width(s: str, scale: int = 2) -> int:
    return 4 * len(s) * scale


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    inside = [t for t in ticks if lo <= t <= hi]
    if len(inside) >= 2:
        return inside
    return [t * m for t in ticks for m in (1, 2, 5) if lo <= t * m <= hi]


def _fmt(v: float) -> str:
    return f"{v:g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.0e}"


def line_plot(path: str | Path, series: dict[str, tuple[list[float], list[float]]], *,
              xlabel: str, ylabel: str, title: str = "") -> None:
    """Log–log plot of named (x, y) series with markers and a legend."""
    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys, strict=True)
           if x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)]
    if not pts:
        raise ValueError("nothing positive and finite to plot")
    cv = Canvas()
    h, w = cv.px.shape[:2]
    left, right, top, bottom = 80, w - 20, 48, h - 60
    lx = np.log10([p[0] for p in pts])
    ly = np.log10([p[1] for p in pts])
    x0, x1 = lx.min() - 0.05, lx.max() + 0.05
    y0, y1 = ly.min() - 0.1, ly.max() + 0.1

    def to_px(x, y):
        return (left + (math.log10(x) - x0) / (x1 - x0) * (right - left),
                bottom - (math.log10(y) - y0) / (y1 - y0) * (bottom - top))

    for t in _log_ticks(10 ** x0, 10 ** x1):
        px, _ = to_px(t, 10 ** y0)
        cv.rect(px, top, px + 1, bottom, GRID)
        cv.text(px - text_width(_fmt(t)) // 2, bottom + 8, _fmt(t))
    for t in _log_ticks(10 ** y0, 10 ** y1):
        _, py = to_px(10 ** x0, t)
        cv.rect(left, py, right, py + 1, GRID)
        cv.text(left - 6 - text_width(_fmt(t)), py - 5, _fmt(t))
    cv.rect(left, bottom, right, bottom + 2, INK)
    cv.rect(left - 2, top, left, bottom + 2, INK)
    cv.text((left + right - text_width(xlabel)) // 2, h - 24, xlabel)
    cv.text(8, 6, title)
    cv.text(8, 26, ylabel, color=(90, 90, 90))
    for k, (name, (xs, ys)) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        good = [(x, y) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0 and
                math.isfinite(x) and math.isfinite(y)]
        for (xa, ya), (xb, yb) in itertools.pairwise(good):
            cv.line(*to_px(xa, ya), *to_px(xb, yb), color)
        for x, y in good:
            px, py = to_px(x, y)
            cv.rect(px - 4, py - 4, px + 5, py + 5, color)
        ly_ = top + 10 + 18 * k
        cv.rect(right - 150, ly_, right - 136, ly_ + 10, color)
        cv.text(right - 130, ly_, name)
    cv.save(path)


def scatter_plot(path: str | Path, points: np.ndarray, reference: np.ndarray | None = None,
                 *, title: str = "", size: int = 560) -> None:
    """2-D samples as dots (blue) over reference samples (gray), equal axes."""
    pts = np.asarray(points, dtype=np.float64)
    everything = pts if reference is None else np.concatenate([pts, reference])
    everything = everything[np.all(np.isfinite(everything), axis=1)]
    lo, hi = np.percentile(everything, [0.5, 99.5], axis=0)
    mid, half = (lo + hi) / 2, max((hi - lo).max() / 2 * 1.1, 1e-9)
    cv = Canvas(size, size + 30)
    cv.text(10, 8, title)

    def draw(p, color):
        p = p[np.all(np.isfinite(p), axis=1)]
        u = ((p - mid) / half * 0.5 + 0.5) * (size - 1)
        keep = np.all((u >= 0) & (u < size - 1), axis=1)
        xs, ys = u[keep, 0].astype(int), (size - 1 - u[keep, 1]).astype(int) + 30
        for dx in (0, 1):
            for dy in (0, 1):
                cv.px[np.minimum(ys + dy, size + 29), np.minimum(xs + dx, size - 1)] = color

    if reference is not None:
        draw(np.asarray(reference, dtype=np.float64), (190, 190, 190))
    draw(pts, COLORS[0])
    cv.save(path)
