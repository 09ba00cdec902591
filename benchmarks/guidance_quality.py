"""Classifier-free guidance on a class-conditional digits model: per guidance
scale w, the share of samples the shipped digits classifier (edgediff/features.py)
puts in the requested class, and the Fréchet distance (shipped feature space)
to the held-out digits; beside them the unconditional FD (null label), measured
exactly as benchmarks/digits_quality.py measures the unconditional model.

Samples: 35-NFE Heun (EDM ρ-grid, 18 steps), as many as held-out digits (360),
requested classes 0…9 in turn, the same x_T at every w.

    python benchmarks/guidance_quality.py [--checkpoint STEM] [--scales 0,1,2,3,4] [--quick]

``--quick``: 100 samples, 4 steps, w = 0 and 2; a smoke run of seconds, not the figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from edgediff.catalogue import nfe
from edgediff.datasets import load_dataset
from edgediff.lab.features import DigitsFeatures
from edgediff.lab.images import grid, to_uint8, write_png
from edgediff.lab.metrics import frechet_distance
from edgediff.models.bundled import bundled_path
from edgediff.models.readers.native import load_checkpoint
from edgediff.samplers import heun
from edgediff.samplers.guidance import guided
from edgediff.samplers.reference import labelled
from edgediff.schedules import EDMSchedule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None,
                    help="checkpoint stem (default: the shipped digits-edm-cond)")
    ap.add_argument("--scales", default="0,1,2,3,4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/guidance-quality")
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--num", type=int, default=None, help="samples (default: as many as held-out)")
    ap.add_argument("--quick", action="store_true", help="100 samples, 4 steps, w = 0, 2")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(num=100, steps=4, scales="0,2")
    args = ap.parse_args()
    torch.set_num_threads(2)
    stem = args.checkpoint or bundled_path().with_name("digits-edm-cond")
    model = load_checkpoint(stem)
    k = int(model.config["num_classes"])
    null = int(model.config.get("null_label", k))
    feats, test = DigitsFeatures(), load_dataset("digits", "test")
    f_test = feats(test)
    n = args.num or len(test)
    labels = np.arange(n) % k
    sigmas = EDMSchedule().sigmas(args.steps)
    x_T = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(args.seed),
                      dtype=torch.float64) * sigmas[0]
    cond, uncond = labelled(model.denoiser, labels), labelled(model.denoiser, np.full(n, null))
    print(f"{stem}: {n} samples per row, classes 0…{k - 1} in turn, "
          f"{nfe('heun', args.steps)}-NFE Heun")
    print(f"{'guidance w':<26}{'label accuracy':>16}{'FD vs held-out':>16}")
    x = heun(uncond, x_T, sigmas).float().numpy()
    print(f"{'unconditional (null)':<26}{'-':>16}{frechet_distance(feats(x), f_test):>16.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for w in (float(v) for v in args.scales.split(",")):
        x = heun(guided(cond, uncond, w), x_T, sigmas).float().numpy()
        acc = float(np.mean(feats.classify(x) == labels))
        print(f"{w:<26g}{acc:>16.3f}{frechet_distance(feats(x), f_test):>16.3f}")
        rows = np.concatenate([x[labels == c][:10] for c in range(k)])  # one row per class
        write_png(out / f"w{w:g}.png", grid(to_uint8(rows), columns=10), scale=4)
    print(f"wrote class grids to {out}")


if __name__ == "__main__":
    main()
