"""docs/serve.md's examples run as written against a real ``edgediff serve``: the
server command, every curl block and the Python client, each found by its marker
(``<!-- serve-example: KIND -->`` above a ```text block), so the doc and this test
cannot drift. Only the port changes: the doc's 8000 becomes a free one."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="edgediff serve needs the serve extra")
pytest.importorskip("httpx", reason="the doc's client is httpx")

from test_serve_http import start_server  # the same real-process helper

from edgediff import runtime
from edgediff.runtime import RunOptions

DOC = Path(__file__).resolve().parents[2] / "docs" / "serve.md"
MARK = re.compile(r"<!-- serve-example: (\w+) -->\n```text\n(.*?)\n```", re.S)


def examples() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, body in MARK.findall(DOC.read_text(encoding="utf-8")):
        found.setdefault(kind, []).append(body)
    return found


def test_the_doc_marks_its_examples():
    found = examples()
    assert set(found) == {"server", "curl", "python"}
    assert len(found["server"]) == 1 and len(found["python"]) == 1 and len(found["curl"]) >= 2


def test_the_docs_examples_run_against_a_server(exported, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("the doc's examples use curl, which is not installed here")
    Image = pytest.importorskip("PIL.Image")
    found = examples()
    words = shlex.split(found["server"][0])
    assert words[:2] == ["edgediff", "serve"]
    shutil.copy(exported["digits"][1], tmp_path / words[2])
    proc, url = start_server(tmp_path / words[2], tmp_path / "server.log", *words[3:],
                             "--log-level", "warning")

    def here(text: str) -> str:
        return text.replace("http://127.0.0.1:8000", url)

    try:
        for block in found["curl"]:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", here(block)], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "EDGEDIFF_API_KEY": "unused here"})
            assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
        namespace: dict = {}
        exec(compile(here(found["python"][0]), f"{DOC}:python example", "exec"), namespace)
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    assert Image.open(tmp_path / "grid.png").size == (4 * 9 + 1, 4 * 9 + 1)  # 16 digits, 4 × 4
    assert np.load(tmp_path / "samples.npz")["samples"].shape == (4, 1, 8, 8)
    assert json.loads((tmp_path / "model.json").read_text())["sample_shape"] == [1, 8, 8]
    want = runtime.sample(runtime.load(exported["digits"][1], threads=1), 8, seed=3,
                          run=RunOptions(batch=8))
    np.testing.assert_array_equal(namespace["x"], want)  # alone: runtime.sample's bits
