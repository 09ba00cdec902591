"""The TensorRT plan contract (docs/artifact.md, "TensorRT plans"): ``model.plan``
plus its sidecar ``model.plan.json``.

The sidecar copies the ONNX metadata and records what built the engine: the ONNX
file's sha256, TensorRT version, GPU and compute capability, precision flags, the
optimization profile and the plan's own sha256. Everything here is pure: reading
and checking a sidecar needs neither TensorRT nor a GPU, so the runtime (which
loads plans) and ``export`` (which writes them) share it from below.

Engines are code: edgediff runs a plan only with its sidecar, only if its bytes
match the recorded sha256, and only where the same TensorRT and GPU built it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgediff.errors import EdgediffError

SIDECAR_FORMAT, SIDECAR_VERSION = "edgediff.plan", 1


def sidecar_path(plan: str | Path) -> Path:
    return Path(f"{plan}.json")


def read_sidecar(plan: str | Path) -> dict[str, Any]:
    path = sidecar_path(plan)
    if not path.is_file():
        raise EdgediffError(f"{plan} has no sidecar {path.name}; edgediff runs only plans it "
                            f"built (engines are code): rebuild with 'edgediff build'")
    try:
        side = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EdgediffError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(side, dict) or side.get("format") != SIDECAR_FORMAT:
        raise EdgediffError(f"{path} is not an edgediff plan sidecar")
    if side.get("format_version", 0) > SIDECAR_VERSION:
        raise EdgediffError(f"{path} has sidecar format {side['format_version']}; upgrade edgediff")
    return side


def check_compatible(sidecar: dict[str, Any], trt_version: str, compute_capability: str,
                     plan: str = "the plan") -> None:
    """TensorRT engines run only on the TensorRT version and GPU architecture that
    built them; say so, and how to fix it, before deserializing."""
    problems = []
    if sidecar["tensorrt_version"] != trt_version:
        problems.append(f"TensorRT {sidecar['tensorrt_version']} built it, this machine has "
                        f"{trt_version}")
    if sidecar["compute_capability"] != compute_capability:
        problems.append(f"it was built for compute capability {sidecar['compute_capability']} "
                        f"({sidecar.get('gpu_name', '?')}), this GPU is {compute_capability}")
    if problems:
        onnx_file = sidecar.get("onnx_file", "model.onnx")
        raise EdgediffError(f"{plan} cannot run here: {'; '.join(problems)}. Rebuild it on this "
                            f"machine: edgediff build {onnx_file} -o {plan} --force")


def check_plan_bytes(sidecar: dict[str, Any], engine: bytes, plan: str = "the plan") -> None:
    """Engines are code: run only the exact bytes ``edgediff build`` wrote."""
    want = sidecar.get("plan_sha256")
    if want is None or hashlib.sha256(engine).hexdigest() != want:
        raise EdgediffError(f"{plan} does not match the sha256 its sidecar records; it was "
                            f"altered or swapped after the build. Rebuild it with "
                            f"'edgediff build'")


def profile_batch_range(sidecar: dict[str, Any]) -> tuple[int, int]:
    """(min, max) batch of the plan's optimization profile."""
    lo, _, hi = sidecar["profiles"][0]["x"]
    return int(lo[0]), int(hi[0])
