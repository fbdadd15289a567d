"""MkDocs hook: the pages' generated parts, written from the code (made_cli.reference)."""

from __future__ import annotations

from typing import Any


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Put the config and command references where a page asks for them."""
    if "{{ config_reference }}" in markdown:
        from made_cli.reference import config_reference

        markdown = markdown.replace("{{ config_reference }}", config_reference())
    if "{{ command_reference }}" in markdown:
        from made_cli.reference import command_reference

        markdown = markdown.replace("{{ command_reference }}", command_reference())
    return markdown
