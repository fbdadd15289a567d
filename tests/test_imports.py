"""The package's import graph: no module imports one that (directly or not) imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "made_cli"


def _module(path: Path) -> str:
    """made_cli's dotted name of a source file (a package is its __init__)."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """The made_cli modules a module imports, at any depth of its code (lazy and type-checking
    imports count too), relative or absolute."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # from . import a, b
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in MODULES and m != name}


def test_no_module_is_part_of_an_import_cycle() -> None:
    graph = {name: _imports(name) for name in MODULES if name != "made_cli"}
    for start in graph:
        seen, frontier = set(), list(graph[start])
        while frontier:
            name = frontier.pop()
            assert name != start, f"{start} imports itself through {sorted(seen)}"
            if name not in seen and name in graph:
                seen.add(name)
                frontier.extend(graph[name])


def test_reading_a_config_needs_no_torch() -> None:
    code = "import sys, made_cli.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0


def test_every_public_name_resolves() -> None:
    import made_cli

    for name in made_cli.__all__:
        assert getattr(made_cli, name) is not None, name
