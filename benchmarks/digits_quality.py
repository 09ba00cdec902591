"""Quality of a digits model: Fréchet distance (shipped feature space) of 35-NFE
Heun samples (EDM ρ-grid, 18 steps) against held-out digits, beside the same
distance between real sets of the same sizes. Writes a PNG grid of samples.

    python benchmarks/digits_quality.py [--checkpoint STEM] [--out DIR] [--seed 0] [--quick]

``--quick`` samples 100 images at 4 steps: a smoke run of seconds, not the figures.
"""

from __future__ import annotations

import argparse
import time
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
from edgediff.samplers import at_precision, heun
from edgediff.schedules import EDMSchedule


def sample(denoiser, n: int, seed: int, steps: int = 18) -> np.ndarray:
    sigmas = EDMSchedule().sigmas(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64) * sigmas[0]
    return heun(at_precision(denoiser), x, sigmas).float().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint stem (default: bundled)")
    ap.add_argument("--out", default="out/digits-quality")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--num", type=int, default=None, help="samples (default: half the digits)")
    ap.add_argument("--quick", action="store_true", help="100 samples, 4 steps")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(num=100, steps=4)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_checkpoint(args.checkpoint or bundled_path())
    feats = DigitsFeatures()
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    everything = np.concatenate([train, test])
    rng = np.random.default_rng(args.seed)
    half_a, half_b = np.array_split(everything[rng.permutation(len(everything))], 2)

    n = min(args.num or len(half_a), len(half_a))
    m = min(n, len(test))  # sets compared with the held-out digits
    t0 = time.perf_counter()
    gen = sample(model.denoiser, n, args.seed, args.steps)
    seconds = time.perf_counter() - t0
    f_test, f_b = feats(test), feats(half_b)
    heun_name = f"{nfe('heun', args.steps)}-NFE Heun samples"
    rows = [
        (f"{heun_name} vs held-out", m, frechet_distance(feats(gen[:m]), f_test)),
        ("train digits vs held-out", m,
         frechet_distance(feats(train[rng.permutation(len(train))[:m]]), f_test)),
        (f"{heun_name} vs real half B", n, frechet_distance(feats(gen), f_b)),
        ("real half A vs real half B", n, frechet_distance(feats(half_a[:n]), f_b)),
    ]
    print(f"{'comparison':<38}{'n':>6}{'FD':>10}")
    for name, n, fd in rows:
        print(f"{name:<38}{n:>6}{fd:>10.3f}")
    acc = np.mean(np.bincount(feats.classify(gen), minlength=10) > 0)
    print(f"sampling {len(gen)} images: {seconds:.1f} s; classes present: {acc * 10:.0f}/10")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_png(out / "samples.png", grid(to_uint8(gen[:100]), columns=10), scale=4)
    write_png(out / "real.png", grid(to_uint8(test[:100]), columns=10), scale=4)
    print(f"wrote {out / 'samples.png'} and {out / 'real.png'}")


if __name__ == "__main__":
    main()
