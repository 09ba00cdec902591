"""Peak memory of decoding one large latent, whole vs in tiles (edgediff.runtime.tiling).

A random AutoencoderKL (mid-sized: SD-VAE's layout at half its channels, one
layer per block; --quick: a tiny one) is exported to a decoder graph; then a
[1, 4, L, L] latent (L = 128: a 1024² image) is decoded by ONNX Runtime in a fresh
child process each way — whole, and in T×T tiles overlapping by O — and each child
reports its peak RSS (/proc VmHWM), its RSS once the session is open (the
baseline: weights and runtime), and the decode's wall time. Then the max and mean
|tiled − untiled| over the image (range [−1, 1]): a VAE decoder's GroupNorm and
mid-block attention see only the tile, so the two differ (docs/latent.md).

    python benchmarks/tiled_decode.py             # L 128, T 32, O 8
    python benchmarks/tiled_decode.py --quick     # tiny VAE, L 32, T 16, O 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MID_KL = {"block_out_channels": (64, 128, 256, 256), "layers_per_block": 1,
          "down_block_types": ("DownEncoderBlock2D",) * 4,
          "up_block_types": ("UpDecoderBlock2D",) * 4, "latent_channels": 4,
          "norm_num_groups": 32}
TINY_KL = {"block_out_channels": (8, 16), "layers_per_block": 1,
           "down_block_types": ("DownEncoderBlock2D",) * 2,
           "up_block_types": ("UpDecoderBlock2D",) * 2, "latent_channels": 4,
           "norm_num_groups": 4}


def child(decoder: str, latent: int, tile: int, overlap: int, out: str) -> None:
    """Decode in this process (torch-free: ONNX Runtime and NumPy only); print JSON."""
    from edgediff.runtime import BackendOptions
    from edgediff.runtime.decoder import open_decoder
    from edgediff.runtime.tiling import Tiling, decode_tiled

    dec = open_decoder(decoder, BackendOptions(threads=int(os.environ.get("THREADS", "2"))))
    base = _proc_mib("VmRSS")
    z = np.random.default_rng(0).standard_normal((1, 4, latent, latent)).astype(np.float32)
    start = time.perf_counter()
    image = dec(z) if tile == 0 else decode_tiled(dec, z, dec.info.upscale, Tiling(tile, overlap))
    seconds = time.perf_counter() - start
    np.save(out, image)
    print(json.dumps({"peak_mib": _proc_mib("VmHWM"), "base_mib": base, "seconds": seconds,
                      "shape": list(image.shape)}))


def _proc_mib(key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MiB. Not getrusage's ru_maxrss:
    Linux keeps that across execve, so a child would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny VAE, 32² latent")
    ap.add_argument("--child", nargs=5, metavar=("DECODER", "L", "T", "O", "OUT"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        d, latent, tile, overlap, out = args.child
        return child(d, int(latent), int(tile), int(overlap), out)

    import torch
    from diffusers import AutoencoderKL

    from edgediff.export.decoder import export_decoder

    config, latent, tile, overlap = ((TINY_KL, 32, 16, 4) if args.quick
                                     else (MID_KL, 128, 32, 8))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        AutoencoderKL(**config).save_pretrained(tmp / "vae", safe_serialization=True)
        t0 = time.perf_counter()
        info = export_decoder(tmp / "vae", tmp / "decoder.onnx", latent_size=(tile, tile),
                              validate=False)
        print(f"decoder: AutoencoderKL {info.params / 1e6:.2f} M parameters, "
              f"{info.flops / 1e9 * (latent / tile) ** 2:.4g} GFLOP per {latent}² latent "
              f"(exported in {time.perf_counter() - t0:.1f} s)", flush=True)
        results = {}
        for name, t in (("untiled", 0), (f"tiled {tile}/{overlap}", tile)):
            out = tmp / f"{t}.npy"
            res = subprocess.run([sys.executable, __file__, "--child", str(tmp / "decoder.onnx"),
                                  str(latent), str(t), str(overlap), str(out)],
                                 capture_output=True, text=True, check=False)
            if res.returncode:
                sys.exit(f"{name} child failed:\n{res.stderr[-3000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            results[name] = np.load(out)
            side = latent * info.upscale
            print(f"{name:<14}{side}×{side}  peak RSS {r['peak_mib']:.1f} MiB  "
                  f"(session open: {r['base_mib']:.1f} MiB)  {r['seconds']:.2f} s", flush=True)
        a, b = results.values()
        diff = np.abs(a - b)
        print(f"tiled vs untiled: max abs {diff.max():.4g}, mean abs {diff.mean():.4g} "
              f"(image range [-1, 1]; random weights)")


if __name__ == "__main__":
    main()
