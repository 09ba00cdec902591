"""INT8 against float32 on the bundled digits model, per calibration method:
calibration on the model's own sampling trajectories (edgediff's choice), on pure
noise at random σ, and on the trajectories at a single σ.

Per artifact: the worst RMS of int8 − fp32 over 12 σ from σ_min to σ_max (and
where), the end-to-end RMS of 16 Heun-18 samples against the float32 torch
model, and the Fréchet distance to the 360 held-out digits (shipped feature
space) for three solvers, every artifact from the same x_T. With the
class-conditional model: the share of samples classified as the digit asked
for, at w = 1, fp32 against trajectory-calibrated int8.

    python benchmarks/int8_quality.py [--calibration 64] [--quick]

``--quick`` is a smoke run of seconds: trajectory calibration only, on 2 samples,
100 samples per row at 4 steps; its figures are not measurements.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from edgediff import runtime
from edgediff.datasets import load_dataset
from edgediff.export.int8 import Int8Options
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.lab.features import DigitsFeatures
from edgediff.lab.metrics import frechet_distance
from edgediff.models.loader import resolve_source

SOLVERS = [("heun", 18), ("dpmpp_2m", 10), ("ipndm", 10)]
METHODS = ("trajectory", "noise", "single_sigma")
QUICK_STEPS = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", type=int, default=64)
    ap.add_argument("--num", type=int, default=None, help="samples (default: as many as held-out)")
    ap.add_argument("--quick", action="store_true",
                    help=f"trajectory only, 100 samples, {QUICK_STEPS} steps")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(calibration=2, num=100)
    args = ap.parse_args()
    feats, test = DigitsFeatures(), load_dataset("digits", "test")
    f_test, n = feats(test), args.num or len(test)
    solvers = [(s, min(k, QUICK_STEPS) if args.quick else k) for s, k in SOLVERS]
    cond_steps = QUICK_STEPS if args.quick else 18
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, digest = resolve_source("bundled")
        paths = {"fp32": tmp / "fp32.onnx"}
        validate = not args.quick  # a smoke run skips the float32 graphs' validation
        export_onnx(model, paths["fp32"], source_sha256=digest,
                    options=ExportOptions(validate=validate))
        checks = {}
        for method in METHODS[:1] if args.quick else METHODS:
            paths[method] = tmp / f"{method}.onnx"
            checks[method] = export_onnx(model, paths[method], source_sha256=digest,
                                         options=ExportOptions(validate=validate, int8=Int8Options(
                                             calibration=args.calibration, method=method,
                                             tolerance=100.0)))
        if not args.quick:  # the same trajectories, quantized for TensorRT (symmetric int8)
            paths["trajectory, TensorRT target"] = tmp / "trt.onnx"
            checks["trajectory, TensorRT target"] = export_onnx(
                model, paths["trajectory, TensorRT target"], source_sha256=digest,
                options=ExportOptions(int8=Int8Options(calibration=args.calibration,
                                                       tolerance=100.0, target="tensorrt")))
        print(f"bundled digits model, int8 calibrated on {args.calibration} samples of Heun 18; "
              f"{n} samples per column, FD to the {len(test)} held-out digits "
              f"(train vs held-out: 2.93)")
        head = "".join(f"{f'FD {s}-{k}':>16}" for s, k in solvers)
        print(f"{'graph':<36}{'worst RMS (σ)':>20}{'end-to-end RMS':>16}{head}")
        for name, path in paths.items():
            D = runtime.load(path, threads=2)
            fds = []
            for solver, steps in solvers:
                x = runtime.sample(D, n, seed=0, solver=solver, steps=steps,
                                   run=runtime.RunOptions(batch=120))
                fds.append(frechet_distance(feats(x), f_test))
            if name == "fp32":
                sweep, e2e, label = "-", "-", "fp32"
            else:
                sigma, rms = checks[name].worst
                sweep, e2e = f"{rms:.4f} ({sigma:.3g})", f"{checks[name].end_to_end['rms']:.4f}"
                label = f"int8, {name}"
            print(f"{label:<36}{sweep:>20}{e2e:>16}" + "".join(f"{v:>16.3f}" for v in fds))

        cond, cdigest = resolve_source("bundled-cond")
        cpaths = {"fp32": tmp / "cond.onnx", "int8, trajectory": tmp / "cond8.onnx"}
        export_onnx(cond, cpaths["fp32"], source_sha256=cdigest,
                    options=ExportOptions(validate=validate))
        export_onnx(cond, cpaths["int8, trajectory"], source_sha256=cdigest,
                    options=ExportOptions(validate=validate, int8=Int8Options(
                        calibration=args.calibration, tolerance=100.0)))
        labels = np.arange(n) % 10
        print(f"\nclass-conditional digits model, w = 1, Heun {cond_steps}, {n} samples, "
              "classes in turn")
        print(f"{'graph':<26}{'label accuracy':>16}{'FD':>10}")
        for name, path in cpaths.items():
            D = runtime.load(path, threads=2)
            x = runtime.sample(D, n, seed=0, solver="heun", steps=cond_steps,
                               condition=runtime.Condition(labels),
                               run=runtime.RunOptions(batch=120))
            acc = float(np.mean(feats.classify(x) == labels))
            print(f"{name:<26}{acc:>16.3f}{frechet_distance(feats(x), f_test):>10.3f}")


if __name__ == "__main__":
    main()
