"""Options shared by ``sample`` and ``bench``: which sampler, which backend."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import click

from edgediff.errors import EdgediffError
from edgediff.solvers import (
    CLIP,
    ETA,
    RHO,
    S_CHURN,
    S_NOISE,
    S_TMAX,
    S_TMIN,
    SOLVER_NAMES,
    SPACING,
    VARIANCE,
    Option,
)

PROVIDERS = ("cpu", "cuda", "tensorrt")


def _knob(flag: str, opt: Option):
    """A typed flag for a catalogue option: its range or choices, and its help."""
    if opt.choices:
        kind = click.Choice(opt.choices)
    else:
        kind = click.FloatRange(opt.low, None if opt.high == math.inf else opt.high)
    return click.option(flag, type=kind, default=None, help=opt.help + ".")


def solver_options(f):
    """--preset/--solver/--steps and every solver knob, typed."""
    opts = [
        click.option("--preset", default=None, metavar="NAME",
                     help="A sampler preset from configs/samplers.toml (edgediff sample "
                          "--list-presets); options below override it."),
        click.option("--solver", type=click.Choice(SOLVER_NAMES), default=None,
                     help="Step loop. Default: the preset's, else the model's default sampler."),
        click.option("--steps", type=click.IntRange(1), default=None,
                     help="Number of steps (Heun-type solvers spend 2 NFE per step, 1 on the "
                          "last)."),
        _knob("--eta", ETA),
        _knob("--variance", VARIANCE),
        click.option("--clip/--no-clip", default=None,
                     help=f"{CLIP.help}. Default: the model's."),
        _knob("--s-churn", S_CHURN),
        _knob("--s-tmin", S_TMIN),
        _knob("--s-tmax", S_TMAX),
        _knob("--s-noise", S_NOISE),
        _knob("--rho", RHO),
        _knob("--spacing", SPACING),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def backend_options(f):
    opts = [
        click.option("--provider", type=click.Choice(PROVIDERS), default="cpu",
                     show_default=True,
                     help="ONNX Runtime execution provider (.onnx files). tensorrt builds "
                          "an engine for batches 1…--batch on first use and caches it in "
                          "~/.cache/edgediff/ort-tensorrt ($EDGEDIFF_CACHE)."),
        click.option("--threads", type=click.IntRange(1), default=None,
                     help="CPU threads for ONNX Runtime (default: its own choice)."),
        click.option("--cuda-graph", is_flag=True,
                     help="TensorRT plans: replay the engine's launch from a CUDA graph "
                          "(captured on the second call of each batch size)."),
        click.option("--metadata", "metadata_file", default=None,
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="JSON object of edgediff metadata (docs/artifact.md) that supplies "
                          "or overrides the ONNX file's own: for graphs with inputs x, sigma "
                          "and output denoised that edgediff did not export."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


_KNOBS = {"eta": "eta", "variance": "variance", "clip": "clip", "s_churn": "S_churn",
          "s_tmin": "S_tmin", "s_tmax": "S_tmax", "s_noise": "S_noise", "rho": "rho",
          "spacing": "spacing"}


def resolve(preset: str | None, solver: str | None, steps: int | None,
            **knobs: Any) -> tuple[str | None, int | None, dict[str, Any]]:
    """(solver, steps, options) from a preset and explicit flags; flags win."""
    options: dict[str, Any] = {}
    if preset:
        from edgediff.configs import preset as load_preset

        p_solver, p_steps, options = load_preset(preset)
        if solver is not None and solver != p_solver:
            raise EdgediffError(f"preset {preset} is for {p_solver}; drop --solver {solver} or "
                                f"the preset")
        solver, steps = p_solver, steps or p_steps
    options = {**options, **{_KNOBS[k]: v for k, v in knobs.items() if v is not None}}
    return solver, steps, options


def read_metadata_file(path: Path | None) -> dict | None:
    """The JSON object of a --metadata file, or None without one."""
    if path is None:
        return None
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EdgediffError(f"cannot read --metadata {path}: {e}") from None


def load_artifact(path: Path, provider: str, threads: int | None, cuda_graph: bool,
                  metadata_file: Path | None = None, max_batch: int = 16):
    from edgediff import runtime

    return runtime.load(path, provider=provider, threads=threads, cuda_graph=cuda_graph,
                        metadata=read_metadata_file(metadata_file), max_batch=max_batch)


def pass_knobs(f):
    """Collect the solver knobs into one ``knobs`` dict argument."""
    @functools.wraps(f)
    def wrapper(**kwargs):
        knobs = {k: kwargs.pop(k) for k in _KNOBS}
        return f(knobs=knobs, **kwargs)
    return wrapper
