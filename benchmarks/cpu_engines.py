"""Every CPU engine side by side, in one run: one denoiser call and a DDIM-20
sampling run of the CIFAR-sized UNet at batch 1 and 8.

Engines: torch eager fp32, torch bf16 autocast (only on a CPU with bf16 units),
torch.compile, ONNX Runtime fp32 and int8 (QDQ), OpenVINO f32, bf16 (only where
``edgediff.runtime.backends.openvino.inference_precision`` allows it) and int8
(the same QDQ graph). The model: a diffusers UNet2DModel, channels 128, 256,
256, 256, two layers per block, attention at 16×16, random weights (35.7 M
parameters), exported once. Repeats are interleaved (``edgediff.lab.timing``),
so drift in the machine's speed hits every engine alike; every engine gets the
same thread count. Printed: median [p90] ms, and each row's speed-up over the
best torch configuration (>1: faster). Each reduced precision also gets a
quality figure against fp32 on the same inputs (max |ΔD| and RMS of D at a few
σ) and the quality gate's verdict (``edgediff.lab.gate``, as ``edgediff check
--precision`` runs it: ``--gate-num`` samples of DDIM on the same seeds against
ONNX Runtime fp32; with random weights there is no data to measure a distance to,
so the verdict rests on the samples' RMS against fp32).

    python benchmarks/cpu_engines.py [--reps 10] [--threads 2] [--no-compile] [--quick]

``--quick`` is a smoke run of seconds: the U-Net shrunk to 8×8 with 32 channels,
batch 1, 2 repeats, 4 DDIM steps, no torch.compile; its figures are not
measurements.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's idle OpenMP threads must not
# spin on the cores the next engine is about to use (set before torch loads)

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import openvino
import torch

sys.path.insert(0, str(Path(__file__).parent))
from int8_speed import CIFAR, TINY, cifar_model  # the repo's one recipe

from edgediff import runtime
from edgediff.errors import EdgediffError
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.hardware import describe_cpu, has_bf16
from edgediff.lab.speed import int8_for_timing
from edgediff.lab.timing import interleaved
from edgediff.samplers.reference import reference_run
from edgediff.settings import SolverSettings

QUICK = {"reps": 2, "batches": [1], "steps": 4, "tiny": True, "compile": False,
         "gate_num": 2}
SIGMAS = (0.1, 1.0, 10.0)  # where the quality figures are taken
TORCH = ("torch eager fp32", "torch bf16 autocast", "torch.compile")
REDUCED = {"torch bf16 autocast": "torch eager fp32", "ort int8": "ort fp32",
           "openvino bf16": "ort fp32", "openvino int8": "ort fp32"}


def gate_verdict(name: str, engines: dict, settings, num: int) -> str:
    """The quality gate's verdict for a reduced-precision edgediff engine against ONNX
    Runtime fp32 (``edgediff.lab.gate.precision_gate``); torch rows are not gated."""
    from edgediff.lab.gate import GateOptions, precision_gate

    if isinstance(engines[name], torch.nn.Module):
        return "gate: n/a (a torch configuration)"
    result = precision_gate(engines["ort fp32"], engines[name], GateOptions(
        num=num, batch=num, solver=settings.solver, steps=settings.steps,
        options=settings.options))
    return f"gate: {result.summary()}"


class Autocast(torch.nn.Module):
    """The fp32 module run under CPU bf16 autocast, returning float32."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, sigma, *args):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner(x, sigma, *args).float()


def torch_engines(net, x: torch.Tensor, s: torch.Tensor, compile_: bool) -> tuple[dict, dict]:
    """name -> module, and name -> why a configuration is skipped."""
    engines, skipped = {"torch eager fp32": net}, {}
    if has_bf16():
        engines["torch bf16 autocast"] = Autocast(net)
    else:
        skipped["torch bf16 autocast"] = ("this CPU has no bf16 units (avx512_bf16/amx_bf16): "
                                          "autocast would emulate bf16, slower than fp32")
    if not compile_:
        skipped["torch.compile"] = "not asked (--no-compile, or --quick)"
        return engines, skipped
    try:
        t0 = time.perf_counter()
        compiled = torch.compile(net)
        with torch.no_grad():
            compiled(x, s)
        print(f"torch.compile: first call (compiling) {time.perf_counter() - t0:.0f} s")
        engines["torch.compile"] = compiled
    except Exception as e:  # inductor needs a working C++ toolchain, among other things
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        skipped["torch.compile"] = f"failed here: {type(e).__name__}: {first}"
    return engines, skipped


def edgediff_engines(f32: Path, i8: Path, threads: int) -> tuple[dict, dict]:
    engines = {"ort fp32": runtime.load(f32, threads=threads),
               "ort int8": runtime.load(i8, threads=threads),
               "openvino f32": runtime.load(f32, threads=threads, engine="openvino",
                                            precision="f32")}
    skipped = {}
    try:
        engines["openvino bf16"] = runtime.load(f32, threads=threads, engine="openvino",
                                                precision="bf16")
    except EdgediffError as e:
        skipped["openvino bf16"] = str(e)
    engines["openvino int8"] = runtime.load(i8, threads=threads, engine="openvino")
    return engines, skipped


def quality(engines: dict, info, shape, settings, gate_num: int) -> list[str]:
    """Each reduced precision against its fp32 twin on the same inputs, per σ."""
    rng = np.random.default_rng(1)
    rows = []
    for name, ref_name in REDUCED.items():
        if name not in engines:
            continue
        cells = []
        for sigma in SIGMAS:
            x = (rng.standard_normal((4, *shape)) * info.sigma_data
                 + sigma * rng.standard_normal((4, *shape))).astype(np.float32)
            s = np.full(4, sigma, np.float32)
            got, ref = (np.array(call(engines[n], x, s), np.float64) for n in (name, ref_name))
            rms = np.sqrt(np.mean((got - ref) ** 2))
            cells.append(f"{np.abs(got - ref).max():.2e} / {rms:.2e}")
        rows.append(f"  {name:<22}" + "  ".join(f"{c:>19}" for c in cells)
                    + f"   {gate_verdict(name, engines, settings, gate_num)}")
    return rows


def call(engine, x: np.ndarray, s: np.ndarray):
    if isinstance(engine, torch.nn.Module):
        with torch.no_grad():
            return engine(torch.from_numpy(x), torch.from_numpy(s)).float().numpy()
    return engine(x, s)


def sampler(engine, info, settings, sigmas, batch):
    if isinstance(engine, torch.nn.Module):
        return lambda: reference_run(engine, info, settings, sigmas, 0, range(batch))
    return lambda: runtime.sample(engine, batch, solver=settings.solver, steps=settings.steps,
                                  options=settings.options)


def table(title: str, times: dict, skipped: dict) -> None:
    med = {k: float(np.median(v)) for k, v in times.items()}
    best = min(med[k] for k in med if k in TORCH)
    print(f"  {title}: median [p90] ms, speed-up over the best torch ({best:.2f} ms)")
    for name, t in times.items():
        p90 = np.percentile(t, 90)
        print(f"  {name:<22}{med[name]:>10.2f} [{p90:.2f}]{best / med[name]:>8.2f}×")
    for name, why in skipped.items():
        print(f"  {name:<22}skipped: {why}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps of the sampling run")
    ap.add_argument("--calibration", type=int, default=2, help="int8 calibration samples")
    ap.add_argument("--tiny", action="store_true", help="the U-Net at 8×8, 32 channels")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--gate-num", type=int, default=8,
                    help="samples per side of each reduced precision's quality gate")
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)  # flags given explicitly still win
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(describe_cpu())
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, openvino "
          f"{openvino.__version__}; {a.threads} threads each; {a.reps} interleaved repeats")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        name, model, digest = cifar_model(tmp / "unet", TINY if a.tiny else CIFAR)
        f32, i8 = tmp / "fp32.onnx", tmp / "int8.onnx"
        t0 = time.perf_counter()
        export_onnx(model, f32, ExportOptions(validate=False), source_sha256=digest)
        print(f"{name}: fp32 export {time.perf_counter() - t0:.0f} s")
        print(int8_for_timing(model, digest, i8, a.calibration, gate=False))
        engines, skipped = edgediff_engines(f32, i8, a.threads)
        info, shape = engines["ort fp32"].info, tuple(model.config["sample_shape"])
        settings = SolverSettings("ddim", a.steps, {"eta": 0.0})
        sigmas = runtime.sigma_grid(info, a.steps).tolist()
        net = model.denoiser.float().eval()
        for batch in a.batches:
            x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
            s = np.full(batch, 1.0, np.float32)
            nets, why = torch_engines(net, torch.from_numpy(x), torch.from_numpy(s), a.compile)
            every = {**nets, **engines}
            print(f"\nbatch {batch}")
            forward = {k: (lambda e=e, x=x, s=s: call(e, x, s)) for k, e in every.items()}
            table("one forward", interleaved(forward, a.reps, warmup=2), {**why, **skipped})
            table(f"DDIM-{a.steps} sampling run", interleaved(
                {k: sampler(e, info, settings, sigmas, batch) for k, e in every.items()},
                a.reps, warmup=1), {**why, **skipped})
        print(f"\nquality vs fp32 on the same inputs, max |ΔD| / RMS at σ = "
              f"{', '.join(map(str, SIGMAS))}:")
        print("\n".join(quality({**nets, **engines}, info, shape, settings, a.gate_num)))


if __name__ == "__main__":
    main()
