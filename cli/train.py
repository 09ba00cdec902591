"""``edgediff train``: train a denoiser on a local dataset."""

from __future__ import annotations

import logging
import sys

import click


@click.command("train")
@click.argument("dataset", type=click.Choice(["digits", "mixture2d"]))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint path without suffix: writes OUT.safetensors, OUT.json and the "
                   "resumable OUT.train.pt.")
@click.option("--parameterization", type=click.Choice(["edm", "vp", "ve"]), default="edm",
              show_default=True, help="Preconditioning and training distribution of σ.")
@click.option("--channels", type=click.IntRange(4, 1024), default=32, show_default=True,
              help="Base width (U-Net channels / MLP hidden units).")
@click.option("--steps", type=click.IntRange(1), default=8000, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True)
@click.option("--ema-halflife", type=click.FloatRange(min=0), default=500.0, show_default=True,
              help="EMA half-life in optimizer steps.")
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
@click.option("--resume", is_flag=True, help="Continue from OUT.train.pt.")
def command(dataset, out, parameterization, channels, steps, batch, lr, ema_halflife, seed,
            threads, class_conditional, label_dropout, resume):
    """Train a denoiser on DATASET and write an edgediff checkpoint.

    \b
    \b
    Examples:
      edgediff train digits -o digits-edm --steps 8000 --seed 0      # the bundled model
      edgediff train digits -o digits-cond --class-conditional --label-dropout 0.2
    """
    from edgediff.models.training import TrainRecipe, train_dataset

    logging.basicConfig(level=logging.WARNING)
    recipe = TrainRecipe(dataset, parameterization=parameterization, channels=channels,
                         steps=steps, batch=batch, lr=lr, ema_halflife=ema_halflife, seed=seed,
                         class_conditional=class_conditional, label_dropout=label_dropout)

    with click.progressbar(length=steps, label=f"training {dataset}/{parameterization}",
                           item_show_func=lambda loss: f"loss {loss:.4f}" if loss else "",
                           show_pos=True, file=sys.stderr) as bar:
        last = [0]

        def progress(step, loss):
            bar.update(step - last[0], loss)
            last[0] = step

        train_dataset(recipe, out, threads=threads, resume=resume, progress=progress)
    click.echo(f"wrote {out}.safetensors and {out}.json")
