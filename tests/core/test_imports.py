"""The core and the runtime stay torch-free; the CLI works without torch installed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import edgediff

HEAVY = ("torch", "onnx", "tensorrt")
CORE = ["edgediff", "edgediff.errors", "edgediff.schedules", "edgediff.mixture",
        "edgediff.catalogue", "edgediff.plan", "edgediff.datasets", "edgediff.artifact",
        "edgediff.cli", "edgediff.runtime", "edgediff.runtime.tensorrt", "edgediff.lab.metrics"]

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
