"""Export validation figures for every parameterization, fp32 and fp16.

A small U-Net (8×8, 16 channels, attention at 4×4, weights perturbed so no
output layer is zero) under each preconditioner goes through the full
``export_onnx`` pipeline; printed: the validation's max abs / max rel error, the
worst element as a fraction of its tolerance, and, for fp16, the end-to-end
check (final samples of Heun vs the float32 torch model). The bundled model
and the exact mixture are included as they ship.

    python benchmarks/export_validation.py [--quick]

``--quick`` exports two cases (the EDM U-Net and the exact mixture), a smoke run
of seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from edgediff.discrete import DiscreteSchedule
from edgediff.errors import EdgediffError
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.models.checkpoint import LoadedModel, build_denoiser, make_config
from edgediff.models.loader import resolve_source
from edgediff.schedules import EDMSchedule, VESchedule, VPSchedule

UNET = {"img_resolution": 8, "in_channels": 1, "out_channels": 1, "model_channels": 16,
        "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4]}
SCHEDULES = {"edm": EDMSchedule(), "vp": VPSchedule(), "ve": VESchedule(),
             "epsilon": DiscreteSchedule.from_betas(), "v_prediction":
             DiscreteSchedule.from_betas(), "sample": DiscreteSchedule.from_betas()}


def small_unet(parameterization: str) -> tuple[LoadedModel, str]:
    """The model and its source digest: "unknown", its weights come from no file."""
    config = make_config("unet", UNET, parameterization, SCHEDULES[parameterization], (1, 8, 8))
    torch.manual_seed(0)
    denoiser, schedule = build_denoiser(config)
    with torch.no_grad():
        for p in denoiser.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return LoadedModel(denoiser, config, schedule), "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two cases, a smoke run")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cases = [(f"unet-{p}", small_unet) for p in SCHEDULES]
    cases += [("bundled digits (edm)", lambda _p: resolve_source("bundled")),
              ("exact mixture (analytic)", lambda _p: resolve_source("mixture2d"))]
    if args.quick:
        cases = [cases[0], cases[-1]]
    print(f"{'model':<26}{'prec':<6}{'max abs':>10}{'max rel':>10}{'worst/tol':>10}"
          f"{'e2e max abs':>13}{'e2e RMS':>10}{'s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in cases:
            for fp16 in (False, True):
                model, digest = make(name.removeprefix("unet-"))
                path = Path(tmp) / "m.onnx"
                t0 = time.perf_counter()
                try:
                    v = export_onnx(model, path, ExportOptions(force=True, fp16=fp16),
                                    source_sha256=digest)
                except EdgediffError as e:
                    print(f"{name:<26}{'fp16' if fp16 else 'fp32':<6}  {e}")
                    continue
                e2e = v.end_to_end or {}
                print(f"{name:<26}{'fp16' if fp16 else 'fp32':<6}{v.max_abs:>10.2e}"
                      f"{v.max_rel:>10.2e}{v.worst:>10.2f}"
                      f"{e2e.get('max_abs', float('nan')):>13.2e}"
                      f"{e2e.get('rms', float('nan')):>10.2e}{time.perf_counter() - t0:>6.1f}")


if __name__ == "__main__":
    main()
