"""The decoder stage per image: an SD-VAE-sized AutoencoderKL against TAESD
(AutoencoderTiny), each as ONNX Runtime fp32 and int8 (QDQ) interleaved, then torch
eager on the same module, side by side in one process; median [p90] ms per image,
the ratios, and int8's image error against fp32.

Models, random weights, saved as local diffusers folders and exported by
``edgediff.export.decoder``: diffusers' default Stable Diffusion VAE shape
(block_out_channels 128, 256, 512, 512, 2 layers per block, 4 latent channels, the
mid-block attention) and ``AutoencoderTiny()``'s defaults (TAESD: 64 channels, 3+3+3+1
blocks), both decoding 64×64×4 latents to 512×512 images. The int8 graphs are
calibrated on standard normal latents; their PSNR (peak: the [−1, 1] range's width)
is against the fp32 graph on held-out latents. Random weights make that a figure of
the quantization, not of a real VAE's picture quality.

    python benchmarks/decoder_speed.py [--reps 5] [--size 64] [--calibration 4] [--quick]

``--quick`` is a smoke run of seconds: tiny configs, 8×8 latents, 3 rounds.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edgediff.export.decoder import LatentDecoder, export_decoder, read_vae
from edgediff.hardware import describe_cpu
from edgediff.lab.timing import interleaved

SD_VAE = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
          "down_block_types": ("DownEncoderBlock2D",) * 4,
          "up_block_types": ("UpDecoderBlock2D",) * 4, "latent_channels": 4,
          "norm_num_groups": 32, "sample_size": 512}
TAESD: dict = {}  # AutoencoderTiny's defaults are TAESD's shape
TINY_KL = {**SD_VAE, "block_out_channels": (16, 32), "layers_per_block": 1,
           "down_block_types": ("DownEncoderBlock2D",) * 2,
           "up_block_types": ("UpDecoderBlock2D",) * 2, "norm_num_groups": 8}
TINY_TAESD = {"encoder_block_out_channels": (16,) * 4, "decoder_block_out_channels": (16,) * 4}
QUICK = {"reps": 3, "size": 8, "calibration": 1, "tiny": True}


def write_folder(folder: Path, kind: str, config: dict) -> None:
    import diffusers

    torch.manual_seed(0)
    getattr(diffusers, kind)(**config).save_pretrained(folder, safe_serialization=True)


def session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def measure(name: str, folder: Path, a) -> dict:
    """Export fp32 (validated) and int8, then time one decode per image three ways."""
    size = (a.size, a.size)
    t0 = time.perf_counter()
    info = export_decoder(folder, folder / "fp32.onnx", latent_size=size,
                          validate=a.validate)
    t_fp32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    int8 = export_decoder(folder, folder / "int8.onnx", latent_size=size, precision="int8",
                          calibration=np.random.default_rng(0).standard_normal(
                              (a.calibration, 4, *size)).astype(np.float32), validate=False)
    t_int8 = time.perf_counter() - t0
    _, h, w = info.image_shape
    print(f"{name} ({info.kind}): {info.params / 1e6:.2f} M parameters, "
          f"{info.flops / 1e9:.4g} GFLOP per decode of {a.size}×{a.size}×4 → {h}×{w}; "
          f"export fp32 {t_fp32:.1f} s (validated: {a.validate}), int8 {t_int8:.1f} s")
    z = np.random.default_rng(1).standard_normal((1, 4, *size)).astype(np.float32)
    sessions = {k: session(folder / f"{k}.onnx", a.threads) for k in ("fp32", "int8")}
    vae = read_vae(folder)[0]
    net, zt = LatentDecoder(vae, info.latent_map).eval(), torch.from_numpy(z)

    def eager():
        with torch.no_grad():
            net(zt)
    t = interleaved({k: (lambda s=s: s.run(None, {"z": z})) for k, s in sessions.items()},
                    a.reps, warmup=1)
    t |= interleaved({"torch": eager}, a.reps, warmup=1)  # its own block: OpenMP threads spin
    return {"name": name, "info": info, "times": t,
            "psnr": int8.calibration["error_vs_fp32"]["psnr"],
            "max_abs": int8.calibration["error_vs_fp32"]["max_abs"]}


def report(rows: list[dict]) -> None:
    print(f"\n{'decoder':<8} {'params':>8} {'GFLOP':>8}  {'ORT fp32':>18} {'ORT int8':>18} "
          f"{'torch eager':>18}  {'int8 vs fp32':>12} {'fp32 vs torch':>13} "
          f"{'int8 PSNR dB':>12}")
    for r in rows:
        t = r["times"]
        med = {k: float(np.median(v)) for k, v in t.items()}
        p90 = {k: float(np.percentile(v, 90)) for k, v in t.items()}
        cells = "  ".join(f"{med[k]:>8.1f} [{p90[k]:>7.1f}]" for k in ("fp32", "int8", "torch"))
        print(f"{r['name']:<8} {r['info'].params / 1e6:>6.2f} M {r['info'].flops / 1e9:>8.4g}  "
              f"{cells}  {med['fp32'] / med['int8']:>11.2f}× {med['torch'] / med['fp32']:>12.2f}× "
              f"{r['psnr']:>12.1f}")
    kl, tiny = (float(np.median(r["times"]["fp32"])) for r in rows)
    print(f"\nms per image, median [p90] over {len(rows[0]['times']['fp32'])} rounds; "
          f"SD-VAE / TAESD time, ORT fp32: {kl / tiny:.2f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=64, help="latent side (image side: 8×)")
    ap.add_argument("--calibration", type=int, default=4, help="latents to calibrate int8 on")
    ap.add_argument("--tiny", action="store_true", help="tiny configs instead of full size")
    ap.add_argument("--no-validate", dest="validate", action="store_false",
                    help="skip the fp32 exports' validation against torch")
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    if ap.parse_known_args()[0].quick:
        ap.set_defaults(**QUICK)
    a = ap.parse_args()
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    torch.set_num_threads(a.threads)
    print(f"CPU: {describe_cpu()}; onnxruntime {ort.__version__}, torch {torch.__version__}, "
          f"{a.threads} threads")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, config in (("SD-VAE", "AutoencoderKL", TINY_KL if a.tiny else SD_VAE),
                                   ("TAESD", "AutoencoderTiny", TINY_TAESD if a.tiny else TAESD)):
            folder = Path(tmp) / name
            write_folder(folder, kind, config)
            rows.append(measure(name, folder, a))
    report(rows)


if __name__ == "__main__":
    main()
