"""The documentation: README as the front door, the site's strict build, and references written
from the code that show every config key and every command option."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import typer

from made_cli.cli import app
from made_cli.config import Config, config_keys
from made_cli.reference import command_reference, config_reference, field_docs

from .conftest import REPO


def test_the_config_reference_shows_every_key_with_a_line_that_says_what_it_does() -> None:
    reference = config_reference()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([\w.]+)` \|.*\| (.*) \|$", reference, re.M)}
    assert set(config_keys()) <= set(rows), set(config_keys()) - set(rows)
    assert [key for key in config_keys() if not rows[key].strip()] == []


def test_field_docs_read_the_attribute_docstrings() -> None:
    from made_cli.sections import TrainConfig

    assert field_docs(TrainConfig)["patience"].startswith("Epochs without a better validation NLL")
    assert field_docs(Config)["name"] == "The run directory's prefix."


def test_the_command_reference_shows_every_command_and_option() -> None:
    reference = command_reference()
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="made")
    for name in group.list_commands(ctx):  # type: ignore[attr-defined]
        assert f"### made {name}" in reference
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        for param in command.params:
            shown = param.name if param.param_type_name == "argument" else param.opts[0]
            assert f"`{shown}`" in reference, (name, shown)
    assert "`--n` | How many samples. \\[default: 64\\]" in reference  # defaults as --help shows them


def test_readme_is_a_front_door_whose_links_resolve() -> None:
    text = (REPO / "README.md").read_text()
    words = len(re.findall(r"\S+", text))
    assert words <= 2000, words
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
    for command in ("pip install . && made train configs/mnist.yaml", 'pip install -e ".[dev]"'):
        assert command in text


def test_the_documentation_builds_strictly(tmp_path: Path) -> None:
    """A broken link, a missing page or a page left out of the navigation fails the build."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "site" / "configuration" / "index.html").read_text()
    assert all(key in page for key in config_keys())


def test_the_console_sessions_keep_their_shape() -> None:
    """Every console session of the documentation, run again with 2 epochs of training, prints
    lines of the shape the page shows (``scripts/docs_sessions.py --check --quick``): a command
    whose output changed (a line more, a line less, other words) fails until the pages are
    rewritten with ``python scripts/docs_sessions.py``."""
    result = subprocess.run(
        [sys.executable, "scripts/docs_sessions.py", "--check", "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
