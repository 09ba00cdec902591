"""What the docs point at exists: relative links and their #anchors, repository paths
in backticks, and the ``edgediff.…`` names of modules and objects. A moved module or
a renamed heading fails here instead of leaving a dead reference."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from edgediff.metadata import KEYS, OPTIONAL_KEYS

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
IDS = [d.relative_to(ROOT).as_posix() for d in DOCS]
# ``edgediff.X`` that are not Python names: artifact metadata keys and format tags
NOT_PYTHON = {f"edgediff.{k}" for k in (*KEYS, *OPTIONAL_KEYS, "default_sampler", "checkpoint")}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def anchors(doc: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.*)$", prose(doc.read_text("utf-8")), re.M)}


def resolves(name: str) -> bool:
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError as e:
            if e.name and not e.name.startswith("edgediff"):
                pytest.skip(f"{name} needs {e.name}")
            continue
        try:
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_links_resolve(doc):
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(#[^)\s]*)?\)", doc.read_text("utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        path = (doc.parent / target) if target else doc
        if path.is_dir():
            path = path / "README.md"
        assert path.is_file(), f"{doc.name}: link to {target} leads nowhere"
        if anchor:
            assert anchor[1:] in anchors(path), f"{doc.name}: {target}{anchor}: no such heading"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_repository_paths_exist(doc):
    for path in re.findall(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|toml|txt|md|json|png))`",
                           doc.read_text("utf-8")):
        assert (ROOT / path).exists(), f"{doc.name}: `{path}` is not in the repository"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_python_names_import(doc):
    names = set(re.findall(r"`(edgediff(?:\.\w+)+)", prose(doc.read_text("utf-8"))))
    for name in sorted(names - NOT_PYTHON):
        assert resolves(name), f"{doc.name}: {name} does not import"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_cited_benchmarks_take_their_flags(doc):
    """A benchmark named in prose (``python benchmarks/X.py --flag …``) exists and
    declares each flag the doc gives it, read from its source: no import, no run (the
    benchmarks' own test runs each one in quick mode)."""
    text = re.sub(r"\s+", " ", prose(doc.read_text("utf-8")))
    for script, args in re.findall(r"`python (benchmarks/[\w-]+\.py)([^`]*)`", text):
        source = ROOT / script
        assert source.is_file(), f"{doc.name}: {script} does not exist"
        declared = set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source.read_text("utf-8")))
        for flag in re.findall(r"(?<!\S)(--[\w-]+)", args):
            assert flag in declared, f"{doc.name}: {script} has no {flag}"
