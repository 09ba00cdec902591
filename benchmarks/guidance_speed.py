"""Classifier-free guidance, two forms side by side: (a) two passes of one
artifact per NFE (labels, then the null label; combined in float64 on the host)
against (b) one launch of a graph exported with --guidance (the batch doubled
inside). Same x_T, labels, solver and scale; ms per NFE per sample, median and
p90 over warm repetitions, and what (b) buys over (a).

Models: the class-conditional digits model (if shipped) or a random conditional
U-Net of the same size, and a CIFAR-sized class-conditional diffusers
UNet2DModel (channels 128, 256, 256, 256, two layers per block, attention at
16×16, 10 classes; random weights — speed only).

    python benchmarks/guidance_speed.py [--threads 2] [--reps 10] [--no-cifar] [--quick]

``--quick`` is a smoke run of seconds: 3 steps, batches 1 and 2, 3 repetitions, and
the CIFAR-shaped U-Net shrunk to 8×8 with 32 channels per level.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from edgediff import runtime
from edgediff.catalogue import nfe
from edgediff.export.onnx import ExportOptions, export_onnx

SOLVER, W = "heun", 2.0
CIFAR = {"sample_size": 32, "block_out_channels": (128, 256, 256, 256), "layers_per_block": 2}
TINY = {"sample_size": 8, "block_out_channels": (32, 32, 32, 32), "layers_per_block": 1,
        "norm_num_groups": 8}
QUICK = {"steps": 3, "reps": 3, "batches": [1, 2], "tiny": True}


def digits_model():
    """(name, model, source digest): "unknown" for random weights, which come from no file."""
    from edgediff.models.bundled import bundled_path
    from edgediff.models.loader import resolve_source

    cond = Path(bundled_path()).with_name("digits-edm-cond.safetensors")
    if cond.is_file():
        return "digits (conditional, shipped)", *resolve_source("bundled-cond")
    from edgediff.models.checkpoint import LoadedModel, build_denoiser, make_config
    from edgediff.schedules import EDMSchedule

    args = {"img_resolution": 8, "in_channels": 1, "out_channels": 1, "model_channels": 32,
            "channel_mult": [1, 2], "num_blocks": 2, "attn_resolutions": [4], "label_dim": 10}
    config = make_config("unet", args, "edm", EDMSchedule(), (1, 8, 8))
    config["num_classes"] = 10
    D, schedule = build_denoiser(config)
    return ("digits-sized U-Net (random, conditional)", LoadedModel(D.eval(), config, schedule),
            "unknown")


def cifar_model(folder: Path, size: dict):
    from diffusers import DDPMScheduler, UNet2DModel

    from edgediff.models.loader import resolve_source

    torch.manual_seed(0)
    unet = UNet2DModel(in_channels=3, out_channels=3, num_class_embeds=11, **size,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                         "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D",
                                       "UpBlock2D"))
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    sized = "CIFAR-sized" if size == CIFAR else f"tiny {size['sample_size']}×{size['sample_size']}"
    return f"{sized} UNet2DModel ({params:.1f} M parameters)", *resolve_source(str(folder))


def interleaved(fns: dict, reps: int) -> dict[str, np.ndarray]:
    """Each function once per round, rounds repeated: drift hits both alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: np.asarray(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--no-cifar", action="store_true")
    p.add_argument("--tiny", action="store_true", help="the U-Net at 8×8, 32 channels")
    p.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    if p.parse_known_args()[0].quick:
        p.set_defaults(**QUICK)  # flags given explicitly still win
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = [digits_model()]
        if not a.no_cifar:
            models.append(cifar_model(tmp / "cifar", TINY if a.tiny else CIFAR))
        calls = nfe(SOLVER, a.steps)
        print(f"{SOLVER}, {a.steps} steps = {calls} NFE, w = {W}, {a.threads} threads, "
              f"median [p90] of {a.reps} warm runs")
        print(f"{'model':<44}{'batch':>6}{'(a) ms/NFE/sample':>20}{'(b) ms/NFE/sample':>20}"
              f"{'(a)/(b)':>9}")
        for name, model, digest in models:
            paths = {}
            for form, guided in (("a", False), ("b", True)):
                paths[form] = tmp / f"{form}.onnx"
                export_onnx(model, paths[form], source_sha256=digest, options=ExportOptions(
                    validate=False, guidance=guided, force=True))
            for batch in a.batches:
                D = {f: runtime.load(paths[f], threads=a.threads, max_batch=batch)
                     for f in paths}
                labels = np.arange(batch) % D["a"].info.num_classes
                times = interleaved({f: partial(
                    runtime.sample, D[f], batch, solver=SOLVER, steps=a.steps,
                    condition=runtime.Condition(labels, W),
                    run=runtime.RunOptions(batch=batch)) for f in D}, a.reps)
                per = {f: (np.median(t), np.percentile(t, 90))
                       for f, t in ((f, t / (calls * batch) * 1e3) for f, t in times.items())}
                print(f"{name:<44}{batch:>6}{per['a'][0]:>12.3f} [{per['a'][1]:.3f}]"
                      f"{per['b'][0]:>12.3f} [{per['b'][1]:.3f}]"
                      f"{per['a'][0] / per['b'][0]:>8.2f}×")


if __name__ == "__main__":
    main()
