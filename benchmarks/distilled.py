"""Few-step distillation on the digits: the consistency-distilled model (bundled-cd,
``edgediff train digits --distill consistency``) at 1, 2 and 4 steps beside its
teacher (the bundled EDM model) at 5–35 NFE — Fréchet distance to the held-out
digits (shipped feature space) against wall time per sample, in one process.

The distilled model's intermediate σ's are chosen here, by FD on calibration
seed 1000 (a 1-D search for the second step, then greedy for each further one,
as Song et al. 2023 chose theirs), and every figure of the table is measured on
seed 0, disjoint from the calibration draws. The presets ``cd-digits-2`` and
``cd-digits-4`` (configs/solvers.toml) hold the σ's this search found.

Goal (issue 29): at 2 steps, within 25 % of the teacher's Heun-35 FD.

    python benchmarks/distilled.py [--num 360] [--threads 2] [--quick]

``--quick`` is a smoke run of seconds (40 samples, 4 candidate σ's, no tuned
teacher grid); its figures are not measurements.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgediff import runtime
from edgediff.catalogue import nfe
from edgediff.configs import preset
from edgediff.datasets import load_dataset
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.hardware import describe_cpu
from edgediff.lab.features import DigitsFeatures
from edgediff.lab.metrics import frechet_distance
from edgediff.lab.timing import TimedRequest, timed_sample
from edgediff.lab.tune import TuneOptions, tune_grid
from edgediff.models.loader import resolve_source

CALIBRATION_SEED, EVAL_SEED = 1000, 0
TEACHER_RUNS = [("heun", 3), ("heun", 5), ("heun", 10), ("heun", 18), ("ipndm", 5),
                ("dpmpp_2m", 5), ("unipc", 5)]


def export(name: str, folder: str) -> Path:
    path = Path(folder) / f"{name}.onnx"
    model, digest = resolve_source(name)
    export_onnx(model, path, source_sha256=digest, options=ExportOptions(validate=False))
    return path


class Scorer:
    """FD of samples (seed, num) of a run, their wall time per sample, and how close
    they sit to the training digits: the median distance from a sample to its nearest
    training digit over the same for the held-out digits (1: as novel as real
    digits; well below 1: copies of training digits)."""

    def __init__(self, num: int, batch: int):
        self.feats, self.num, self.batch = DigitsFeatures(), num, batch
        test = load_dataset("digits", "test")
        self.f_test = self.feats(test)
        self.train = load_dataset("digits", "train").reshape(-1, 64).astype(np.float64)
        self.real_nn = self.nearest(test)

    def nearest(self, x) -> float:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        d2 = (x**2).sum(1)[:, None] - 2 * x @ self.train.T + (self.train**2).sum(1)[None]
        return float(np.median(np.sqrt(np.maximum(d2.min(1), 0))))

    def __call__(self, D, solver, steps, seed, options=None, sigmas=None):
        x, times = timed_sample(D, TimedRequest(solver, steps, self.num, self.batch, seed,
                                                dict(options or {}), None, 0, None, sigmas))
        return (frechet_distance(self.feats(x), self.f_test), 1e3 * float(np.median(times)),
                self.nearest(x) / self.real_nn)


def search(D, score: Scorer, candidates: np.ndarray, steps: int) -> list[float]:
    """σ_max, then each further σ by FD on the calibration seed, greedily."""
    sigmas = [float(D.info.sigma_max)]
    for _ in range(steps - 1):
        below = [c for c in candidates if c < sigmas[-1]] or [sigmas[-1] / 2]
        fds = [score(D, "cm", None, CALIBRATION_SEED, {"clip": True},
                     [*sigmas, float(c), 0.0])[0] for c in below]
        sigmas.append(float(below[int(np.argmin(fds))]))
    return sigmas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=360, help="samples per FD (held-out: 360)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    num = 40 if args.quick else args.num
    candidates = np.geomspace(0.1, 20, 4 if args.quick else 24)
    score = Scorer(num, batch=40 if args.quick else 120)
    print(f"CPU: {describe_cpu()}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        student = runtime.load(export("bundled-cd", tmp), threads=args.threads)
        teacher = runtime.load(export("bundled", tmp), threads=args.threads)
        for D in (student, teacher):  # warm-up: timed_sample times warm runs
            runtime.sample(D, score.batch, solver="euler", steps=2)
        found = {k: search(student, score, candidates, k) for k in (2, 4)}
        for k, sig in found.items():
            print(f"{k} steps: σ's by FD on seed {CALIBRATION_SEED}: "
                  + ", ".join(f"{s:.3g}" for s in sig))
        rows = []
        for k in (1, 2, 4):
            _, _, options = preset(f"cd-digits-{k}")
            shipped = [*options.pop("sigmas"), 0.0]
            rows.append((f"bundled-cd cm ({'preset' if k > 1 else 'σ_max'})", k,
                         *score(student, "cm", None, EVAL_SEED, options, shipped)))
        for solver, steps in TEACHER_RUNS:
            rows.append((f"teacher {solver}", nfe(solver, steps),
                         *score(teacher, solver, steps, EVAL_SEED)))
        if not args.quick:  # the teacher's best 5-NFE run: iPNDM on its tuned grid (issue 26)
            entry = tune_grid(teacher, "ipndm", 5, {}, TuneOptions(  # as tuned_grids.py tunes
                calibration=24, seed=CALIBRATION_SEED, batch=24, evaluations=72))
            rows.append(("teacher ipndm (tuned grid)", 5,
                         *score(teacher, "ipndm", None, EVAL_SEED, None, entry.sigmas)))
    heun35 = next(r for r in rows if r[0] == "teacher heun" and r[1] == 35)
    print(f"FD of {num} samples of seed {EVAL_SEED} vs the held-out digits; ms per sample "
          f"(median over batches of {score.batch}), {args.threads} threads")
    print(f"{'run':<30}{'NFE':>4}{'FD':>9}{'FD / Heun-35':>14}{'ms/sample':>11}"
          f"{'speed vs Heun-35':>18}{'NN / real':>11}")
    for name, calls, fd, ms, nn in rows:
        print(f"{name:<30}{calls:>4}{fd:>9.3f}{fd / heun35[2]:>13.2f}×{ms:>11.4f}"
              f"{heun35[3] / ms:>17.1f}×{nn:>11.2f}")
    print("NN / real: median distance to the nearest training digit over the held-out "
          "digits' own (1: as novel as real digits; well below 1: copying)")
    two = next(r for r in rows if r[0].startswith("bundled-cd") and r[1] == 2)
    ratio = two[2] / heun35[2]
    print(f"2 steps: FD {two[2]:.3f} = {ratio:.2f}× Heun-35's {heun35[2]:.3f}, "
          f"{heun35[3] / two[3]:.1f}× faster: goal (within 25 %) "
          f"{'met' if ratio <= 1.25 else 'NOT met'}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
