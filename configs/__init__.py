"""Named solver presets (``solvers.toml``) and bench suites (``bench.toml``)."""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources
from typing import Any

from edgediff.catalogue import check_solver, steps_for_nfe
from edgediff.errors import EdgediffError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Jetson's JetPack 6 ships Python 3.10
    import tomli as tomllib


@cache
def _table(name: str) -> dict[str, dict[str, Any]]:
    text = (resources.files(__package__) / name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def presets() -> dict[str, dict[str, Any]]:
    return _table("solvers.toml")


def suites() -> dict[str, dict[str, Any]]:
    return _table("bench.toml")


def aliases() -> dict[str, str]:
    """alias -> preset name: the names k-diffusion, A1111 and ComfyUI users search for."""
    return {a: name for name, p in presets().items() for a in p.get("aliases", [])}


def preset(name: str) -> tuple[str, int, dict[str, Any]]:
    """(solver, steps, options) of a named preset (or one of its aliases)."""
    table = presets()
    name = aliases().get(name, name)
    if name not in table:
        raise EdgediffError(f"unknown preset {name!r}; choose one of {', '.join(table)} "
                            f"(edgediff sample --list-presets)")
    entry = {k: v for k, v in table[name].items() if k not in ("description", "aliases")}
    return check_solver(entry.pop("solver")), int(entry.pop("steps")), entry


def suite_runs(name: str) -> tuple[list[tuple[str, str, int, dict[str, Any]]], int | None]:
    """A suite's runs as (label, solver, steps, options), and its sample count."""
    table = suites()
    if name not in table:
        raise EdgediffError(f"unknown bench suite {name!r}; choose one of {', '.join(table)}")
    entry = table[name]
    runs = [(p, *preset(p)) for p in entry.get("presets", [])]
    for solver in entry.get("solvers", []):
        for n in entry.get("nfe", []):
            steps = steps_for_nfe(solver, n)  # Heun-type: NFE 4 and 5 are both 3 steps
            if (f"{solver}-{steps}", solver, steps, {}) not in runs:
                runs.append((f"{solver}-{steps}", solver, steps, {}))
    return runs, entry.get("num")
