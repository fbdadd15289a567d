"""Model kinds as plug-ins: ``model.kind`` -> a ``Kind`` (its config, checks and models).

A kind is one package here (``made``, ``maf``, ...): torch-free settings in its ``__init__``
(``KIND``), its models in the module ``KIND.module`` names. Adding a kind is its package and its
name in ``KIND_PACKAGES``; the trainer, the commands and the CLI look a kind up by name, and
config.py reads its sections from here. Nothing here imports torch until a model is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import UsageError
from .kind import Kind

if TYPE_CHECKING:
    from ..heads import ColumnLaw
    from ..interface import DensityModel
    from ..sections import ConfigView

__all__ = ["KINDS", "KIND_PACKAGES", "Kind", "build_model", "kind_of", "sections"]

KIND_PACKAGES = ("made", "iaf_vae", "maf", "nsf")  # the registry: one name per kind

KINDS: dict[str, Kind] = {name: importlib.import_module(f"{__name__}.{name}").KIND for name in KIND_PACKAGES}


def sections() -> dict[str, type]:
    """Every kind's config sections, name -> dataclass, in registry order (one per name)."""
    out: dict[str, type] = {}
    for kind in KINDS.values():
        for name, section in kind.sections.items():
            if out.setdefault(name, section) is not section:
                raise TypeError(f"config section {name!r} is defined twice, by different kinds")
    return out


def kind_of(name: str) -> Kind:
    """The registry entry of ``model.kind``."""
    if name not in KINDS:
        raise UsageError(f"unknown model.kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]


def build_model(
    cfg: ConfigView,
    features: int,
    classes: int = 0,
    columns: tuple[ColumnLaw, ...] | None = None,
    context: int = 0,
) -> DensityModel:
    """The model a config describes, for data of ``features`` dimensions and ``classes`` labels;
    for a table, each column's law ``columns`` and its ``context`` columns."""
    return kind_of(cfg.model.kind).build(cfg, features, classes, columns=columns, context=context)
