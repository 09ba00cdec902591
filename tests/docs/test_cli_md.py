"""docs/cli.md is what the click commands print: ``edgediff.cli.manual`` renders it
from the commands themselves, and this test fails when the file in the repository is
stale (regenerate: ``python -m edgediff.cli.manual > docs/cli.md``)."""

from __future__ import annotations

import difflib
from pathlib import Path

from edgediff.cli import main
from edgediff.cli.manual import render

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_md_is_current():
    want, have = render(), CLI_MD.read_text(encoding="utf-8")
    if have != want:
        diff = "".join(list(difflib.unified_diff(
            have.splitlines(keepends=True), want.splitlines(keepends=True),
            "docs/cli.md", "render()", n=1))[:40])
        raise AssertionError("docs/cli.md is stale; regenerate it with\n"
                             "  python -m edgediff.cli.manual > docs/cli.md\n" + diff)


def test_every_command_has_a_section():
    text = render()
    for name in main.list_commands(None):
        assert f"\n## edgediff {name}\n" in text


def test_render_ignores_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    wide = render()
    monkeypatch.setenv("COLUMNS", "40")
    assert render() == wide
