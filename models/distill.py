"""Consistency distillation (Song et al. 2023, Algorithm 2) of an EDM-preconditioned
teacher into a consistency model f_θ(x, σ) (``ConsistencyPrecond``: EDM's c_in, the
boundary condition f(x, σ_min) = x built into c_skip and c_out).

On the N-point EDM discretisation σ_max = s_0 > … > s_{N−1} = σ_min (ρ = 7), each
step draws n uniformly from 0 … N−2 and data x_0, and makes

    x_hi = x_0 + s_n·z,                          z ~ N(0, I)
    x̂_lo = Heun(teacher, x_hi, s_n → s_{n+1})    one PF-ODE step, two teacher calls
    L    = ‖f_θ(x_hi, s_n) − f_θ⁻(x̂_lo, s_{n+1})‖²  (mean over elements; λ = 1)

θ⁻ is the stop-gradient target, θ⁻ ← μ·θ⁻ + (1 − μ)·θ after each step; what is
saved is a slower EMA of θ (half-life in steps), as for the denoisers. The student
starts from the teacher's weights: with the same network and c_noise = ln(σ)/4,
f_θ then starts as the teacher's D with the boundary condition moved to σ_min.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_path
from edgediff.models.checkpoint import LoadedModel, build_denoiser, save_checkpoint
from edgediff.models.networks import one_hot_labels
from edgediff.sigmas import edm_sigmas

log = logging.getLogger(__name__)


@dataclass
class DistillSettings:
    steps: int = 5000
    batch: int = 64
    lr: float = 2e-4
    discretisation: int = 18       # N: the EDM grid the teacher steps on (CIFAR-10 CD: 18)
    target_decay: float = 0.95     # μ of the target network θ⁻ (CIFAR-10 CD: 0.95)
    ema_halflife: float = 500.0    # the saved weights' EMA, in optimizer steps
    rho: float = 7.0
    seed: int = 0
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EdgediffError(f"--{name.replace('_', '-')} takes a whole number ≥ 1, "
                                    f"got {value!r}")
        if not (isinstance(self.discretisation, int) and self.discretisation >= 2):
            raise EdgediffError(f"--discretisation takes N ≥ 2 grid points, got "
                                f"{self.discretisation!r}")
        if not (self.lr > 0 and 0 <= self.target_decay < 1 and self.ema_halflife >= 0
                and self.rho > 0):
            raise EdgediffError(f"distillation needs --lr > 0, 0 ≤ --target-decay < 1, "
                                f"--ema-halflife ≥ 0 and ρ > 0; got {self.lr!r}, "
                                f"{self.target_decay!r}, {self.ema_halflife!r}, {self.rho!r}")


def teacher_grid(settings: DistillSettings, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """s_0 = σ_max > … > s_{N−1} = σ_min: EDM's ρ-grid without its appended 0."""
    grid = edm_sigmas(settings.discretisation, sigma_min, sigma_max, settings.rho)[:-1]
    return torch.from_numpy(grid.astype(np.float32))


def heun_step(teacher, x: torch.Tensor, s_hi: torch.Tensor, s_lo: torch.Tensor,
              y: torch.Tensor | None = None) -> torch.Tensor:
    """One Heun step of the PF-ODE dx/dσ = (x − D(x; σ))/σ from s_hi to s_lo > 0 (per
    sample σ's, shape [B])."""
    shape = (-1, *[1] * (x.ndim - 1))
    hi, lo = s_hi.reshape(shape), s_lo.reshape(shape)
    d = (x - teacher(x, s_hi, y)) / hi
    x_euler = x + (lo - hi) * d
    d_lo = (x_euler - teacher(x_euler, s_lo, y)) / lo
    return x + (lo - hi) * (d + d_lo) / 2


def student_config(teacher: LoadedModel, provenance: dict) -> dict:
    """The teacher's config with the consistency parameterization (its boundary at
    the teacher's σ_min) and the distillation's provenance."""
    par = teacher.config["parameterization"]["name"]
    if par != "edm":
        raise EdgediffError(f"consistency distillation takes an EDM-preconditioned teacher "
                            f"(c_noise = ln(σ)/4, which the student keeps); this one is "
                            f"{par!r}")
    config = copy.deepcopy(teacher.config)
    config["parameterization"] = {"name": "consistency", "args": {}}
    old = config.get("provenance", {})
    config["provenance"] = {**({"dataset": old["dataset"]} if "dataset" in old else {}),
                            **provenance}
    return config


def distill(teacher: LoadedModel, data: np.ndarray, out: str | Path,
            settings: DistillSettings, *, labels: np.ndarray | None = None,
            resume: bool = False, provenance: dict | None = None,
            progress: Callable[[int, float], None] | None = None):
    """Distil ``teacher`` on ``data`` into a consistency model, checkpointing the EMA
    student to ``out`` (.safetensors + .json) and the resumable state to
    ``out.train.pt`` every ``checkpoint_every`` steps. Returns the EMA student."""
    num_classes = int(teacher.config.get("num_classes", 0))
    if num_classes and (labels is None or len(labels) != len(data)):
        raise EdgediffError("a class-conditional teacher distils on labelled data: pass one "
                            "label per example")
    torch.manual_seed(settings.seed)
    g = torch.Generator().manual_seed(settings.seed)
    config = student_config(teacher, {"distillation": asdict(settings), **(provenance or {})})
    student, _ = build_denoiser(config)
    student.model.load_state_dict(teacher.denoiser.model.state_dict())
    T = teacher.denoiser.eval().requires_grad_(False)
    target = copy.deepcopy(student).eval().requires_grad_(False)
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), lr=settings.lr)
    state_path, step = Path(f"{out}.train.pt"), 0
    if resume:
        if not state_path.is_file():
            raise EdgediffError(f"--resume asked, but there is no {state_path}")
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        for module, key in ((student, "model"), (target, "target"), (ema, "ema")):
            module.load_state_dict(st[key])
        opt.load_state_dict(st["opt"])
        g.set_state(st["generator"])
        step = int(st["step"])
        log.info("resumed %s at step %d", state_path, step)
    grid = teacher_grid(settings, float(config["sigma_min"]), float(config["sigma_max"]))
    x_all = torch.from_numpy(np.ascontiguousarray(data))
    y_all = torch.from_numpy(np.asarray(labels, np.int64)) if num_classes else None
    decay = 0.5 ** (1 / max(settings.ema_halflife, 1e-8))
    t0, running = time.perf_counter(), None
    while step < settings.steps:
        idx = torch.randint(len(x_all), (settings.batch,), generator=g)
        n = torch.randint(settings.discretisation - 1, (settings.batch,), generator=g)
        s_hi, s_lo = grid[n], grid[n + 1]
        x0 = x_all[idx]
        x_hi = x0 + torch.randn(x0.shape, generator=g) * s_hi.reshape(-1, *[1] * (x0.ndim - 1))
        y = one_hot_labels(y_all[idx], num_classes) if num_classes else None
        with torch.no_grad():
            x_lo = heun_step(T, x_hi, s_hi, s_lo, y)
            goal = target(x_lo, s_lo, y)
        loss = ((student(x_hi, s_hi, y) - goal) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pt, pe, p in zip(target.parameters(), ema.parameters(), student.parameters(),
                                 strict=True):
                pt.lerp_(p, 1 - settings.target_decay)
                pe.lerp_(p, 1 - decay)
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if progress:
            progress(step, running)
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            _checkpoint(out, ema, config, step, time.perf_counter() - t0, state_path,
                        {"model": student.state_dict(), "target": target.state_dict(),
                         "ema": ema.state_dict(), "opt": opt.state_dict(),
                         "generator": g.get_state(), "step": step})
            log.info("step %d: loss %.3g, checkpoint %s", step, running, out)
    return ema


def _checkpoint(out, ema, config: dict, step: int, seconds: float, state_path: Path,
                state: dict) -> None:
    provenance = {**config["provenance"], "steps": step, "train_seconds": round(seconds, 1)}
    save_checkpoint(out, ema, {**config, "provenance": provenance})
    with atomic_path(state_path) as tmp:
        torch.save(state, tmp)


def command_line(dataset: str, teacher: str, out: str | Path, s: DistillSettings) -> str:
    """The ``edgediff train`` command that makes this distilled checkpoint."""
    return (f"edgediff train {dataset} --distill consistency --teacher {teacher} -o "
            f"{Path(out).name} --steps {s.steps} --batch {s.batch} --lr {s.lr} "
            f"--discretisation {s.discretisation} --target-decay {s.target_decay} "
            f"--ema-halflife {s.ema_halflife} --seed {s.seed}")


def distill_dataset(dataset: str, teacher: str, out: str | Path, settings: DistillSettings,
                    *, threads: int | None = None, resume: bool = False,
                    progress: Callable[[int, float], None] | None = None):
    """``edgediff train DATASET --distill consistency``: read the teacher (a shipped
    name or a path, ``resolve_source``), check it was trained on DATASET's shape, and
    distil it on DATASET's training split with ``threads`` torch CPU threads."""
    from edgediff.datasets import load_dataset
    from edgediff.models.loader import resolve_source

    if not Path(out).resolve().parent.is_dir():
        raise EdgediffError(f"cannot write {out}: its folder does not exist")
    model, digest = resolve_source(teacher)
    data, labels = load_dataset(dataset, "train", seed=0, labels=True)
    if tuple(model.sample_shape) != tuple(data.shape[1:]):
        raise EdgediffError(f"the teacher {teacher} makes samples of shape "
                            f"{list(model.sample_shape)}, but {dataset} is "
                            f"{list(data.shape[1:])}")
    if threads:
        torch.set_num_threads(threads)
    provenance = {"dataset": dataset, "command": command_line(dataset, teacher, out, settings),
                  "teacher": {"source": teacher, "sha256": digest,
                              "command": model.config.get("provenance", {}).get("command")},
                  "torch": torch.__version__}
    return distill(model, data, out, settings, labels=labels, resume=resume,
                   provenance=provenance, progress=progress)
