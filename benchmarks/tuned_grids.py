"""Tuned σ grids on the bundled digits model: Fréchet distance (shipped feature
space) to the held-out digits of deterministic solvers at 3, 5 and 8 NFE, on the
default grid and on a grid tuned by ``edgediff.lab.tune`` — tuned on calibration
seed 1000, measured on seed 0 — beside Heun-35's FD on the same seed-0 x_T.

Goal (issue 26): the best solver at 5 NFE with a tuned grid within 10 % of
Heun-35's FD. Heun spends 2 NFE per step (1 on the last), so its budgets are the
nearest it can spend: 3, 5 and 9.

    python benchmarks/tuned_grids.py [--calibration 24] [--num 360] [--quick]

``--quick`` is a smoke run of seconds: 5 NFE only, 4 calibration samples, a few
tuning runs, 40 samples per FD; its figures are not measurements.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edgediff import runtime
from edgediff.catalogue import nfe, steps_for_nfe
from edgediff.datasets import load_dataset
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.hardware import describe_cpu
from edgediff.lab.features import DigitsFeatures
from edgediff.lab.metrics import frechet_distance
from edgediff.lab.tune import TuneOptions, reference_solution, tune_grid
from edgediff.models.loader import resolve_source

SOLVERS = [("heun", {}), ("dpmpp_2m", {}), ("ipndm", {}), ("unipc", {}),
           ("dpmpp_3m", {"weights": "third_order"}), ("dpmpp_3m", {"weights": "published"})]
BUDGETS = (3, 5, 8)
CALIBRATION_SEED, EVAL_SEED = 1000, 0


def label(solver: str, options: dict) -> str:
    return solver + "".join(f"({v})" for v in options.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", type=int, default=24, help="calibration samples")
    ap.add_argument("--num", type=int, default=None, help="samples per FD (default: held-out)")
    ap.add_argument("--evaluations", type=int, default=None,
                    help="solver runs per tuning (default: 12·(steps+1))")
    ap.add_argument("--reference-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="5 NFE, 4 calibration samples")
    args = ap.parse_args()
    budgets = (5,) if args.quick else BUDGETS
    if args.quick:
        args.calibration, args.num, args.evaluations, args.reference_steps = 4, 40, 6, 10
    feats, test = DigitsFeatures(), load_dataset("digits", "test")
    f_test, n = feats(test), args.num or len(test)
    run = runtime.RunOptions(batch=120)
    print(f"CPU: {describe_cpu()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits.onnx"
        model, digest = resolve_source("bundled")
        export_onnx(model, path, source_sha256=digest, options=ExportOptions(validate=False))
        D = runtime.load(path, threads=args.threads)
        t0 = time.perf_counter()
        heun35 = frechet_distance(feats(runtime.sample(D, n, seed=EVAL_SEED, solver="heun",
                                                       steps=18, run=run)), f_test)
        tune = TuneOptions(calibration=args.calibration, seed=CALIBRATION_SEED,
                           reference_steps=args.reference_steps, batch=args.calibration)
        reference = reference_solution(D, D.info.sigma_max, tune)
        print(f"bundled digits model; tuned on {args.calibration} samples of seed "
              f"{CALIBRATION_SEED} against Heun-{args.reference_steps}; FD of {n} samples of "
              f"seed {EVAL_SEED} vs the {len(test)} held-out digits")
        print(f"{'solver':<24}{'NFE':>4}{'FD default':>12}{'FD tuned':>10}{'MSE before':>12}"
              f"{'MSE after':>11}{'runs':>6}  tuned σ's")
        rows = []
        for solver, options in SOLVERS:
            for budget in budgets:
                steps = steps_for_nfe(solver, budget)
                evals = args.evaluations or 12 * (steps + 1)
                entry = tune_grid(D, solver, steps, options, TuneOptions(
                    calibration=tune.calibration, seed=tune.seed, batch=tune.batch,
                    reference_steps=tune.reference_steps, evaluations=evals),
                    reference=reference)
                fds = [frechet_distance(feats(runtime.sample(
                    D, n, seed=EVAL_SEED, solver=solver, options=options,
                    run=runtime.RunOptions(batch=120, sigmas=s))), f_test)
                    for s in (entry.default_sigmas, entry.sigmas)]
                rows.append((label(solver, options), nfe(solver, steps), *fds))
                grid = " ".join(f"{s:.3g}" for s in entry.sigmas[:-1])
                print(f"{rows[-1][0]:<24}{rows[-1][1]:>4}{fds[0]:>12.4g}{fds[1]:>10.4g}"
                      f"{entry.objective_before:>12.4g}{entry.objective_after:>11.4g}"
                      f"{entry.evaluations:>6}  {grid}", flush=True)
        print(f"{'heun (default grid)':<24}{35:>4}{heun35:>12.4g}")
        at5 = [r for r in rows if r[1] == 5]
        best = min(at5, key=lambda r: r[3])
        ratio = best[3] / heun35
        print(f"best at 5 NFE: {best[0]}, tuned FD {best[3]:.3f} = {ratio:.2f}× Heun-35's "
              f"{heun35:.3f}: goal (within 10 %) {'met' if ratio <= 1.10 else 'NOT met'}")
        print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
