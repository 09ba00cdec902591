"""Small units: no module over 300 lines, no public function over 8 parameters.

Modules are found by walking the package (the layer test's walk) and read as
source, so the check needs none of the optional extras. Click command callbacks
are exempt: their parameters are the command's flags, one each, and the command
groups them into the library's option dataclasses before calling it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from test_layers import FILES  # the same walk of the package

MAX_LINES = 300
MAX_PARAMS = 8
ROOT = Path(__file__).parents[2]


def benchmark_files() -> dict[str, Path]:
    return {f"benchmarks.{p.stem}": p for p in sorted((ROOT / "benchmarks").glob("*.py"))}


def long_modules(files: dict[str, Path]) -> list[str]:
    out = []
    for module, path in sorted(files.items()):
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            out.append(f"{module}: {n} lines")
    return out


def is_click_command(node: ast.FunctionDef) -> bool:
    """Decorated ``@click.command``/``@<group>.command`` (the callback of a command)."""
    for dec in node.decorator_list:
        call = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(call, ast.Attribute) and call.attr == "command":
            return True
    return False


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names)


def long_signatures(files: dict[str, Path]) -> list[str]:
    """Public functions and methods (no leading underscore, in a public class or at
    module level) with more than MAX_PARAMS parameters."""
    out = []
    for module, path in sorted(files.items()):
        tree = ast.parse(path.read_text())
        scopes = [tree] + [n for n in tree.body
                           if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]
        for scope in scopes:
            for node in scope.body:
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                if node.name.startswith("_") or is_click_command(node):
                    continue
                n = parameter_count(node)
                if n > MAX_PARAMS:
                    out.append(f"{module}.{node.name}: {n} parameters")
    return out


def test_no_module_is_over_300_lines():
    assert long_modules({**FILES, **benchmark_files()}) == []


def test_no_public_function_takes_more_than_8_parameters():
    assert long_signatures({**FILES, **benchmark_files()}) == []


def test_the_checks_can_fail(tmp_path):
    """A planted long module, a planted 9-parameter function and method are reported;
    a 9-flag click command and a private helper are not."""
    long = tmp_path / "long.py"
    long.write_text("x = 1\n" * (MAX_LINES + 1))
    wide = tmp_path / "wide.py"
    nine = ", ".join(f"a{i}" for i in range(9))
    wide.write_text(f"import click\n\ndef f({nine}):\n    pass\n\n"
                    f"class C:\n    def m(self, {nine}):\n        pass\n\n"
                    f"def _private({nine}):\n    pass\n\n"
                    f"@click.command()\ndef command({nine}):\n    pass\n")
    files = {"planted.long": long, "planted.wide": wide}
    assert long_modules(files) == [f"planted.long: {MAX_LINES + 1} lines"]
    assert long_signatures(files) == ["planted.wide.f: 9 parameters",
                                      "planted.wide.m: 9 parameters"]
