"""What this CPU can do, from ``/proc/cpuinfo``: the flags that decide which
reduced-precision kernels are worth asking for, and the one line a speed figure
names beside it (docs/design.md, "Measuring")."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

# the flags a figure is read against: wide vectors, int8 dot products, bf16
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
               "amx_int8", "asimddp", "bf16")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``); empty if unknown."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags |= set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset(flags)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_cpu(flags: frozenset[str] | None = None) -> str:
    """One line: model, cores this process may use, and the speed-relevant flags."""
    flags = cpu_flags() if flags is None else flags
    have = [f for f in SPEED_FLAGS if f in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    shown = " ".join(have) or "none of " + "/".join(SPEED_FLAGS)
    return f"{cpu_model()}, {cores} cores; flags: {shown}"


def has_bf16(flags: frozenset[str] | None = None) -> bool:
    """Native bf16 arithmetic (AVX512_BF16 or AMX-BF16 on x86, BF16 on ARM)."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
