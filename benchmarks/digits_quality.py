"""Quality of a digits model: Fréchet distance (shipped feature space) of 35-NFE
Heun samples (EDM ρ-grid, 18 steps) against held-out digits, beside the same
distance between real sets of the same sizes. Writes a PNG grid of samples.

    python benchmarks/digits_quality.py [--checkpoint STEM] [--out DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from edgediff.datasets import load_dataset
from edgediff.lab.features import DigitsFeatures
from edgediff.lab.images import grid, to_uint8, write_png
from edgediff.lab.metrics import frechet_distance
from edgediff.models.bundled import bundled_path
from edgediff.models.checkpoint import load_checkpoint
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
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_checkpoint(args.checkpoint or bundled_path())
    feats = DigitsFeatures()
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    everything = np.concatenate([train, test])
    rng = np.random.default_rng(args.seed)
    half_a, half_b = np.array_split(everything[rng.permutation(len(everything))], 2)

    t0 = time.perf_counter()
    gen = sample(model.denoiser, len(half_a), args.seed)
    seconds = time.perf_counter() - t0
    f_test, f_b = feats(test), feats(half_b)
    rows = [
        ("35-NFE Heun samples vs held-out", len(test), frechet_distance(feats(gen[:len(test)]),
                                                                        f_test)),
        ("train digits vs held-out", len(test),
         frechet_distance(feats(train[rng.permutation(len(train))[:len(test)]]), f_test)),
        ("35-NFE Heun samples vs real half B", len(half_a), frechet_distance(feats(gen), f_b)),
        ("real half A vs real half B", len(half_a), frechet_distance(feats(half_a), f_b)),
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
