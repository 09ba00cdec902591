"""Options shared by ``sample`` and ``bench``: which solver, which backend."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import click

from edgediff.catalogue import SOLVER_NAMES, options_by_name
from edgediff.errors import EdgediffError
from edgediff.grids import EXACT  # --sigmas/--timesteps, and preset keys of those names
from edgediff.options import Option

PROVIDERS = ("cpu", "cuda", "tensorrt")
ONNX_ENGINES = ("onnxruntime", "openvino")  # as edgediff.runtime.backends (torch-free, but
PRECISIONS = ("f32", "bf16", "f16")          # --help must not import the runtime)


def _flag(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


def _knob(name: str, opts: list[Option]):
    """One typed flag for the catalogue's options called ``name`` (several solvers may
    take an option of one name, with their own ranges: the spec checks each)."""
    first = opts[0]
    helps = "; ".join(dict.fromkeys(o.help for o in opts if o.help))
    if first.kind is bool:
        return click.option(f"{_flag(name)}/--no-{_flag(name)[2:]}", name.lower(), default=None,
                            help=f"{helps}. Default: the model's.")
    if first.choices:
        kind = click.Choice(sorted({c for o in opts for c in o.choices}))
    elif first.kind is int:
        kind = click.IntRange(int(min(o.low for o in opts)), int(max(o.high for o in opts)))
    else:
        high = max(o.high for o in opts)
        kind = click.FloatRange(min(o.low for o in opts), None if high == math.inf else high)
    return click.option(_flag(name), name.lower(), type=kind, default=None, help=helps + ".")


# flag parameter -> catalogue option name, for every option of every solver and grid
_KNOBS = {name.lower(): name for name in options_by_name()}


def solver_options(f):
    """--preset/--solver/--steps and one typed flag per catalogue option."""
    opts = [
        click.option("--preset", default=None, metavar="NAME",
                     help="A solver preset from configs/solvers.toml (edgediff sample "
                          "--list-presets); options below override it."),
        click.option("--solver", type=click.Choice(SOLVER_NAMES), default=None,
                     help="Step loop. Default: the preset's, else the model's default solver."),
        click.option("--steps", type=click.IntRange(1), default=None,
                     help="Number of steps (Heun-type solvers spend 2 NFE per step, 1 on the "
                          "last)."),
        click.option("--sigmas", default=None, metavar="S,S,…",
                     help="The exact σ's to step on, largest first (the final 0 is implied), "
                          "e.g. 80,24.4,5.84,0.9: a distilled model's own; the step count is "
                          "their number. Strictly decreasing, inside the model's σ range."),
        click.option("--timesteps", default=None, metavar="T,T,…",
                     help="Discrete-time models: the training timesteps to step on, largest "
                          "first, e.g. 999,759,499,259 (LCM at 4 steps), mapped through the "
                          "model's σ table."),
        *(_knob(name, opts) for name, opts in options_by_name().items()),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f




def conditioning_options(f):
    """--class, --guidance and --guide, for class-conditional models."""
    opts = [
        click.option("--class", "classes", default=None, metavar="ID|A,B,…|all",
                     help="Class-conditional models: the class of every sample, or a list (or "
                          "all) to draw --num samples of each, one grid row per class."),
        click.option("--guidance", type=click.FloatRange(0), default=None, metavar="W",
                     help="Guidance scale w: D = D_u + w·(D_c − D_u). Classifier-free against "
                          "the null label (one launch on a graph exported with --guidance), or "
                          "autoguidance with --guide. 1: the conditional model alone."),
        click.option("--guide", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     default=None,
                     help="Autoguidance (Karras et al. 2024): a second, weaker artifact of the "
                          "same shape, σ range and classes to guide against."),
        click.option("--guidance-interval", "guidance_interval", type=(float, float),
                     default=None, metavar="LO HI",
                     help="Guide only for LO < σ ≤ HI (Kynkäänniemi et al. 2024); elsewhere the "
                          "conditional model alone, one pass instead of two. HI may be inf. "
                          "EDM2-XXL on ImageNet-512 used 0.28 2.9."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def cond_option(f):
    """--cond NAME=FILE.npy, for models with tensor conditioning."""
    return click.option(
        "--cond", "cond", multiple=True, metavar="NAME=FILE.npy",
        help="Tensor conditioning (repeatable): a declared input, e.g. encoder_hidden_states, "
             "from a .npy file of its shape (every sample) or [--num, *shape] (one per "
             "sample). With --guidance, the unconditional pass uses the model's stored null "
             "value. edgediff info lists a model's inputs.")(f)


def ray_options(f):
    """--ray [ADDRESS] and --workers."""
    f = click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
                     help="With --ray: actors, one CPU (one GPU with --provider cuda or "
                          "tensorrt) each, each loading the artifact once.")(f)
    return click.option(
        "--ray", "ray_address", is_flag=False, flag_value="local", default=None,
        metavar="[ADDRESS]",
        help="Run on Ray (pip install \"edgediff[ray]\"): --ray alone starts a local "
             "cluster, --ray=auto joins the one this machine belongs to, --ray=HOST:PORT "
             "or ray://… another.")(f)


def backend_options(f):
    opts = [
        click.option("--provider", type=click.Choice(PROVIDERS), default="cpu",
                     show_default=True,
                     help="ONNX Runtime execution provider (.onnx files). tensorrt builds "
                          "an engine for batches 1…--batch on first use and caches it in "
                          "~/.cache/edgediff/ort-tensorrt ($EDGEDIFF_CACHE)."),
        click.option("--threads", type=click.IntRange(1), default=None,
                     help="CPU threads for ONNX Runtime or OpenVINO (default: its own "
                          "choice)."),
        click.option("--backend", "engine", type=click.Choice(ONNX_ENGINES),
                     default="onnxruntime", show_default=True,
                     help="What runs .onnx files: ONNX Runtime, or OpenVINO (pip install "
                          "\"edgediff[openvino]\"), which also runs bf16/f16 (--precision) "
                          "and Intel GPUs and NPUs (--device). Plans always run on TensorRT."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                     help="OpenVINO's inference precision [default: f32, which OpenVINO "
                          "itself would replace by bf16 on CPUs with bf16 units]. On a CPU, "
                          "bf16 needs AVX512_BF16 or AMX, f16 AVX512_FP16 or AMX-FP16; "
                          "either changes the samples, so compare them with f32's."),
        click.option("--device", default="CPU", show_default=True, metavar="CPU|GPU|NPU",
                     help="OpenVINO's device (GPU.1: the second GPU); it must be one "
                          "OpenVINO lists here."),
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


def resolve(preset: str | None, solver: str | None, steps: int | None,
            **knobs: Any) -> tuple[str | None, int | None, dict[str, Any]]:
    """(solver, steps, options) from a preset and explicit flags; flags win. ``options``
    may hold ``sigmas``/``timesteps`` (an exact grid), which ``edgediff.grids.exact_grid``
    takes out and checks once the artifact is open."""
    options: dict[str, Any] = {}
    asked_steps = steps
    if preset:
        from edgediff.configs import preset as load_preset

        p_solver, p_steps, options = load_preset(preset)
        if solver is not None and solver != p_solver:
            raise EdgediffError(f"preset {preset} is for {p_solver}; drop --solver {solver} or "
                                f"the preset")
        solver, steps = p_solver, steps or p_steps
    given = {k: knobs[k] for k in EXACT if knobs.get(k) is not None}
    if given and preset:  # the flags replace a preset's list, and so its step count
        options = {k: v for k, v in options.items() if k not in EXACT}
        steps = asked_steps
    options = {**options, **given,
               **{_KNOBS[k]: v for k, v in knobs.items() if k in _KNOBS and v is not None}}
    return solver, steps, options


def artifact_path(path: Path) -> Path:
    """ARTIFACT as given, or, for an NVlabs snapshot, its export: made once into the
    cache (a line on stderr while it is made), reused from then on."""
    from edgediff.export.cache import artifact_for

    return artifact_for(path, progress=lambda line: click.echo(line, err=True))


def load_artifact(path: Path, provider: str, threads: int | None, cuda_graph: bool,
                  metadata_file: Path | None = None, max_batch: int = 16,
                  decoder_options=None, **engine: Any):
    """The artifact opened as the --provider/--threads/--cuda-graph/--metadata flags
    and --batch (the TensorRT execution provider's largest batch) ask; ``engine``:
    the --backend/--precision/--device flags (``engine``, ``precision``, ``device``).
    A bundle folder opens as a ``Pipeline``, its decoder with ``decoder_options``."""
    from edgediff import runtime
    from edgediff.metadata import read_metadata_json

    return runtime.load(path, runtime.BackendOptions(
        provider=provider, threads=threads, cuda_graph=cuda_graph, max_batch=max_batch,
        metadata=read_metadata_json(metadata_file), **engine), decoder_options=decoder_options)


def pass_knobs(f):
    """Collect the solver knobs into one ``knobs`` dict argument."""
    @functools.wraps(f)
    def wrapper(**kwargs):
        knobs = {k: kwargs.pop(k) for k in (*_KNOBS, *EXACT) if k in kwargs}
        return f(knobs=knobs, **kwargs)
    return wrapper
