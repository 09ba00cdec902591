"""Every benchmark runs: each file in benchmarks/ (found by globbing) runs with
``--quick`` in a fresh folder, exits 0, and prints the line its claim rests on.

A new benchmark cannot land broken: it is found here whether or not anyone
remembered it, and it fails until ``EXPECT`` says what its quick run must print.
The patterns check shape, not values (quick runs are too short for the values
to mean anything): a ratio, a table row of finite numbers, a verdict. A benchmark
that imports an extra this environment lacks (or stops on one edgediff imports
for it) skips with the install line; no quick run needs a GPU.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgediff.errors import EXTRAS

ROOT = Path(__file__).parents[2]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))
NUM = r"[0-9]+(?:\.[0-9]+)?(?:e[-+][0-9]+)?"

# what each benchmark's quick run prints, as regular expressions (multiline)
EXPECT = {
    "cpu_engines": [r"^.+, \d+ cores; flags: .+$",
                    rf"^  ort fp32\s+{NUM} \[{NUM}\]\s+{NUM}×$",
                    rf"^  openvino f32\s+{NUM} \[{NUM}\]\s+{NUM}×$",
                    rf"^  openvino bf16\s+({NUM} \[{NUM}\]\s+{NUM}×|skipped: .+)$",
                    rf"^  ort int8\s+{NUM} / {NUM}(\s+{NUM} / {NUM}){{2}}\s+"
                    r"gate: (pass|warn|fail)"],
    "decoder_speed": [r"^CPU: .*; flags: ",
                      rf"^SD-VAE \(AutoencoderKL\): {NUM} M parameters, {NUM} GFLOP per decode "
                      rf"of 8×8×4 → 16×16; export fp32 {NUM} s \(validated: True\)",
                      *(rf"^{name}\s+{NUM} M\s+{NUM}(\s+{NUM} \[\s*{NUM}\]){{3}}\s+{NUM}×\s+"
                        rf"{NUM}×\s+{NUM}$" for name in ("SD-VAE", "TAESD"))],
    "digits_quality": [rf"^7-NFE Heun samples vs held-out\s+\d+\s+{NUM}$",
                       rf"^real half A vs real half B\s+\d+\s+{NUM}$"],
    "distilled": [r"^CPU: .*; flags: ",
                  rf"^bundled-cd cm \(preset\)\s+2\s+{NUM}\s+{NUM}×\s+{NUM}\s+{NUM}×\s+{NUM}$",
                  rf"^teacher heun\s+35\s+{NUM}\s+{NUM}×",
                  rf"^2 steps: FD {NUM} = {NUM}× Heun-35's {NUM}, {NUM}× faster: goal "
                  r"\(within 25 %\) (met|NOT met)$"],
    "edm_snapshot": [rf"^export \(edgediff export, child process\): {NUM} s, peak RSS {NUM} MiB$",
                     rf"batch 1, ms per sample: fp32 {NUM} \[{NUM}\]\s+int8 {NUM} \[{NUM}\]\s+"
                     rf"torch {NUM} \[{NUM}\].*int8 vs fp32 {NUM}×, fp32 vs torch {NUM}×, "
                     rf"int8 vs torch {NUM}×$",
                     r"^samples: 2 × Heun 2 \(3 calls\) in .*, finite True,"],
    "dit_speed": [rf"^fp32 export \(validated: (True|False)\): {NUM} s; opset 17, ",
                  rf"batch 1, ms per call: fp32 {NUM} \[{NUM}\]\s+int8 {NUM} \[{NUM}\]\s+"
                  rf"torch {NUM} \[{NUM}\].*int8 vs fp32 {NUM}×, fp32 vs torch {NUM}×, "
                  rf"int8 vs torch {NUM}×$",
                  r"^int8 export: .*quality gate (passed|FAILED|not run)"],
    "export_validation": [rf"^unet-edm\s+fp32\s+{NUM}\s+{NUM}\s+{NUM}",
                          rf"^unet-edm\s+fp16\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}"],
    "generate_throughput": [rf"^Ray, 2 workers\s+{NUM}\s+\[{NUM}\]\s+{NUM}\s+{NUM}x$",
                            r"^identical files in every configuration: True$"],
    "guidance_quality": [rf"^unconditional \(null\)\s+-\s+{NUM}$", rf"^2\s+{NUM}\s+{NUM}$",
                         rf"^\(0\.28, 2\.9\]\s+{NUM}\s+{NUM}\s+\d+$"],
    "guidance_speed": [rf"^digits \(conditional, shipped\)\s+1\s+{NUM} \[{NUM}\]\s+{NUM} "
                       rf"\[{NUM}\]\s+{NUM}×$"],
    "int8_quality": [rf"^int8, trajectory\s+{NUM} \({NUM}\)\s+{NUM}(\s+{NUM}){{3}}$"],
    "int8_speed": [rf"batch 1: fp32 {NUM} \[{NUM}\]\s+int8 {NUM} \[{NUM}\]\s+torch {NUM} "
                   rf"\[{NUM}\]\s+int8 vs fp32 {NUM}×, fp32 vs torch {NUM}×",
                   r"int8 kernels run: integer \{'QGemm'"],
    "parity": [rf"^heun\s+5\s+{NUM}\s+{NUM}$", rf"^unipc\s+order=3\s+5\s+{NUM}\s+{NUM}$"],
    "serve_load": [r"^CPU: .*; flags: ",
                   *(rf"^{mode}\s+{NUM} \[\s*{NUM}\](\s+{NUM}){{4}}\s+\d+%\s+0$"
                     for mode in ("step", "request", "single")),
                   rf"^4\s+\d+(\s+{NUM} /\s*{NUM}){{3}}$",
                   rf"^step vs request: throughput {NUM}× \(round by round: {NUM}\), p99 of "
                   rf"4-step requests {NUM}× lower; step vs single: throughput {NUM}×$",
                   r"^goal \(step beats request on throughput and short-request p99\): "
                   r"(met|NOT met)$",
                   r"every server exited 0 on SIGTERM$"],
    "tiled_decode": [rf"^untiled\s+\d+×\d+  peak RSS {NUM} MiB  \(session open: {NUM} MiB\)  "
                     rf"{NUM} s$",
                     rf"^tiled \d+/\d+\s+\d+×\d+  peak RSS {NUM} MiB  \(session open: {NUM} "
                     rf"MiB\)  {NUM} s$",
                     rf"^tiled vs untiled: max abs {NUM}, mean abs {NUM} "],
    "runtime_vs_torch": [rf"^\s+1\s+{NUM} \[{NUM}\]\s+{NUM} \[{NUM}\]\s+{NUM}x\s+{NUM}\s+{NUM}"],
    "tuned_grids": [r"^CPU: .*; flags: ",
                    rf"^dpmpp_3m\(published\)\s+5(\s+{NUM}){{4}}\s+\d+  {NUM} ",
                    rf"^heun \(default grid\)\s+35\s+{NUM}$",
                    rf"^best at 5 NFE: .*, tuned FD {NUM} = {NUM}× Heun-35's {NUM}: goal "
                    r"\(within 10 %\) (met|NOT met)$"],
}


def absent_extras(script: Path) -> list[str]:
    """The install lines of the extras this script imports (anywhere in it) that are absent."""
    names = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return [f'{EXTRAS[n][0]} (pip install "edgediff[{EXTRAS[n][1]}]")' for n in sorted(names)
            if n in EXTRAS and importlib.util.find_spec(n) is None]


def missing_module(out: str) -> str | None:
    """An optional module whose absence stopped the run (imported through edgediff)."""
    found = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", out)
    name = found and found.group(1).split(".")[0]
    if name in EXTRAS and importlib.util.find_spec(name) is None:
        return f'{EXTRAS[name][0]} (pip install "edgediff[{EXTRAS[name][1]}]")'
    return None


def test_every_benchmark_says_what_its_quick_run_prints():
    assert BENCHMARKS, "no benchmarks found"
    missing = sorted({p.stem for p in BENCHMARKS} - set(EXPECT))
    assert missing == [], f"add the lines these benchmarks' --quick runs print to EXPECT: {missing}"
    stale = sorted(set(EXPECT) - {p.stem for p in BENCHMARKS})
    assert stale == []


def test_an_absent_extra_is_named_with_its_install_line(tmp_path, monkeypatch):
    script = tmp_path / "b.py"
    script.write_text("import numpy\n\ndef f():\n    from diffusers import UNet2DModel\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "diffusers" else real(name, *a))
    line = 'diffusers (pip install "edgediff[diffusers]")'
    assert absent_extras(script) == [line]
    assert missing_module("ModuleNotFoundError: No module named 'diffusers.models'") == line
    assert missing_module("ModuleNotFoundError: No module named 'edgediff.nothing'") is None


def _quick_run(script: Path, folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "RAY_DISABLE_USAGE_STATS": "1"}
    return subprocess.run([sys.executable, str(script), "--quick"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Every benchmark's quick run, started at once, two at a time: a quick run is
    mostly one process importing torch, onnx and friends, so two overlap well on two
    cores, and the suite waits about half as long. Each runs in a fresh folder."""
    pool = ThreadPoolExecutor(max_workers=2)
    runs = {script.stem: pool.submit(_quick_run, script, tmp_path_factory.mktemp(script.stem))
            for script in BENCHMARKS
            if "--quick" in script.read_text() and not absent_extras(script)}
    yield runs
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_the_benchmark_runs_quick(script: Path, quick_runs):
    if "--quick" not in script.read_text():
        pytest.fail(f"{script.name} has no --quick mode")
    absent = absent_extras(script)
    if absent:
        pytest.skip(f"{script.name} needs {', '.join(absent)}")
    res = quick_runs[script.stem].result()
    out = res.stdout + res.stderr
    if res.returncode != 0 and missing_module(out):
        pytest.skip(f"{script.name} needs {missing_module(out)}")
    if res.returncode != 0 and re.search(r'pip install "edgediff\[(\w+)\]"', out):
        pytest.skip(f"{script.name} needs an extra that is not installed: "
                    f"{re.search(r'pip install .*', out).group(0)}")
    assert res.returncode == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    for pattern in EXPECT.get(script.stem, []):
        assert re.search(pattern, res.stdout, re.MULTILINE), (
            f"{script.name} --quick did not print a line matching {pattern!r}:\n{res.stdout}")
