"""Denoiser training: the EDM loss (Karras et al. 2022 eq 2 and 8) with each parameterization's
training distribution of σ, EMA weights, and resumable state.

    L = E_{σ, x0, n} [ λ(σ)·‖D(x0 + n; σ) − x0‖² ],   n ~ N(0, σ²I)

| parameterization | σ ~                                  | λ(σ)                     |
|------------------|--------------------------------------|--------------------------|
| edm              | ln σ ~ N(P_mean, P_std²)             | (σ² + σ_d²)/(σ·σ_d)²     |
| vp               | σ = σ_VP(t), t ~ U(ε_t, 1)           | 1/σ²                     |
| ve               | σ log-uniform on [σ_min, σ_max]      | 1/σ²                     |

The datasets (``edgediff.datasets``) are made or shipped locally.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgediff.errors import EdgediffError
from edgediff.fileio import atomic_path
from edgediff.models.checkpoint import build_denoiser, make_config, save_checkpoint
from edgediff.models.networks import one_hot_labels
from edgediff.models.precond import Preconditioner

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    steps: int = 20_000
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 500
    ema_halflife: float = 500.0    # in optimizer steps
    P_mean: float = -1.2
    P_std: float = 1.2
    eps_t: float = 1e-5
    seed: int = 0
    checkpoint_every: int = 1000
    label_dropout: float = 0.0  # class-conditional nets: share of labels dropped to "none"
    extra: dict = field(default_factory=dict)


def sample_sigma(parameterization: str, config: dict, n: int, s: TrainSettings,
                 g: torch.Generator) -> torch.Tensor:
    """σ from the parameterization's training distribution (table above)."""
    if parameterization == "edm":
        return (torch.randn(n, generator=g) * s.P_std + s.P_mean).exp()
    if parameterization == "vp":
        sch = config["schedule"]
        t = s.eps_t + (1 - s.eps_t) * torch.rand(n, generator=g)
        return torch.sqrt(torch.expm1(0.5 * sch["beta_d"] * t**2 + sch["beta_min"] * t))
    if parameterization == "ve":
        lo, hi = math.log(config["sigma_min"]), math.log(config["sigma_max"])
        return torch.exp(lo + (hi - lo) * torch.rand(n, generator=g))
    raise EdgediffError(f"training supports the edm, vp and ve parameterizations, not "
                        f"{parameterization!r}")


def loss_weight(parameterization: str, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    if parameterization == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    return 1 / sigma**2


def train(config: dict, data: np.ndarray, out: str | Path, settings: TrainSettings,
          resume: bool = False, progress: Callable[[int, float], None] | None = None,
          labels: np.ndarray | None = None) -> Preconditioner:
    """Train, checkpointing the EMA denoiser to ``out`` (.safetensors + .json) and the
    resumable state to ``out.train.pt`` every ``checkpoint_every`` steps. A
    class-conditional config (``num_classes``) needs ``labels``; each is dropped to
    the null label with probability ``settings.label_dropout``."""
    num_classes = int(config.get("num_classes", 0))
    if num_classes and (labels is None or len(labels) != len(data)):
        raise EdgediffError("a class-conditional model trains on labelled data: pass one "
                            "label per example")
    torch.manual_seed(settings.seed)
    g = torch.Generator().manual_seed(settings.seed)
    D, _ = build_denoiser(config)
    ema = copy.deepcopy(D).eval().requires_grad_(False)
    opt = torch.optim.Adam(D.parameters(), lr=settings.lr, betas=(0.9, 0.999), eps=1e-8)
    par, sigma_data = config["parameterization"]["name"], config.get("sigma_data", 0.5)
    state_path = Path(f"{out}.train.pt")
    step = 0
    if resume:
        if not state_path.is_file():
            raise EdgediffError(f"--resume asked, but there is no {state_path}")
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        D.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        g.set_state(st["generator"])
        step = int(st["step"])
        log.info("resumed %s at step %d", state_path, step)
    x_all = torch.from_numpy(np.ascontiguousarray(data))
    y_all = torch.from_numpy(np.asarray(labels, np.int64)) if num_classes else None
    decay = 0.5 ** (1 / max(settings.ema_halflife, 1e-8))
    t0, running = time.perf_counter(), None
    while step < settings.steps:
        idx = torch.randint(len(x_all), (settings.batch,), generator=g)
        x0 = x_all[idx]
        sigma = sample_sigma(par, config, settings.batch, settings, g)
        n = torch.randn(x0.shape, generator=g) * sigma.reshape(-1, *[1] * (x0.ndim - 1))
        w = loss_weight(par, sigma, sigma_data)
        y = None
        if num_classes:
            drop = torch.rand(settings.batch, generator=g) < settings.label_dropout
            y = one_hot_labels(y_all[idx], num_classes, drop)
        per_sample = ((D(x0 + n, sigma, y) - x0) ** 2).flatten(1).mean(1)
        loss = (w * per_sample).mean()
        for group in opt.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / max(settings.warmup, 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), D.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if progress:
            progress(step, running)
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            provenance = {**config.get("provenance", {}), "steps": step,
                          "settings": asdict(settings),
                          "train_seconds": round(time.perf_counter() - t0, 1)}
            save_checkpoint(out, ema, {**config, "provenance": provenance})
            with atomic_path(state_path) as tmp:
                torch.save({"model": D.state_dict(), "ema": ema.state_dict(),
                            "opt": opt.state_dict(), "generator": g.get_state(), "step": step},
                           tmp)
            log.info("step %d: loss %.4f, checkpoint %s", step, running, out)
    return ema


SCHEDULE_FOR = {"edm": "EDMSchedule", "vp": "VPSchedule", "ve": "VESchedule"}


@dataclass(frozen=True)
class TrainRecipe:
    """``edgediff train``'s choices: a shipped dataset, the shipped architecture for it
    (a small U-Net on digits, an MLP on the 2-D mixture) ``channels`` wide, and the
    run. Checked once, here; ``command_line`` is what the checkpoint's provenance
    records to reproduce it."""

    dataset: str
    parameterization: str = "edm"
    channels: int = 32
    steps: int = 8000
    batch: int = 128
    lr: float = 1e-3
    ema_halflife: float = 500.0
    seed: int = 0
    class_conditional: bool = False
    label_dropout: float = 0.2

    def __post_init__(self) -> None:
        from edgediff.datasets import DATASETS

        for name, value, choices in (("dataset", self.dataset, DATASETS),
                                     ("parameterization", self.parameterization, SCHEDULE_FOR)):
            if value not in choices:
                raise EdgediffError(f"cannot train on {name} {value!r}; choose one of "
                                    f"{', '.join(choices)}")
        for name in ("channels", "steps", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EdgediffError(f"--{name} takes a whole number ≥ 1, got {value!r}")
        if not (self.lr > 0 and self.ema_halflife >= 0 and 0 <= self.label_dropout < 1):
            raise EdgediffError(f"training needs --lr > 0, --ema-halflife ≥ 0 and 0 ≤ "
                                f"--label-dropout < 1; got {self.lr!r}, {self.ema_halflife!r} "
                                f"and {self.label_dropout!r}")

    def command_line(self, out: str | Path) -> str:
        """The ``edgediff train`` command that makes this checkpoint."""
        return (f"edgediff train {self.dataset} -o {Path(out).name} --parameterization "
                f"{self.parameterization} --channels {self.channels} --steps {self.steps} "
                f"--batch {self.batch} --lr {self.lr} --ema-halflife {self.ema_halflife} "
                f"--seed {self.seed}"
                + (f" --class-conditional --label-dropout {self.label_dropout}"
                   if self.class_conditional else ""))

    def architecture(self, num_classes: int) -> tuple[str, dict]:
        """(network name, its arguments) for the dataset."""
        if self.dataset == "digits":
            return "unet", {"img_resolution": 8, "in_channels": 1, "out_channels": 1,
                            "model_channels": self.channels, "channel_mult": [1, 2],
                            "num_blocks": 2, "attn_resolutions": [4], "label_dim": num_classes}
        args = {"dim": 2, "hidden": self.channels * 4, "depth": 4}
        if self.class_conditional:
            args["label_dim"] = num_classes
        return "mlp", args


def train_dataset(recipe: TrainRecipe, out: str | Path, *, threads: int | None = None,
                  resume: bool = False,
                  progress: Callable[[int, float], None] | None = None) -> None:
    """``edgediff train``: the recipe's architecture and config (with the command that
    reproduces it), then ``train`` on the dataset with ``threads`` torch CPU threads."""
    from edgediff import schedules
    from edgediff.datasets import NUM_CLASSES, load_dataset

    if not Path(out).resolve().parent.is_dir():
        raise EdgediffError(f"cannot write {out}: its folder does not exist")
    if threads:
        torch.set_num_threads(threads)
    data, labels = load_dataset(recipe.dataset, "train", seed=0, labels=True)
    num_classes = NUM_CLASSES[recipe.dataset] if recipe.class_conditional else 0
    schedule = getattr(schedules, SCHEDULE_FOR[recipe.parameterization])()
    arch, args = recipe.architecture(num_classes)
    config = make_config(arch, args, recipe.parameterization, schedule, data.shape[1:],
                         provenance={"dataset": recipe.dataset,
                                     "command": recipe.command_line(out),
                                     "torch": torch.__version__})
    if num_classes:
        config["num_classes"] = num_classes
    settings = TrainSettings(steps=recipe.steps, batch=recipe.batch, lr=recipe.lr,
                             ema_halflife=recipe.ema_halflife, seed=recipe.seed,
                             checkpoint_every=max(1, min(1000, recipe.steps)),
                             label_dropout=recipe.label_dropout if num_classes else 0.0)
    train(config, data, out, settings, resume=resume, progress=progress,
          labels=labels if num_classes else None)
