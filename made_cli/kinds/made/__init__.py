"""model.kind: made, one MADE (or a mask ensemble) with a head per dimension (Germain et al. 2015)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...sections import ConfigView
from ..kind import Kind

__all__ = ["KIND", "TABLE_DEFAULTS"]

# ``made train FILE``'s model and training for a table, chosen on small public tables
# (scripts/table_quality.py): an ensemble of 10 random orderings regularises where a few hundred
# rows would let one MADE overfit within a few epochs, and trains on to its early stop.
TABLE_DEFAULTS: dict[str, Any] = {
    "model": {"hidden": [256], "num_masks": 10, "ordering": "random"},
    "train": {"epochs": 400},
}


def _summary(cfg: Mapping[str, Any]) -> str:
    model = cfg.get("model") or {}
    masks = model.get("num_masks", 1)
    label = " | label" if model.get("condition_on") == "label" else ""
    return (
        f"MADE {model.get('hidden', '?')}, {model.get('head', 'bernoulli')}"
        + (f", {masks} masks" if masks != 1 else "")
        + label
    )


def _model_key(cfg: ConfigView, key: str) -> bool:
    return key != "model.components" or cfg.model.head in ("mog", "auto")


KIND = Kind(
    name="made",
    module="made_cli.kinds.made.model",
    summary=_summary,
    model_key=_model_key,
    head_is_law=True,
    table_defaults=TABLE_DEFAULTS,
    contract=(
        "data.name=toy",
        "model.head=mog",
        "model.components=3",
        "model.hidden=[32]",
        "model.num_masks=2",
        "model.ordering=random",
    ),
)
