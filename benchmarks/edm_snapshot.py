"""An NVlabs EDM CIFAR-10 network from snapshot to samples, on this CPU.

EDM's CIFAR-10 configuration (DDPM++: SongUNet with 128 channels, multipliers
2, 2, 2, four blocks per level, attention at 16×16, augment_dim 9; VPPrecond;
class-conditional over 10 labels; 32×32; about 56 M parameters) with random
weights, written in NVlabs' snapshot format by edgediff's writer. Then:

1. ``edgediff export snapshot.pkl`` in a child process: wall time and the
   child's peak resident memory;
2. one denoiser call per way, side by side in this process: ONNX Runtime fp32
   and int8 (QDQ, calibrated on the default solver's own calls) interleaved,
   then torch eager on the same network (and bf16 autocast where the CPU has
   native bf16); median [p90] ms per sample, and the ratios;
3. the int8 graph's error against fp32 on those inputs (its quality gate is
   the export's own: RMS within the int8 tolerance, else no file);
4. samples from the fp32 artifact with the torch-free runtime.

    python benchmarks/edm_snapshot.py [--reps 10] [--batches 1 4] [--quick]

``--quick`` is a smoke run of seconds: the same architecture at 8×8 with 16
channels, one block per level, batch 1, 3 rounds.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edgediff import runtime
from edgediff.hardware import describe_cpu, has_bf16
from edgediff.lab.speed import int8_for_timing
from edgediff.lab.timing import interleaved
from edgediff.models.edm.songunet import SongUNet
from edgediff.models.loader import resolve_source
from edgediff.models.snapshot import writer

CIFAR10 = {"img_resolution": 32, "in_channels": 3, "out_channels": 3, "label_dim": 10,
           "augment_dim": 9, "model_channels": 128, "channel_mult": [2, 2, 2],
           "num_blocks": 4, "attn_resolutions": [16], "dropout": 0.13,
           "embedding_type": "positional", "encoder_type": "standard",
           "decoder_type": "standard", "channel_mult_noise": 1, "resample_filter": [1, 1]}
TINY = {**CIFAR10, "img_resolution": 8, "model_channels": 16, "num_blocks": 1,
        "attn_resolutions": [4]}
QUICK = {"reps": 3, "batches": [1], "calibration": 1, "tiny": True, "steps": 2, "gate": False}


def write_cifar_snapshot(path: Path, kwargs: dict) -> int:
    torch.manual_seed(0)
    net = writer.randomize(SongUNet(**kwargs), seed=0, scale=0.01)
    writer.write_snapshot(path, writer.edm_record("VPPrecond", net, kwargs))
    return sum(p.numel() for p in net.parameters())


def export_in_child(snapshot: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak MiB) of ``edgediff export`` in a process of its own."""
    exe = Path(sys.executable).with_name("edgediff")
    t0 = time.perf_counter()
    subprocess.run([str(exe), "export", str(snapshot), "-o", str(out), "--force"], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def torch_calls(net, x, s, y) -> dict:
    xt, st, yt = torch.from_numpy(x), torch.from_numpy(s), torch.from_numpy(y)

    def eager():
        with torch.no_grad():
            net(xt, st, yt)

    def bf16():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            net(xt, st, yt)
    return {"torch": eager, **({"torch bf16": bf16} if has_bf16() else {})}


def speed(paths: dict, net, batch: int, a) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, *[net_res(a)] * 2)).astype(np.float32)
    s, y = np.full(batch, 2.0, np.float32), (np.arange(batch) % 10).astype(np.int64)
    feed = {"x": x, "sigma": s, "class_labels": y}
    sessions = {k: session(p, a.threads) for k, p in paths.items()}
    t = interleaved({k: (lambda se=se: se.run(None, feed)) for k, se in sessions.items()}, a.reps)
    t |= interleaved(torch_calls(net, x, s, y), a.reps)  # its own block: OpenMP threads spin
    med = {k: float(np.median(v)) / batch for k, v in t.items()}
    p90 = {k: float(np.percentile(v, 90)) / batch for k, v in t.items()}
    print(f"  batch {batch}, ms per sample: " + "  ".join(
        f"{k} {med[k]:.1f} [{p90[k]:.1f}]" for k in t)
        + f"   int8 vs fp32 {med['fp32'] / med['int8']:.2f}×, fp32 vs torch "
          f"{med['torch'] / med['fp32']:.2f}×, int8 vs torch {med['torch'] / med['int8']:.2f}×")
    d32 = sessions["fp32"].run(None, feed)[0]
    d8 = sessions["int8"].run(None, feed)[0]
    print(f"  int8 vs fp32 at σ = 2: max |ΔD| {np.abs(d8 - d32).max():.3g}, RMS "
          f"{np.sqrt(np.mean((d8 - d32) ** 2)):.3g} (data range ±1)")


def net_res(a) -> int:
    return (TINY if a.tiny else CIFAR10)["img_resolution"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--calibration", type=int, default=2,
                    help="samples of the default solver (Heun 18) to calibrate int8 on")
    ap.add_argument("--steps", type=int, default=18, help="Heun steps for the samples")
    ap.add_argument("--tiny", action="store_true", help="the architecture at 8×8, 16 channels")
    ap.add_argument("--no-gate", dest="gate", action="store_false",
                    help="skip the int8 quality gate (time the int8 graph as a speed figure only)")
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"CPU: {describe_cpu()}; onnxruntime {ort.__version__}, torch {torch.__version__}, "
          f"{a.threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        snapshot = tmp / "network-snapshot.pkl"
        params = write_cifar_snapshot(snapshot, TINY if a.tiny else CIFAR10)
        size = snapshot.stat().st_size / 2**20
        print(f"EDM CIFAR-10 DDPM++ (VPPrecond, 10 classes{', tiny' if a.tiny else ''}): "
              f"{params / 1e6:.1f} M parameters, snapshot {size:.0f} MiB")
        seconds, peak = export_in_child(snapshot, tmp / "fp32.onnx")
        print(f"export (edgediff export, child process): {seconds:.1f} s, peak RSS {peak:.0f} MiB")
        model, digest = resolve_source(str(snapshot))
        print(int8_for_timing(model, digest, tmp / "int8.onnx", a.calibration, a.gate))
        net = model.denoiser.float().eval()
        for batch in a.batches:
            speed({"fp32": tmp / "fp32.onnx", "int8": tmp / "int8.onnx"}, net, batch, a)
        D = runtime.load(tmp / "fp32.onnx", threads=a.threads)
        t0 = time.perf_counter()
        x = runtime.sample(D, 2, seed=0, solver="heun", steps=a.steps,
                           condition=runtime.Condition(labels=[3, 7]))
        print(f"samples: 2 × Heun {a.steps} ({2 * a.steps - 1} calls) in "
              f"{time.perf_counter() - t0:.1f} s, finite {bool(np.isfinite(x).all())}, "
              f"range {x.min():.2f} … {x.max():.2f}")


if __name__ == "__main__":
    main()
