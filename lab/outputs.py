"""What the lab writes: sample files and figures for ``sample``, tables and
figures for ``bench`` (and ``demo``). Every file goes through ``atomic_path``,
so a failed run leaves none half-written.

Figures need the ``lab`` extra (matplotlib, Pillow). ``bench`` requires it; a
plain ``sample`` on a deploy install writes samples.npz and says how to get
the figures (``figures_missing``).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import numpy as np

from edgediff.errors import missing_extra
from edgediff.fileio import atomic_path

# bench metric -> its axis label; bench axis -> (axis label, file name part)
METRICS = {"reference_rms": "RMS error vs a Heun-{reference_steps} solution",
           "distance": "{distance} to the data",
           "label_accuracy": "label accuracy (shipped classifier)"}
AXES = {"nfe": ("NFE (denoiser calls per sample)", "nfe"),
        "ms_median": ("wall time per sample, ms (median)", "latency"),
        "guidance": ("guidance scale w", "guidance")}


def figures_missing() -> str | None:
    """None when matplotlib and Pillow are installed, else the line that installs them."""
    for module, name in (("matplotlib", "matplotlib"), ("PIL", "Pillow")):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a finder that refuses it outright
            found = False
        if not found:
            return str(missing_extra(name, "lab"))
    return None


def require_figures() -> None:
    """Stop before any work when the figures cannot be drawn."""
    missing = figures_missing()
    if missing:
        from edgediff.errors import EdgediffError

        raise EdgediffError(missing)


def write_bench(folder: Path, rows, meta: dict) -> list[Path]:
    """bench.csv, bench.json and one figure per (metric, axis): quality against NFE and
    against latency (a guidance sweep: against w), one line per solver, the
    distribution score's real-vs-real floor as a reference line."""
    from edgediff.lab.plots import line_plot

    written = []
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].as_dict()))
    w.writeheader()
    for r in rows:
        w.writerow(r.as_dict())
    for name, text in (("bench.csv", buf.getvalue()),
                       ("bench.json", json.dumps({**meta, "rows": [r.as_dict() for r in rows]},
                                                 indent=1) + "\n")):
        with atomic_path(folder / name) as tmp:
            Path(tmp).write_text(text)
        written.append(folder / name)
    sweep = rows[0].guidance is not None
    metrics = ["reference_rms"] + (["distance"] if rows[0].distance_name else []) + (
        ["label_accuracy"] if sweep else [])
    axes = ["guidance"] if sweep else ["nfe", "ms_median"]
    what = (f"{meta['artifact_name']}, {meta['num']} samples per run, seed {meta['seed']}")
    for key in metrics:
        ylabel = METRICS[key].format(distance=rows[0].distance_name,
                                     reference_steps=meta.get("reference_steps", 100))
        for axis in axes:
            series: dict[str, tuple[list, list]] = {}
            for r in rows:
                if getattr(r, key) is not None:
                    run = r.label.split(" w=")[0] if sweep else (
                        r.solver if r.label.startswith(r.solver) else r.label)
                    if r.model is not None:  # two artifacts (bench --teacher)
                        run = f"{r.model}: {r.solver}"
                    xs, ys = series.setdefault(run, ([], []))
                    xs.append(getattr(r, axis))
                    ys.append(getattr(r, key))
            if not series:
                continue
            xlabel, part = AXES[axis]
            path = folder / f"{key}_vs_{part}.png"
            floor = meta.get("distance_floor") if key == "distance" else None
            with atomic_path(path) as tmp:
                line_plot(tmp, series, xlabel=xlabel, ylabel=ylabel, floor=floor,
                          floor_label=f"real vs real: {floor:.3g}" if floor else "",
                          title=f"{ylabel} against {xlabel.split(' (')[0].split(',')[0]}\n"
                                f"{what}")
            written.append(path)
    return written


def write_samples(folder: Path, samples: np.ndarray, info, meta: dict,
                  labels: np.ndarray | None = None, columns: int | None = None, *,
                  figures: bool = True) -> list[Path]:
    """samples.npz always (with the class labels, when given); with ``figures``, a PNG
    grid for images (``columns`` per row: one row per class) or, for 2-D points, a
    scatter over the exact density when the artifact knows it."""
    written = []
    npz = folder / "samples.npz"
    extra = {} if labels is None else {"labels": labels}
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, samples=samples, meta=json.dumps(meta), **extra)
    written.append(npz)
    shape = info.sample_shape
    if not figures:
        return written
    if len(shape) == 3 and shape[0] in (1, 3):
        from edgediff.lab.images import grid, to_uint8, write_png

        png = folder / "samples.png"
        side = columns or int(np.ceil(np.sqrt(min(len(samples), 256))))
        shown = samples[: 32 * columns] if columns else samples[:256]  # at most 32 rows
        with atomic_path(png) as tmp:
            write_png(tmp, grid(to_uint8(shown, info.data_range), columns=side),
                      scale=max(1, 256 // (side * shape[2])))
        written.append(png)
    elif shape == (2,):
        from edgediff.lab.plots import scatter_plot

        png = folder / "scatter.png"
        mixture = None
        if (info.reference or {}).get("kind") == "gaussian_mixture":
            from edgediff.mixture import GaussianMixture

            mixture = GaussianMixture.from_dict(info.reference["mixture"])
        model = Path(meta["artifact"]).name if "artifact" in meta else "the model"
        how = f", {meta['solver']} {meta['steps']} steps" if "solver" in meta else ""
        exact = "\nover the exact mixture's density" if mixture is not None else ""
        with atomic_path(png) as tmp:
            scatter_plot(tmp, samples, mixture,
                         title=f"{len(samples)} samples of {model}{how}{exact}")
        written.append(png)
    return written
