"""One denoiser call, three ways side by side in one process: float32 ONNX Runtime,
int8 (QDQ) ONNX Runtime and torch eager, at batch 1 and 8, 2 threads each; the
two ONNX Runtime graphs interleaved so that drift hits both alike, torch in a
block of its own right after; median and p90 ms per call, and the ratios.
Models: the bundled digits model and a CIFAR-sized diffusers UNet2DModel
(channels 128, 256, 256, 256, two layers per block, attention at 16×16; random
weights, calibrated on its own DDIM trajectories).

Also printed: whether the CPU has the int8 dot-product instructions (x86 VNNI /
AMX, ARM dotprod) and which kernels ONNX Runtime ran for the int8 graph (its
profiler's op counts: QLinearConv and friends mean the QDQ pairs were fused into
integer kernels; DequantizeLinear → Conv would mean they were not).

    python benchmarks/int8_speed.py [--reps 20] [--no-cifar] [--calibration 4] [--quick]

``--quick`` is a smoke run of seconds: batches 1 and 2, 3 rounds, 2 calibration
samples, and the CIFAR-shaped U-Net shrunk to 8×8 with 32 channels per level.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edgediff.export.int8 import Int8Options
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.hardware import cpu_flags
from edgediff.lab.timing import interleaved
from edgediff.models.loader import resolve_source

CIFAR = {"sample_size": 32, "block_out_channels": (128, 256, 256, 256), "layers_per_block": 2}
TINY = {"sample_size": 8, "block_out_channels": (32, 32, 32, 32), "layers_per_block": 1,
        "norm_num_groups": 8}
QUICK = {"reps": 3, "calibration": 2, "batches": [1, 2], "tiny": True}


def cpu_int8_features() -> str:
    flags = cpu_flags()
    have = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp") if f in flags]
    return f"{platform.machine()}: " + (", ".join(have) if have else
                                         "no int8 dot-product extension found")


def session(path: Path, threads: int, profile: bool = False) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.enable_profiling = profile
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def kernels(path: Path, feed: dict) -> str:
    """The int8 graph's executed node kinds, from ONNX Runtime's profiler."""
    s = session(path, 1, profile=True)
    s.run(None, feed)
    trace = Path(s.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink(missing_ok=True)
    ops = collections.Counter(e["args"]["op_name"] for e in events
                              if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"))
    integer = {k: v for k, v in ops.items() if k in (
        "QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger",
        "MatMulIntegerToFloat", "DynamicQuantizeMatMul")}
    floating = {k: ops.get(k, 0) for k in ("Conv", "Gemm", "MatMul")}
    return (f"integer {integer}; float {floating}; QuantizeLinear {ops['QuantizeLinear']}, "
            f"DequantizeLinear {ops['DequantizeLinear']}")


def cifar_model(folder: Path, size: dict):
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(in_channels=3, out_channels=3, **size,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                         "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    sized = "CIFAR-sized" if size == CIFAR else f"tiny {size['sample_size']}×{size['sample_size']}"
    return f"{sized} UNet2DModel ({params:.1f} M)", *resolve_source(str(folder))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calibration", type=int, default=4,
                    help="samples of each model's default solver to calibrate on")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--no-cifar", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="the U-Net at 8×8, 32 channels")
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)  # flags given explicitly still win
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"CPU int8 support: {cpu_int8_features()}; onnxruntime {ort.__version__}, "
          f"{a.threads} threads, median [p90] ms per call over {a.reps} interleaved rounds")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, digest = resolve_source("bundled")
        models = [("digits (bundled, 1.0 M)", model, digest)]
        if not a.no_cifar:
            models.append(cifar_model(tmp / "cifar", TINY if a.tiny else CIFAR))
        for name, model, digest in models:
            f32, i8 = tmp / f"{len(name)}-fp32.onnx", tmp / f"{len(name)}-int8.onnx"
            export_onnx(model, f32, ExportOptions(validate=False), source_sha256=digest)
            check = export_onnx(model, i8, ExportOptions(validate=False, int8=Int8Options(
                calibration=a.calibration, tolerance=100.0)), source_sha256=digest)
            print(f"\n{name}: {check}")
            shape = tuple(model.config["sample_shape"])
            net = model.denoiser.float().eval()
            for batch in a.batches:
                rng = np.random.default_rng(0)
                x = rng.standard_normal((batch, *shape)).astype(np.float32)
                s = np.full(batch, 1.0, np.float32)
                feed = {"x": x, "sigma": s}
                sf, si = session(f32, a.threads), session(i8, a.threads)
                xt, st = torch.from_numpy(x), torch.from_numpy(s)

                def eager(xt=xt, st=st, net=net):
                    with torch.no_grad():
                        net(xt, st)
                # the two ONNX Runtime sessions interleaved; torch in its own block
                # (its OpenMP threads spin after each call and would slow the next
                # session's threads)
                t = interleaved({"fp32": lambda sf=sf, feed=feed: sf.run(None, feed),
                                 "int8": lambda si=si, feed=feed: si.run(None, feed)},
                                a.reps, warmup=2)
                t |= interleaved({"torch": eager}, a.reps, warmup=2)
                med = {k: float(np.median(v)) for k, v in t.items()}
                p90 = {k: float(np.percentile(v, 90)) for k, v in t.items()}
                print(f"  batch {batch}: " + "  ".join(
                    f"{k} {med[k]:.2f} [{p90[k]:.2f}]" for k in t)
                    + f"   int8 vs fp32 {med['fp32'] / med['int8']:.2f}×, "
                      f"fp32 vs torch {med['torch'] / med['fp32']:.2f}×")
                if batch == a.batches[-1]:
                    print(f"  int8 kernels run: {kernels(i8, feed)}")


if __name__ == "__main__":
    main()
