"""The package's import graph: no module imports one that (directly or not) imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "made_cli"


def _imports(path: Path) -> set[str]:
    """The made_cli modules a module imports, at any depth of its code (lazy imports count too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:  # from . import a, b
                out.update(alias.name for alias in node.names)
    return {name for name in out if (PACKAGE / f"{name}.py").exists()}


def test_no_module_is_part_of_an_import_cycle() -> None:
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    for start in graph:
        seen, frontier = set(), list(graph[start])
        while frontier:
            name = frontier.pop()
            assert name != start, f"{start} imports itself through {sorted(seen)}"
            if name not in seen:
                seen.add(name)
                frontier.extend(graph[name])


def test_reading_a_config_needs_no_torch() -> None:
    code = "import sys, made_cli.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0


def test_every_public_name_resolves() -> None:
    import made_cli

    for name in made_cli.__all__:
        assert getattr(made_cli, name) is not None, name
