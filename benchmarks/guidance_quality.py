"""Classifier-free guidance on a class-conditional digits model: per guidance
scale w, the share of samples the shipped digits classifier (edgediff/features.py)
puts in the requested class, and the Fréchet distance (shipped feature space)
to the held-out digits; beside them the unconditional FD (null label), measured
exactly as benchmarks/digits_quality.py measures the unconditional model.

Then guidance in a limited σ interval (Kynkäänniemi et al. 2024) at one scale:
guided calls only for LO < σ ≤ HI, the conditional model alone elsewhere; per
interval the same two figures and the network calls per sample it cost.

Samples: 35-NFE Heun (EDM ρ-grid, 18 steps), as many as held-out digits (360),
requested classes 0…9 in turn, the same x_T at every w.

    python benchmarks/guidance_quality.py [--checkpoint STEM] [--scales 0,1,2,3,4]
        [--interval-scale 3] [--intervals 0:inf,0.28:2.9,...] [--quick]

``--quick``: 100 samples, 4 steps, w = 0 and 2, two intervals; a smoke run of
seconds, not the figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from edgediff.catalogue import nfe
from edgediff.conditioning import check_interval
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
    ap.add_argument("--interval-scale", type=float, default=3.0,
                    help="the guidance scale of the interval study")
    ap.add_argument("--intervals", default="0:inf,0.28:2.9,0.1:1,0.3:inf,0.5:5,1:inf,0:1",
                    help="comma-separated LO:HI σ intervals (0:inf is full guidance)")
    ap.add_argument("--quick", action="store_true", help="100 samples, 4 steps, w = 0, 2")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(num=100, steps=4, scales="0,2", intervals="0:inf,0.28:2.9")
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
    interval_study(args, cond, uncond, x_T, sigmas, labels, feats, f_test)


class Counted:
    """A reference denoiser that counts its calls (each one a pass over the batch)."""

    def __init__(self, D):
        self.D, self.calls = D, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.D(x, sigma)


def interval_study(args, cond, uncond, x_T, sigmas, labels, feats, f_test) -> None:
    w = args.interval_scale
    print(f"\nguidance w = {w:g} in a σ interval LO < σ ≤ HI (conditional alone outside)")
    print(f"{'interval':<26}{'label accuracy':>16}{'FD vs held-out':>16}{'calls/sample':>14}")
    for text in args.intervals.split(","):
        lo, hi = check_interval([float(v) for v in text.split(":")])
        c, u = Counted(cond), Counted(uncond)
        x = heun(guided(c, u, w, (lo, hi)), x_T, sigmas).float().numpy()
        # the reference evaluates both branches on every call; the runtime's Interval
        # skips the unconditional pass wherever the call's σ lies outside
        steps = heun_sigmas(sigmas)
        calls = sum(2 if lo < s <= hi else 1 for s in steps)
        assert c.calls == len(steps)
        acc = float(np.mean(feats.classify(x) == labels))
        print(f"{f'({lo:g}, {hi:g}]':<26}{acc:>16.3f}{frechet_distance(feats(x), f_test):>16.3f}"
              f"{calls:>14d}")


def heun_sigmas(sigmas) -> list[float]:
    """The σ of every network call of Heun's method on ``sigmas`` (EDM Algorithm 1,
    no churn): each step at σ_i, and its correction at σ_{i+1} unless that is 0;
    as float32, the value the guided call compares."""
    s = [float(v) for v in sigmas]
    calls = []
    for i in range(len(s) - 1):
        calls.append(s[i])
        if s[i + 1] > 0:
            calls.append(s[i + 1])
    return [float(np.float32(v)) for v in calls]


if __name__ == "__main__":
    main()
