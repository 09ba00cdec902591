"""A DiT-S/2-shaped diffusers transformer from folder to ONNX, and one denoiser call
three ways side by side in one process: ONNX Runtime fp32 and int8 (QDQ) interleaved,
then torch eager on the same network; median [p90] ms per call, and the ratios.

Model: diffusers ``DiTTransformer2DModel`` in DiT-S/2's shape (Peebles & Xie 2023,
Table 1: hidden 384 = 6 heads × 64, depth 12, patch 2) on a 32×32×4 latent, 1000
classes, learned variance (8 output channels), random weights; saved as a local
pipeline folder with a DDIM scheduler and read by ``edgediff``'s DiT reader. The int8
graph is calibrated on its default solver's own calls and must pass the export's
quality gate (RMS of int8 − fp32 per σ and end to end); if it fails, the int8 row is
timed anyway and the output says it is a speed figure only.

    python benchmarks/dit_speed.py [--reps 10] [--batches 1 8] [--quick]

``--quick`` is a smoke run of seconds: a tiny DiT (2 heads × 8, depth 2, 8×8 input),
batch 1, 3 rounds, 1 calibration sample, no fp32 validation and no int8 quality gate.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.hardware import describe_cpu
from edgediff.lab.speed import int8_for_timing
from edgediff.lab.timing import interleaved
from edgediff.models.loader import resolve_source

DIT_S2 = {"num_attention_heads": 6, "attention_head_dim": 64, "num_layers": 12,
          "patch_size": 2, "sample_size": 32, "in_channels": 4, "out_channels": 8,
          "num_embeds_ada_norm": 1000}
TINY = {**DIT_S2, "num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 2,
        "sample_size": 8, "num_embeds_ada_norm": 10}
QUICK = {"reps": 3, "batches": [1], "calibration": 1, "tiny": True, "gate": False,
         "validate": False}


def write_folder(folder: Path, shape: dict) -> int:
    """A DiT pipeline folder (transformer/ and scheduler/); returns its parameter count."""
    from diffusers import DDIMScheduler, DiTTransformer2DModel

    torch.manual_seed(0)
    dit = DiTTransformer2DModel(**shape)
    dit.save_pretrained(folder / "transformer", safe_serialization=True)
    DDIMScheduler(num_train_timesteps=1000, clip_sample=False).save_pretrained(
        folder / "scheduler")
    return sum(p.numel() for p in dit.parameters())


def ops_of(path: Path) -> str:
    proto = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    opset = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    shown = ", ".join(f"{k} {ops[k]}" for k in ("MatMul", "Softmax", "LayerNormalization",
                                                "Gemm", "Einsum") if ops[k])
    return f"opset {opset[0]}, {sum(ops.values())} nodes ({shown})"


def session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def speed(paths: dict, net, shape: tuple, batch: int, a) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    s, y = np.full(batch, 2.0, np.float32), (np.arange(batch) % 10).astype(np.int64)
    feed = {"x": x, "sigma": s, "class_labels": y}
    sessions = {k: session(p, a.threads) for k, p in paths.items()}
    xt, st, yt = torch.from_numpy(x), torch.from_numpy(s), torch.from_numpy(y)

    def eager():
        with torch.no_grad():
            net(xt, st, yt)
    t = interleaved({k: (lambda se=se: se.run(None, feed)) for k, se in sessions.items()},
                    a.reps, warmup=2)
    t |= interleaved({"torch": eager}, a.reps, warmup=2)  # its own block: OpenMP threads spin
    med = {k: float(np.median(v)) for k, v in t.items()}
    p90 = {k: float(np.percentile(v, 90)) for k, v in t.items()}
    print(f"  batch {batch}, ms per call: " + "  ".join(
        f"{k} {med[k]:.2f} [{p90[k]:.2f}]" for k in t)
        + f"   int8 vs fp32 {med['fp32'] / med['int8']:.2f}×, fp32 vs torch "
          f"{med['torch'] / med['fp32']:.2f}×, int8 vs torch {med['torch'] / med['int8']:.2f}×")
    d32, d8 = (sessions[k].run(None, feed)[0] for k in ("fp32", "int8"))
    print(f"  int8 vs fp32 at σ = 2: max |ΔD| {np.abs(d8 - d32).max():.3g}, RMS "
          f"{np.sqrt(np.mean((d8 - d32) ** 2)):.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--calibration", type=int, default=4,
                    help="samples of the default solver (DDIM 50) to calibrate int8 on")
    ap.add_argument("--tiny", action="store_true", help="2 heads × 8, depth 2, 8×8 input")
    ap.add_argument("--no-validate", dest="validate", action="store_false",
                    help="skip the fp32 export's validation against torch")
    ap.add_argument("--no-gate", dest="gate", action="store_false",
                    help="skip the int8 quality gate (time the int8 graph as a speed figure only)")
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"CPU: {describe_cpu()}; onnxruntime {ort.__version__}, torch {torch.__version__}, "
          f"{a.threads} threads")
    shape = TINY if a.tiny else DIT_S2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        params = write_folder(tmp / "dit", shape)
        print(f"{'tiny DiT' if a.tiny else 'DiT-S/2'} (DiTTransformer2DModel, "
              f"{shape['num_attention_heads']} heads × {shape['attention_head_dim']}, depth "
              f"{shape['num_layers']}, {shape['sample_size']}×{shape['sample_size']}×4, "
              f"{shape['num_embeds_ada_norm']} classes, learned σ): {params / 1e6:.1f} M "
              f"parameters")
        model, digest = resolve_source(str(tmp / "dit"))
        t0 = time.perf_counter()
        check = export_onnx(model, tmp / "fp32.onnx", ExportOptions(validate=a.validate),
                            source_sha256=digest)
        print(f"fp32 export (validated: {a.validate}): {time.perf_counter() - t0:.1f} s; "
              f"{ops_of(tmp / 'fp32.onnx')}; {check}")
        print(int8_for_timing(model, digest, tmp / "int8.onnx", a.calibration, a.gate))
        net = model.denoiser.float().eval()
        for batch in a.batches:
            speed({"fp32": tmp / "fp32.onnx", "int8": tmp / "int8.onnx"}, net,
                  model.sample_shape, batch, a)


if __name__ == "__main__":
    main()
