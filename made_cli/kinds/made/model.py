"""The models of model.kind: made: a MADE (or a mask ensemble) and a head (models.MADEModel)."""

from __future__ import annotations

from ...config import Config
from ...heads import ColumnLaw, make_head
from ...interface import Verification
from ...made import MADE
from ...models import MADEModel, context_classes
from ...verify import made_verification

__all__ = ["build", "describe", "verify"]


def build(
    cfg: Config,
    features: int,
    classes: int = 0,
    columns: tuple[ColumnLaw, ...] | None = None,
    context: int = 0,
) -> MADEModel:
    """The MADE a config describes (model.kind: made), for ``features`` dimensions, ``classes``
    labels and, for a table, each column's law ``columns`` and its ``context`` columns."""
    m = cfg.model
    head = make_head(m.head, levels=cfg.data.levels, components=m.components, columns=columns)
    n_classes = context_classes(cfg, classes)
    net = MADE(
        features,
        m.hidden,
        context=n_classes + context,
        # a table's columns each get their own number of parameters, none padded
        params_per_dim=head.params_per_dim
        if columns is None or any(law.legacy for law in columns)
        else head.column_params,  # type: ignore[attr-defined]
        direct=m.direct,
        ordering=m.ordering,
        hidden_degrees=m.hidden_degrees,
        num_masks=m.num_masks,
        seed=cfg.seed,
        # a table's categories and missing cells enter by embedding (runs saved before had none)
        embed=None
        if columns is None or any(law.legacy for law in columns)
        else [law.levels for law in columns],
    )
    return MADEModel(net, head, n_classes, context, per_column=columns is not None)


def verify(model: MADEModel, points: int = 2) -> Verification:
    """`made verify-ar`'s rows: one per ensemble member."""
    return made_verification(model.net, points)


def describe(cfg: Config, model: MADEModel) -> str:
    """The "model:" line of training."""
    m = cfg.model
    given = f", given one of {model.classes} labels" if model.classes else ""
    return (
        f"MADE hidden={list(m.hidden)} masks={m.num_masks} direct={m.direct} ordering={m.ordering}, "
        f"{model.head.describe()} head{given}"
    )
