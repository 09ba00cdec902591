"""What the speed benchmarks share: an int8 graph to time, behind its quality gate
or, when the gate fails or is skipped, past it with a line that says so (a speed
figure only: every reduced precision passes its gate before it is called faster)."""

from __future__ import annotations

import time
from pathlib import Path

from edgediff.errors import EdgediffError
from edgediff.export.int8 import Int8Options
from edgediff.export.onnx import ExportOptions, export_onnx
from edgediff.models.checkpoint import LoadedModel


def int8_for_timing(model: LoadedModel, digest: str, out: Path, calibration: int,
                    gate: bool = True) -> str:
    """Write ``model``'s int8 graph to ``out``; return the line to print: export time
    and the gate's verdict (the export's own: RMS of int8 − fp32 within the default
    tolerance). Random weights often fail it: the graph is then written with the
    gate opened wide, and the line says its times are a speed figure only."""
    t0 = time.perf_counter()
    verdict = "not run (--no-gate)"
    if gate:
        try:
            check = export_onnx(model, out, ExportOptions(validate=False, int8=Int8Options(
                calibration=calibration)), source_sha256=digest)
            return (f"int8 export: {time.perf_counter() - t0:.1f} s; quality gate passed: "
                    f"{check}")
        except EdgediffError as e:
            verdict = f"FAILED: {e}"
    export_onnx(model, out, ExportOptions(validate=False, force=True, int8=Int8Options(
        calibration=calibration, tolerance=1e9)), source_sha256=digest)
    return (f"int8 export: {time.perf_counter() - t0:.1f} s; quality gate {verdict}; so the "
            f"int8 times below are a speed figure only, not a usable model")
