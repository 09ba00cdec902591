"""ONNX → TensorRT engine (``model.plan``) with its sidecar ``model.plan.json``.

Every decision that needs no GPU is a pure function here, tested on any
machine: the optimization profile, the build settings, the sidecar, and the
compatibility check that stops a plan built by another TensorRT version or for
another compute capability with a "rebuild" message instead of a
deserialization crash. Only ``build_engine`` and ``gpu_identity`` touch
TensorRT / CUDA, imported lazily (TensorRT Python API 10.x; cuda-python).

Engines are code: edgediff loads a plan only with its sidecar, and only one the
user chose to trust.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgediff.artifact import PREFIX
from edgediff.errors import EdgediffError, missing_extra
from edgediff.fileio import atomic_path

SIDECAR_FORMAT, SIDECAR_VERSION = "edgediff.plan", 1


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


def plan_profile(sample_shape: tuple[int, ...], settings: BuildSettings,
                 per_sample: tuple[str, ...] = ("sigma",)
                 ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """The one optimization profile: (min, opt, max) shapes of each input — x, and
    the inputs with one value per sample (σ; a conditional graph's class_labels and
    a --guidance graph's guidance)."""
    shape = tuple(int(n) for n in sample_shape)
    if not shape or any(n < 1 for n in shape):
        raise EdgediffError(f"bad sample shape {sample_shape}")
    b = (settings.min_batch, settings.opt_batch, settings.max_batch)
    return {"x": tuple((n, *shape) for n in b),
            **{name: tuple((n,) for n in b) for name in per_sample}}


def per_sample_inputs(metadata: dict[str, str]) -> tuple[str, ...]:
    """The graph's inputs besides x, from its edgediff metadata."""
    cond = json.loads(metadata.get(PREFIX + "conditioning", "null") or "null")
    return ("sigma",) + (("class_labels",) if cond else ()) + (
        ("guidance",) if cond and cond.get("guidance_input") else ())


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


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_sidecar(onnx_path: str | Path, metadata: dict[str, str], settings: BuildSettings,
                 trt_version: str, gpu_name: str, compute_capability: str) -> dict[str, Any]:
    """The sidecar (DESIGN.md §4): the ONNX metadata plus how and where it was built."""
    sample_shape = json.loads(metadata[PREFIX + "sample_shape"])
    return {
        "format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION,
        "onnx_sha256": file_sha256(onnx_path),
        "onnx_file": Path(onnx_path).name,
        "metadata": {k: v for k, v in metadata.items() if k.startswith(PREFIX)},
        "tensorrt_version": trt_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "precision": precision_flags(settings),
        "profiles": [{k: [list(s) for s in v] for k, v in plan_profile(
            sample_shape, settings, per_sample_inputs(metadata)).items()}],
        "settings": asdict(settings),
    }


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


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of device 0, via cuda-python."""
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
    except ImportError:
        raise missing_extra("cuda-python", "trt") from None
    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise EdgediffError(f"no usable CUDA device (cudaGetDeviceProperties: {err})")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}.{props.minor}"


def build_engine(onnx_path: str | Path, metadata: dict[str, str], settings: BuildSettings,
                 log=None) -> tuple[bytes, dict[str, Any]]:
    """Parse the ONNX file, build a serialized engine, return it with its sidecar."""
    try:
        import tensorrt as trt
    except ImportError:
        raise missing_extra("tensorrt", "trt") from None
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
    shapes = plan_profile(json.loads(metadata[PREFIX + "sample_shape"]), settings,
                          per_sample_inputs(metadata))
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
