"""Runtime vs torch reference at the presets' step counts, on both shipped models.

The parity tests use short runs; this prints the figures at full length: for
each solver, the NumPy + ONNX Runtime loop and the torch reference
(float32 module) from the same x_T with the same per-step noise, max abs
difference of the final samples.

    python benchmarks/parity.py [--num 16] [--quick]

``--quick`` runs every row at no more than 5 steps on 2 samples: a smoke run of
seconds, not the figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgediff import runtime
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.models.loader import resolve_source
from edgediff.samplers.reference import reference_run
from edgediff.settings import SolverSettings
from edgediff.streams import NoiseStreams

RUNS = [  # solver, steps, options
    ("ddpm", 1000, {"variance": "small"}),
    ("ddpm", 1000, {"clip": True}),
    ("euler_maruyama", 1000, {}),
    ("euler", 35, {}),
    ("heun", 18, {}),
    ("edm", 64, {"S_churn": 40.0, "S_tmin": 0.05, "S_tmax": 50.0, "S_noise": 1.003}),
    ("ddim", 50, {"eta": 1.0}),
    ("ddim", 50, {"eta": 0.0, "clip": True}),
    ("dpmpp_2m", 10, {}),
    ("euler_ancestral", 30, {"eta": 1.0}),
    ("dpmpp_2m_sde", 20, {"eta": 1.0}),
    ("dpmpp_3m", 10, {}),
    ("ipndm", 10, {"order": 4}),
    ("deis", 10, {"order": 3}),
    ("unipc", 10, {"order": 3}),
]
QUICK_STEPS = 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help=f"at most {QUICK_STEPS} steps, 2 samples (unless --num)")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(num=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"{'solver':<16}{'options':<52}{'steps':>6}{'mixture':>11}{'digits':>11}"
          f"   max abs diff, {args.num} samples, runtime vs torch reference")
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name, source in (("mixture", "mixture2d"), ("digits", "bundled")):
            model, digest = resolve_source(source)
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, path, ExportOptions(validate=False), source_sha256=digest)
            models[name] = (model, runtime.load(path, threads=2))
        for solver, steps, options in RUNS:
            steps = min(steps, QUICK_STEPS) if args.quick else steps
            errs = []
            for model, D in models.values():
                settings = SolverSettings(solver, steps, options)
                sigmas = runtime.sigma_grid(D.info, steps).tolist()
                streams = NoiseStreams(args.seed, range(args.num), D.info.sample_shape)
                got = runtime.sample_batch(D, settings, sigmas, streams)
                ref = reference_run(model.denoiser, D.info, settings, sigmas, args.seed,
                                    range(args.num))
                errs.append(float(np.abs(got - ref).max()))
            opts = ", ".join(f"{k}={v}" for k, v in options.items())
            print(f"{solver:<16}{opts:<52}{steps:>6}{errs[0]:>11.2e}{errs[1]:>11.2e}")


if __name__ == "__main__":
    main()
