"""``edgediff train``: train a denoiser on a local dataset."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from edgediff.errors import EdgediffError, missing_extra

SCHEDULE_FOR = {"edm": "EDMSchedule", "vp": "VPSchedule", "ve": "VESchedule"}


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
    try:
        import torch

        from edgediff import schedules
        from edgediff.models.checkpoint import make_config
        from edgediff.models.training import NUM_CLASSES, TrainSettings, load_dataset, train
    except ImportError:
        raise missing_extra("torch", "torch") from None
    if not Path(out).resolve().parent.is_dir():
        raise EdgediffError(f"cannot write {out}: its folder does not exist")
    if threads:
        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    data, labels = load_dataset(dataset, "train", seed=0, labels=True)
    num_classes = NUM_CLASSES[dataset] if class_conditional else 0
    schedule = getattr(schedules, SCHEDULE_FOR[parameterization])()
    if dataset == "digits":
        arch, args = "unet", {"img_resolution": 8, "in_channels": 1, "out_channels": 1,
                              "model_channels": channels, "channel_mult": [1, 2],
                              "num_blocks": 2, "attn_resolutions": [4], "label_dim": num_classes}
    else:
        arch, args = "mlp", {"dim": 2, "hidden": channels * 4, "depth": 4}
        if class_conditional:
            args["label_dim"] = num_classes
    command_line = (f"edgediff train {dataset} -o {Path(out).name} --parameterization "
                    f"{parameterization} --channels {channels} --steps {steps} --batch {batch} "
                    f"--lr {lr} --ema-halflife {ema_halflife} --seed {seed}"
                    + (f" --class-conditional --label-dropout {label_dropout}"
                       if class_conditional else ""))
    config = make_config(arch, args, parameterization, schedule, data.shape[1:],
                         provenance={"dataset": dataset, "command": command_line,
                                     "torch": torch.__version__})
    if num_classes:
        config["num_classes"] = num_classes
    settings = TrainSettings(steps=steps, batch=batch, lr=lr, ema_halflife=ema_halflife,
                             seed=seed, checkpoint_every=max(1, min(1000, steps)),
                             label_dropout=label_dropout if num_classes else 0.0)
    with click.progressbar(length=steps, label=f"training {dataset}/{parameterization}",
                           item_show_func=lambda loss: f"loss {loss:.4f}" if loss else "",
                           show_pos=True, file=sys.stderr) as bar:
        last = [0]

        def progress(step, loss):
            bar.update(step - last[0], loss)
            last[0] = step

        train(config, data, out, settings, resume=resume, progress=progress,
              labels=labels if num_classes else None)
    click.echo(f"wrote {out}.safetensors and {out}.json")
