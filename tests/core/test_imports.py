"""The core and the runtime stay torch-free; the CLI works without torch installed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_layers import FILES, layer_of  # the same walk of the package

import edgediff

HEAVY = ("torch", "onnx", "tensorrt")
# every module of the contract and the runtime (found by the walk), the CLI's entry point
# (``--help`` must not need torch) and the lab's NumPy metrics
CORE = [*sorted(m for m in FILES if layer_of(m) in ("contract", "runtime")),
        "edgediff.cli", "edgediff.lab.metrics"]

# Makes `import torch` (and onnx, tensorrt) fail, as on a machine without them.
BLOCK = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HEAVY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_importing_the_core_leaves_heavy_modules_out():
    code = "import sys\n" + "".join(f"import {m}\n" for m in CORE) + (
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    res = python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


@pytest.mark.parametrize("args,expect", [
    (["--version"], f"edgediff, version {edgediff.__version__}"),
    (["--help"], "Commands:"),
    (["demo", "--help"], "Example:"),
])
def test_cli_works_without_torch(args, expect):
    res = python(BLOCK + f"from edgediff.cli import main\nmain({args!r})")
    assert res.returncode == 0, res.stderr
    assert expect in res.stdout


def test_a_command_that_needs_torch_names_the_extra_when_it_is_missing():
    res = python(BLOCK + "from edgediff.cli import main\nmain(['demo', '--num', '100'])")
    assert res.returncode == 1
    assert 'pip install "edgediff[torch]"' in res.stderr
    assert "Traceback" not in res.stderr


def test_the_installed_executable_runs():
    exe = Path(sys.executable).with_name("edgediff")
    if not exe.exists():
        pytest.skip(f"no edgediff executable beside {sys.executable}: the package is not installed")
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": ""})
    assert res.returncode == 0 and edgediff.__version__ in res.stdout
