"""ONNX → TensorRT engine (``model.plan``) with its sidecar ``model.plan.json``.

Every decision that needs no GPU is a pure function here, tested on any
machine: the optimization profile, the build settings, the precision flags and
the sidecar. What a plan must satisfy to run (sidecar format, compatibility,
plan hash, profile range) is the contract in ``edgediff.plan``, shared with the
runtime that loads plans. Only ``build_engine`` touches TensorRT / CUDA,
imported lazily (TensorRT Python API 10.x; cuda-python).

Engines are code: edgediff loads a plan only with its sidecar, and only one the
user chose to trust.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgediff.artifact import ArtifactInfo
from edgediff.errors import EdgediffError, missing_extra
from edgediff.fileio import atomic_path, sha256_of
from edgediff.graph import GraphInput, graph_inputs, profile_shapes
from edgediff.metadata import PREFIX
from edgediff.plan import SIDECAR_FORMAT, SIDECAR_VERSION, sidecar_path


@dataclass(frozen=True)
class BuildSettings:
    """What the builder is told. Jetson boards share little memory with the CPU:
    keep ``workspace_mib`` small there (256–512)."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 16
    fp16: bool = False
    tf32: bool = True
    workspace_mib: int = 1024
    timing_cache: str | None = None
    int8: bool = False  # explicit quantization: set from the graph's Q/DQ nodes (qdq_mode)

    def __post_init__(self):
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise EdgediffError(f"batch sizes must satisfy 1 ≤ min ≤ opt ≤ max, got "
                                f"{self.min_batch}, {self.opt_batch}, {self.max_batch}")
        if self.workspace_mib < 16:
            raise EdgediffError(f"a workspace of {self.workspace_mib} MiB is too small; give at "
                                f"least 16 MiB")


def plan_profile(inputs: Sequence[GraphInput], settings: BuildSettings
                 ) -> dict[str, tuple[tuple[int, ...], ...]]:
    """The one optimization profile: (min, opt, max) shapes of every graph input
    (``edgediff.graph.graph_inputs``: x, σ, a conditional graph's class_labels and a
    --guidance graph's guidance), over the batch sizes of ``settings``."""
    return profile_shapes(inputs, (settings.min_batch, settings.opt_batch, settings.max_batch))


def metadata_inputs(onnx_path: str | Path, metadata: dict[str, str]) -> tuple[GraphInput, ...]:
    """The graph's inputs, from its edgediff metadata."""
    return graph_inputs(ArtifactInfo.from_props(metadata, where=str(onnx_path)))


def precision_flags(settings: BuildSettings) -> list[str]:
    """The builder flags to set, by name: FP16 and TF32 as asked, and INT8 for a Q/DQ
    graph. (TensorRT 10.3, which JetPack 6 ships, needs INT8 set to run a weakly
    typed network's Q/DQ layers in int8; later versions accept it.)"""
    return [name for name, on in (("fp16", settings.fp16), ("tf32", settings.tf32),
                                  ("int8", settings.int8)) if on]


def qdq_mode(nodes: list[tuple[str, str]], zero_points: dict[str, Any]) -> bool:
    """Whether a graph is explicitly quantized, from its (op type, name) nodes and its
    Q/DQ zero points by name; refuses what TensorRT cannot run. TensorRT's int8 is
    symmetric and signed: every zero point must be int8 and 0 (``--int8-target
    tensorrt`` exports are; the ONNX Runtime target's uint8 activations are not)."""
    import numpy as np

    if not any(op in ("QuantizeLinear", "DequantizeLinear") for op, _ in nodes):
        return False
    for name, zp in zero_points.items():
        zp = np.asarray(zp)
        if zp.dtype != np.int8 or np.any(zp != 0):
            raise EdgediffError(f"the Q/DQ graph's zero point {name} is {zp.dtype} "
                                f"{'non-zero' if np.any(zp != 0) else 'zero'}; TensorRT runs "
                                f"only symmetric int8 (zero points int8 0): re-export with "
                                f"'edgediff export --int8 --int8-target tensorrt'")
    return True


def graph_qdq(onnx_path: str | Path) -> bool:
    """``qdq_mode`` of an ONNX file."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise missing_extra("onnx", "torch") from None
    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as e:  # protobuf's DecodeError and friends
        raise EdgediffError(f"{onnx_path} is not an ONNX model ({e})") from None
    consts = {t.name: t for t in graph.initializer}
    zero_points = {}
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 \
                and n.input[2] in consts:
            zero_points[n.input[2]] = numpy_helper.to_array(consts[n.input[2]])
    return qdq_mode([(n.op_type, n.name) for n in graph.node], zero_points)


def make_sidecar(onnx_path: str | Path, metadata: dict[str, str], settings: BuildSettings,
                 trt_version: str, gpu_name: str, compute_capability: str) -> dict[str, Any]:
    """The sidecar (docs/artifact.md, "TensorRT plans"): the ONNX metadata plus how and
    where it was built."""
    return {
        "format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION,
        "onnx_sha256": sha256_of(onnx_path),
        "onnx_file": Path(onnx_path).name,
        "metadata": {k: v for k, v in metadata.items() if k.startswith(PREFIX)},
        "tensorrt_version": trt_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "precision": precision_flags(settings),
        "profiles": [{k: [list(s) for s in v] for k, v in plan_profile(
            metadata_inputs(onnx_path, metadata), settings).items()}],
        "settings": asdict(settings),
    }


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_plan(plan: Path, engine: bytes, sidecar: dict[str, Any]) -> None:
    """Sidecar first, plan last: a plan on disk always has its sidecar, which
    records the plan's sha256 so a swapped or altered engine is refused."""
    sidecar = {**sidecar, "plan_sha256": hashlib.sha256(engine).hexdigest()}
    _atomic_write(sidecar_path(plan), (json.dumps(sidecar, indent=1) + "\n").encode())
    try:
        _atomic_write(plan, engine)
    except BaseException:
        sidecar_path(plan).unlink(missing_ok=True)
        raise


def build_engine(onnx_path: str | Path, metadata: dict[str, str], settings: BuildSettings
                 ) -> tuple[bytes, dict[str, Any]]:
    """Parse the ONNX file, build a serialized engine, return it with its sidecar."""
    try:
        import tensorrt as trt
    except ImportError:
        raise missing_extra("tensorrt", "trt") from None
    from edgediff.runtime.backends.tensorrt import gpu_identity

    gpu_name, cc = gpu_identity()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgediffError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    if settings.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if settings.int8:  # explicit quantization: the Q/DQ scales are the graph's own
        config.set_flag(trt.BuilderFlag.INT8)
    if not settings.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    shapes = plan_profile(metadata_inputs(onnx_path, metadata), settings)
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and
                                       cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise EdgediffError(f"TensorRT failed to build an engine from {onnx_path} (see its log "
                            f"above); a larger --workspace-mib may help")
    if cache_path:
        _atomic_write(cache_path, bytes(config.get_timing_cache().serialize()))
    sidecar = make_sidecar(onnx_path, metadata, settings, trt.__version__, gpu_name, cc)
    return bytes(engine), sidecar


def build_plan(onnx_path: str | Path, out: str | Path, settings: BuildSettings,
               metadata_overrides: dict | None = None, *, force: bool = False
               ) -> tuple[dict[str, Any], int]:
    """``edgediff build``: read and check the ONNX file's metadata (with overrides for
    graphs edgediff did not export), set INT8 for a Q/DQ graph, build, and write the
    plan with its sidecar. Returns (sidecar, plan size in bytes)."""
    from dataclasses import replace

    from edgediff.runtime.backends.ort import read_onnx_metadata

    out = Path(out)
    if out.exists() and not force:
        raise EdgediffError(f"{out} exists; pass --force to overwrite it")
    if not out.resolve().parent.is_dir():
        raise EdgediffError(f"cannot write {out}: its folder does not exist")
    metadata = read_onnx_metadata(onnx_path, metadata_overrides)
    settings = replace(settings, int8=graph_qdq(onnx_path))  # Q/DQ: int8
    engine, sidecar = build_engine(onnx_path, metadata, settings)
    write_plan(out, engine, sidecar)
    return sidecar, len(engine)
