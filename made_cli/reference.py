"""The reference pages written from the code, so that the documentation cannot drift from it:
every config key (its type, default and one line, from the config dataclasses' attribute
docstrings) and every command with its options (from the Typer app's help).

The documentation site's build (``docs/hooks.py``) puts them where a page says
``{{ config_reference }}`` or ``{{ command_reference }}``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from typing import Any

__all__ = ["command_reference", "config_reference", "field_docs"]


def field_docs(cls: type) -> dict[str, str]:
    """A dataclass's fields' one-line descriptions: the string literal under each field (the
    attribute docstring that mkdocstrings also shows), or the field's ``metadata["doc"]``."""
    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(cls) if "doc" in f.metadata}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # made by make_dataclass: no source, metadata only
        return docs
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _type_name(annotation: Any) -> str:
    """A field's type as a config spells it: a Literal's values, "or null" for an optional."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " or ".join(str(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in rest) + (" or null" if len(rest) < len(args) else "")
    if origin is tuple:
        return f"list of {_type_name(args[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _default(f: dataclasses.Field[Any]) -> str:
    value = f.default
    if value is dataclasses.MISSING:
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
    if isinstance(value, tuple):
        value = list(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def config_reference() -> str:
    """Markdown: a table per config section, a row per key (key, type, default, description)."""
    from .config import _SECTIONS, Config

    top, hints = field_docs(Config), typing.get_type_hints(Config)
    out = ["| key | type | default | description |", "|---|---|---|---|"]
    sections = []
    for f in dataclasses.fields(Config):
        if dataclasses.is_dataclass(f.default_factory):
            sections.append(f)
            continue
        doc = top.get(f.name, "").replace("|", "\\|")
        out.append(f"| `{f.name}` | {_type_name(hints[f.name])} | `{_default(f)}` | {doc} |")
    for section in sections:
        cls = section.default_factory  # type: ignore[misc]
        kinds = _SECTIONS.get(section.name)
        out += ["", f"### {section.name}", ""]
        if kinds:
            out += [f"Read only when `model.kind` is {', '.join(f'`{k}`' for k in kinds)}.", ""]
        if cls.__doc__:
            out += [" ".join(cls.__doc__.split()), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        docs, hints = field_docs(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key, doc = f"{section.name}.{f.name}", docs.get(f.name, "").replace("|", "\\|")
            out.append(f"| `{key}` | {_type_name(hints[f.name])} | `{_default(f)}` | {doc} |")
    return "\n".join(out) + "\n"


def _escape(text: str) -> str:
    """Help text as Markdown shows it literally: table pipes, brackets and stars escaped."""
    for char in "|[]*_":
        text = text.replace(char, "\\" + char)
    return text


def command_reference() -> str:
    """Markdown: every command of ``made``, its usage, help and a row per argument and option
    (with its default, as ``--help`` shows it)."""
    import typer

    from .cli import app

    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="made")
    out = []
    for name in group.list_commands(ctx):  # type: ignore[attr-defined]
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        sub = command.context_class(command, info_name=name, parent=ctx)
        out += [f"### made {name}", "", "```text", command.get_usage(sub), "```", ""]
        if command.help:
            out += [_escape(inspect.cleandoc(command.help).split("\n\n")[0].replace("\n", " ")), ""]
        rows = []
        for param in command.get_params(sub):
            if getattr(param, "hidden", False):
                continue
            if param.param_type_name == "argument":
                what, text = f"`{param.name}`", getattr(param, "help", "") or ""
            else:
                what = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
                record = param.get_help_record(sub)
                text = record[1] if record else ""
            rows.append(f"| {what} | {_escape(' '.join(text.split()))} |")
        if rows:
            out += ["| argument or option | what it does |", "|---|---|", *rows, ""]
    return "\n".join(out)
