"""The layers import one way (docs/design.md, "Layers"): each module imports only
from its own layer and those below it, lazy imports inside functions included,
and no module imports one that imports it back, directly or around a circle.

Every module is found by walking the package (``pkgutil``), never from a kept list,
and read as source (``ast``), so the check needs none of the optional extras.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import pytest
import tomllib

import edgediff

# bottom first: a module may import from its layer and the layers before it
LAYERS = ("contract", "runtime", "torch side", "lab", "cli")
SUBPACKAGE_LAYER = {"runtime": "runtime", "models": "torch side", "samplers": "torch side",
                    "export": "torch side", "lab": "lab", "cli": "cli", "configs": "contract"}


def layer_of(module: str) -> str:
    """edgediff.X (a module of the top level) is the contract; a sub-package has its own."""
    parts = module.split(".")
    if parts[0] != "edgediff":
        raise ValueError(module)
    if len(parts) == 1:
        return "contract"
    if parts[1] in SUBPACKAGE_LAYER:
        return SUBPACKAGE_LAYER[parts[1]]
    spec = importlib.util.find_spec(f"edgediff.{parts[1]}")
    if spec is not None and spec.submodule_search_locations:
        raise LookupError(f"edgediff.{parts[1]} is a sub-package with no layer: add it to "
                          f"SUBPACKAGE_LAYER and to the README's layout")
    return "contract"


def walk(package: str = "edgediff") -> dict[str, Path]:
    """Every module of ``package`` and its source file, found with ``pkgutil`` without
    importing any of them. The sub-packages live in their own top-level folders
    (pyproject's package-dir), so each is walked from its own location."""
    spec = importlib.util.find_spec(package)
    found = {package: Path(spec.origin)}
    for info in pkgutil.iter_modules(spec.submodule_search_locations, package + "."):
        if info.ispkg:
            found.update(walk(info.name))
        else:
            found[info.name] = Path(importlib.util.find_spec(info.name).origin)
    if package == "edgediff":
        for sub in SUBPACKAGE_LAYER:
            found.update(walk(f"edgediff.{sub}"))
    return found


def installed_packages() -> list[str]:
    """The packages pyproject.toml installs."""
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    return tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"]


def imported(source: str, modules: set[str]) -> set[str]:
    """The edgediff modules a source file imports, anywhere in it (top level, inside
    functions, under TYPE_CHECKING): ``from edgediff import runtime`` counts as
    ``edgediff.runtime``."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in modules else node.module)
    return {m for m in out if m == "edgediff" or m.startswith("edgediff.")}


def upward_imports(files: dict[str, Path]) -> list[str]:
    modules = set(files)
    problems = []
    for module, path in sorted(files.items()):
        own = LAYERS.index(layer_of(module))
        for target in sorted(imported(path.read_text(), modules)):
            if LAYERS.index(layer_of(target)) > own:
                problems.append(f"{module} ({layer_of(module)}) imports {target} "
                                f"({layer_of(target)})")
    return problems


def import_loops(files: dict[str, Path]) -> list[list[str]]:
    """Every import loop: the strongly connected components of the import graph with
    more than one module, or one module importing itself (Tarjan's algorithm)."""
    modules = set(files)
    graph = {m: sorted(imported(p.read_text(), modules) & modules) for m, p in files.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for n in graph[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                component.append(n)
                if n == m:
                    break
            if len(component) > 1 or m in graph[m]:
                loops.append(sorted(component))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return sorted(loops)


FILES = walk()


def test_the_walk_finds_every_module_of_every_layer():
    names = set(FILES)
    for expected in ("edgediff.catalogue", "edgediff.plan", "edgediff.runtime.backends.ort",
                     "edgediff.samplers.ode", "edgediff.export.tensorrt", "edgediff.lab.bench",
                     "edgediff.cli.sample", "edgediff.models.training"):
        assert expected in names
    on_disk = {p for p in Path(edgediff.__file__).parent.rglob("*.py")}
    assert on_disk <= set(FILES.values())  # the core's own files, none missed
    assert {layer_of(m) for m in FILES} == set(LAYERS)


def test_every_installed_subpackage_has_a_layer():
    for package in installed_packages():
        layer_of(package)  # raises for one without
        assert package in FILES


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports(FILES) == []


def test_the_check_sees_a_lazy_upward_import(tmp_path):
    """It could fail: a contract module with a lazy import of the lab inside a function,
    and a runtime module importing ``export`` by ``from edgediff import export``."""
    core = tmp_path / "core.py"
    core.write_text("def f():\n    from edgediff.lab.bench import run_bench\n")
    rt = tmp_path / "rt.py"
    rt.write_text("from edgediff import export\n")
    files = {**FILES, "edgediff.planted": core, "edgediff.runtime.planted": rt}
    assert upward_imports(files) == [
        "edgediff.planted (contract) imports edgediff.lab.bench (lab)",
        "edgediff.runtime.planted (runtime) imports edgediff.export (torch side)"]


def test_a_new_subpackage_needs_a_layer(monkeypatch):
    monkeypatch.delitem(SUBPACKAGE_LAYER, "lab")
    with pytest.raises(LookupError, match=r"edgediff\.lab is a sub-package with no layer"):
        layer_of("edgediff.lab.bench")


def test_no_module_imports_one_that_imports_it_back():
    assert import_loops(FILES) == []


def test_the_check_sees_a_loop_around_a_circle(tmp_path):
    """It could fail: three planted modules importing each other in a circle, one of
    them lazily inside a function, and one module importing itself."""
    sources = {"a": "from edgediff.planted.b import f\n",
               "b": "def f():\n    from edgediff.planted.c import g\n",
               "c": "import edgediff.planted.a\n",
               "d": "from edgediff.planted import d\n"}
    planted = {}
    for name, source in sources.items():
        (tmp_path / f"{name}.py").write_text(source)
        planted[f"edgediff.planted.{name}"] = tmp_path / f"{name}.py"
    assert import_loops(planted) == [
        ["edgediff.planted.a", "edgediff.planted.b", "edgediff.planted.c"],
        ["edgediff.planted.d"]]


def clashing_names(files: dict[str, Path]) -> list[str]:
    """Contract modules whose file name another layer's folder also uses: one name,
    one meaning (``guidance.py`` in three folders meant three things). Parallel names
    across the runtime and the torch side, or the CLI and the lab, are fine."""
    contract = {m.rsplit(".", 1)[1] for m in files
                if layer_of(m) == "contract" and files[m].name != "__init__.py"
                and m.count(".") == 1}
    return sorted(f"{m} reuses the contract's name {m.rsplit('.', 1)[1]}" for m in files
                  if layer_of(m) != "contract" and m.rsplit(".", 1)[1] in contract)


def test_no_other_folder_reuses_a_contract_module_name():
    assert clashing_names(FILES) == []


def test_the_name_check_sees_a_clash(tmp_path):
    planted = tmp_path / "settings.py"
    planted.write_text("")
    assert clashing_names({**FILES, "edgediff.lab.settings": planted}) == [
        "edgediff.lab.settings reuses the contract's name settings"]
