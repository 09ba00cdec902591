"""``edgediff train``: train a denoiser on a local dataset, or distil one into a
consistency model."""

from __future__ import annotations

import logging
import sys

import click

DENOISER = {"steps": 8000, "batch": 128, "lr": 1e-3, "ema_halflife": 500.0}
DISTILL = {"steps": 5000, "batch": 64, "lr": 2e-4, "ema_halflife": 500.0}


def _default(name: str) -> str:
    return f"[default: {DENOISER[name]}; with --distill {DISTILL[name]}]"


@click.command("train")
@click.argument("dataset", type=click.Choice(["digits", "mixture2d"]))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint path without suffix: writes OUT.safetensors, OUT.json and the "
                   "resumable OUT.train.pt.")
@click.option("--parameterization", type=click.Choice(["edm", "vp", "ve"]), default="edm",
              show_default=True, help="Preconditioning and training distribution of σ.")
@click.option("--channels", type=click.IntRange(4, 1024), default=32, show_default=True,
              help="Base width (U-Net channels / MLP hidden units).")
@click.option("--steps", type=click.IntRange(1), default=None, help=_default("steps"))
@click.option("--batch", type=click.IntRange(1), default=None, help=_default("batch"))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help=_default("lr"))
@click.option("--ema-halflife", type=click.FloatRange(min=0), default=None,
              help="EMA half-life of the saved weights, in optimizer steps. "
                   + _default("ema_halflife"))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None,
              help="torch CPU threads (default: torch's choice).")
@click.option("--class-conditional", is_flag=True,
              help="Condition on the class (digits: the digit; mixture2d: the component), "
                   "for classifier-free guidance.")
@click.option("--label-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.2,
              show_default=True,
              help="With --class-conditional: the share of training labels replaced by "
                   "'none', which teaches the unconditional model guidance needs.")
@click.option("--distill", type=click.Choice(["consistency"]), default=None,
              help="Distil --teacher into a consistency model (Song et al. 2023, Algorithm 2: "
                   "Heun teacher steps on EDM's σ grid), sampled by the cm solver in 1–4 "
                   "steps. The student starts from the teacher's weights.")
@click.option("--teacher", default="bundled", show_default=True,
              help="With --distill: the EDM-preconditioned teacher, a checkpoint path or a "
                   "shipped name (bundled, bundled-cond).")
@click.option("--discretisation", type=click.IntRange(2), default=18, show_default=True,
              help="With --distill: N, the points of the EDM grid (σ_min…σ_max, ρ = 7) the "
                   "teacher takes one Heun step between.")
@click.option("--target-decay", type=click.FloatRange(0, 1, max_open=True), default=0.95,
              show_default=True, help="With --distill: μ, the EMA rate of the target network.")
@click.option("--resume", is_flag=True, help="Continue from OUT.train.pt.")
def command(dataset, out, parameterization, channels, steps, batch, lr, ema_halflife, seed,
            threads, class_conditional, label_dropout, distill, teacher, discretisation,
            target_decay, resume):
    """Train a denoiser on DATASET and write an edgediff checkpoint, or, with
    --distill consistency, distil a teacher into a few-step consistency model.

    \b
    Examples:
      edgediff train digits -o digits-edm --steps 8000 --seed 0      # the bundled model
      edgediff train digits -o digits-cond --class-conditional --label-dropout 0.2
      edgediff train digits --distill consistency -o digits-cd       # the bundled-cd model
      edgediff export digits-cd.json -o digits-cd.onnx
      edgediff sample digits-cd.onnx --preset cd-digits-2            # 2 calls per sample
    """
    logging.basicConfig(level=logging.WARNING)
    given = {"steps": steps, "batch": batch, "lr": lr, "ema_halflife": ema_halflife}
    chosen = {k: v if v is not None else (DISTILL if distill else DENOISER)[k]
              for k, v in given.items()}
    if distill:
        from edgediff.models.distill import DistillSettings, distill_dataset

        settings = DistillSettings(discretisation=discretisation, target_decay=target_decay,
                                   seed=seed, checkpoint_every=min(500, chosen["steps"]),
                                   **chosen)
        label = f"distilling {teacher} on {dataset}"
        run = lambda progress: distill_dataset(dataset, teacher, out, settings,  # noqa: E731
                                               threads=threads, resume=resume,
                                               progress=progress)
    else:
        from edgediff.models.training import TrainRecipe, train_dataset

        recipe = TrainRecipe(dataset, parameterization=parameterization, channels=channels,
                             seed=seed, class_conditional=class_conditional,
                             label_dropout=label_dropout, **chosen)
        label = f"training {dataset}/{parameterization}"
        run = lambda progress: train_dataset(recipe, out, threads=threads,  # noqa: E731
                                             resume=resume, progress=progress)

    with click.progressbar(length=chosen["steps"], label=label,
                           item_show_func=lambda loss: f"loss {loss:.4g}" if loss else "",
                           show_pos=True, file=sys.stderr) as bar:
        last = [0]

        def progress(step, loss):
            bar.update(step - last[0], loss)
            last[0] = step

        run(progress)
    click.echo(f"wrote {out}.safetensors and {out}.json")
