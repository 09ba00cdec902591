"""The torch-free runtime (NumPy + ONNX Runtime) against the torch reference, side by side.

The bundled digits model, Heun with 18 steps (35 NFE), batches 1 and 16, both
libraries on the same thread count, the same x_T and σ grid. Two phases, each
in turn: first torch and the runtime interleaved (speed-up), then the runtime
and a replay of the run's own NFE denoiser calls (its recorded inputs, back to
back) interleaved with torch idle: the overhead ratio total / (NFE × one
denoiser call), the median over adjacent pairs. Replaying the real inputs
matters: ONNX Runtime's call time depends on them (a fixed made-up input ran
several percent faster than the run's own). Reported: median [p90] over warm
repetitions, per sample. Two views of the loop's own cost per NFE: "loop",
timed with a denoiser that does no work, and "between", the time outside the
denoiser calls of a real run (its step arithmetic after each ONNX Runtime call).

    python benchmarks/runtime_vs_torch.py [--threads 2] [--reps 30] [--onnx PATH]
        [--torch-device cuda] [--quick]

``--quick`` is a smoke run of seconds (6 steps, batches 1 and 2, 3 repetitions);
its figures are not measurements.

``--torch-device cuda`` runs the torch reference on the GPU (synchronized per
run) against the runtime on ONNX Runtime's CPU provider.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's idle OpenMP threads must not
# spin on the cores ONNX Runtime is about to use (set before torch loads)

import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from edgediff import runtime
from edgediff.catalogue import nfe
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.models.loader import resolve_source
from edgediff.samplers import at_precision, heun

QUICK = {"steps": 6, "reps": 3, "batches": [1, 2], "loop_reps": 20}


class Recorder:
    """Passes calls through and keeps copies of their inputs."""

    def __init__(self, inner):
        self.inner, self.info, self.calls = inner, inner.info, []

    def __call__(self, x, sigma):
        self.calls.append((x.copy(), sigma.copy()))
        return self.inner(x, sigma)


class TimedDenoiser:
    """Passes calls through and adds up the time spent inside them — on the same
    path the step loops take (the backend's bound buffers)."""

    def __init__(self, inner):
        self.inner, self.info, self.inside = inner, inner.info, 0.0

    def __call__(self, x, sigma):
        t0 = time.perf_counter()
        out = self.inner(x, sigma)
        self.inside += time.perf_counter() - t0
        return out

    def bind(self, batch):
        return _TimedBound(self, self.inner.bind(batch))


class _TimedBound:
    def __init__(self, timer, bound):
        self.timer, self.bound, self.x, self.sigma = timer, bound, bound.x, bound.sigma

    def run(self):
        t0 = time.perf_counter()
        out = self.bound.run()
        self.timer.inside += time.perf_counter() - t0
        return out


class NullDenoiser:
    """Returns a fixed array at once: what is left is the step loop itself."""

    def __init__(self, info, shape):
        self.info, self.out = info, np.zeros(shape, np.float32)

    def __call__(self, x, sigma):
        return self.out


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--loop-reps", type=int, default=200, help="runs of the no-work loop")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--onnx", default=None, help="exported bundled model (default: export now)")
    ap.add_argument("--torch-device", default="cpu", help="where the torch reference runs")
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)  # flags given explicitly still win
    args = ap.parse_args()
    device = torch.device(args.torch_device)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    model, digest = resolve_source("bundled")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.onnx) if args.onnx else Path(tmp) / "digits.onnx"
        if not args.onnx:
            export_onnx(model, path, ExportOptions(validate=False), source_sha256=digest)
        D = runtime.load(path, threads=args.threads)
        reference = at_precision(model.denoiser.float().eval().to(device))
        sigmas = runtime.sigma_grid(D.info, args.steps).tolist()
        n_calls = nfe("heun", args.steps)
        print(f"bundled digits model, heun {args.steps} steps ({n_calls} NFE), {args.threads} "
              f"threads, {args.reps} warm repetitions; torch {torch.__version__} on {device}, "
              f"onnxruntime {onnxruntime.__version__} on CPU")
        print(f"{'batch':>5} {'torch ms/sample':>16} {'runtime ms/sample':>18} {'speed-up':>9} "
              f"{'1 call ms':>10} {'overhead':>9} {'loop µs/NFE':>12} {'floor':>6}"
              f" {'between µs':>11}"
              "   (median [p90])")
        for batch in args.batches:
            rng = np.random.default_rng(batch)
            x = rng.standard_normal((batch, *D.info.sample_shape)) * sigmas[0]
            x_t = torch.from_numpy(x).to(device)
            recorder = Recorder(D)
            runtime.SOLVERS["heun"](recorder, x, sigmas)
            got = runtime.SOLVERS["heun"](D, x, sigmas)  # warm-up, and the two agree
            ref = heun(reference, x_t, sigmas).cpu().numpy()
            assert np.abs(got - ref).max() < 1e-4, "runtime and reference disagree"
            run_ref = lambda: heun(reference, x_t, sigmas).cpu()  # noqa: E731, B023
            run_rt = lambda: runtime.SOLVERS["heun"](D, x, sigmas)  # noqa: E731, B023
            calls = lambda: [D(a, s) for a, s in recorder.calls]  # noqa: E731, B023
            t_ref, t_rt, t_rt2, t_call = [], [], [], []
            null = NullDenoiser(D.info, x.shape)
            loop = min(timed(lambda: runtime.SOLVERS["heun"](null, x, sigmas))  # noqa: B023
                       for _ in range(args.loop_reps)) / n_calls
            for _ in range(args.reps):  # speed: torch reference vs runtime
                t_ref.append(timed(run_ref))
                t_rt.append(timed(run_rt))
            between = []
            for _ in range(args.reps):  # overhead: runtime vs NFE bare calls, torch idle
                t_rt2.append(timed(run_rt))
                t_call.append(timed(calls) / n_calls)
                probe = TimedDenoiser(D)
                total = timed(lambda: runtime.SOLVERS["heun"](probe, x, sigmas))  # noqa: B023
                between.append((total - probe.inside) / n_calls)
            ref_ms, rt_ms = (np.asarray(t) * 1e3 / batch for t in (t_ref, t_rt))
            call_ms = float(np.median(t_call)) * 1e3
            # adjacent pairs share the machine's state: the median of their ratios
            # resists this VM's drift better than a ratio of medians
            overhead = float(np.median(np.asarray(t_rt2) / (n_calls * np.asarray(t_call))))
            print(f"{batch:>5} {np.median(ref_ms):>8.3f} [{np.percentile(ref_ms, 90):.3f}]"
                  f" {np.median(rt_ms):>9.3f} [{np.percentile(rt_ms, 90):.3f}]"
                  f" {np.median(ref_ms) / np.median(rt_ms):>8.2f}x {call_ms:>10.3f}"
                  f" {overhead:>9.3f} {loop * 1e6:>12.1f} {1 + loop * 1e3 / call_ms:>6.3f}"
                  f" {np.median(between) * 1e6:>11.1f}")


if __name__ == "__main__":
    main()
