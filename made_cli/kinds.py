"""Model kinds as plug-ins: ``model.kind`` -> how to build, describe and verify its models.

A kind is a model class implementing ``interface.DensityModel`` and one ``ModelKind`` entry
here. The trainer, the commands and the CLI look a kind up by name; none of them knows a class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import Config
from .errors import UsageError
from .heads import ColumnLaw
from .iaf import build_iaf_vae
from .interface import DensityModel, Verification
from .maf import build_maf
from .models import build_made
from .verify import iaf_verification, made_verification, maf_verification

__all__ = ["KINDS", "ModelKind", "build_model", "kind_of"]


@dataclass(frozen=True)
class ModelKind:
    """What the rest of the toolkit needs to know of a model kind, besides its models."""

    name: str
    build: Callable[..., DensityModel]  # (config, features, classes, columns=, context=): see build_model
    verify: Callable[[Any, int], Verification]  # (model, points): `made verify-ar`'s checks
    summary: Callable[[Mapping[str, Any]], str]  # a saved config (plain data) in a few words
    describe: Callable[[Config, Any], str]  # (config, model): the "model:" line of training
    measure: str = "NLL"  # what its validation and test numbers are: the NLL, or a bound on it
    loss_name: str = "train_nll"  # the metrics key of its training loss
    note: str | None = None  # said after training and under `made runs`, if the numbers need it


def _made_summary(cfg: Mapping[str, Any]) -> str:
    model = cfg.get("model") or {}
    masks = model.get("num_masks", 1)
    label = " | label" if model.get("condition_on") == "label" else ""
    return (
        f"MADE {model.get('hidden', '?')}, {model.get('head', 'bernoulli')}"
        + (f", {masks} masks" if masks != 1 else "")
        + label
    )


def _made_line(cfg: Config, model: Any) -> str:
    m = cfg.model
    given = f", given one of {model.classes} labels" if model.classes else ""
    return (
        f"MADE hidden={list(m.hidden)} masks={m.num_masks} direct={m.direct} ordering={m.ordering}, "
        f"{model.head.describe()} head{given}"
    )


def _iaf_line(cfg: Config, model: Any) -> str:
    v = cfg.iaf
    return (
        f"{model.describe()}, encoder={list(v.encoder)} decoder={list(v.decoder)}, "
        f"KL warm-up {v.warmup_epochs} epochs, free bits {v.free_bits:g}"
    )


def _iaf_summary(cfg: Mapping[str, Any]) -> str:
    return f"VAE, {(cfg.get('iaf') or {}).get('steps', '?')} IAF steps"


def _maf_summary(cfg: Mapping[str, Any]) -> str:
    flow, model = cfg.get("flow") or {}, cfg.get("model") or {}
    base = ", MoG base" if flow.get("base") == "mog" else ""
    label = " | label" if model.get("condition_on") == "label" else ""
    return f"MAF({flow.get('layers', '?')}) {model.get('hidden', '?')}{base}{label}"


def _maf_line(cfg: Config, model: Any) -> str:
    given = f", given one of {model.classes} labels" if model.classes else ""
    return f"{model.describe()}{given}"


KINDS: dict[str, ModelKind] = {
    "made": ModelKind(
        name="made",
        build=build_made,
        verify=lambda model, points: made_verification(model.net, points),
        summary=_made_summary,
        describe=_made_line,
    ),
    "iaf_vae": ModelKind(
        name="iaf_vae",
        build=build_iaf_vae,
        verify=iaf_verification,
        summary=_iaf_summary,
        describe=_iaf_line,
        measure="-ELBO",
        loss_name="train_loss",
        note="-ELBO is an upper bound on the NLL; made evaluate RUN estimates the NLL itself",
    ),
    "maf": ModelKind(
        name="maf", build=build_maf, verify=maf_verification, summary=_maf_summary, describe=_maf_line
    ),
}


def kind_of(name: str) -> ModelKind:
    """The registry entry of ``model.kind``."""
    if name not in KINDS:
        raise UsageError(f"unknown model.kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]


def build_model(
    cfg: Config,
    features: int,
    classes: int = 0,
    columns: tuple[ColumnLaw, ...] | None = None,
    context: int = 0,
) -> DensityModel:
    """The model a config describes, for data of ``features`` dimensions and ``classes`` labels;
    for a table, each column's law ``columns`` and its ``context`` columns."""
    return kind_of(cfg.model.kind).build(cfg, features, classes, columns=columns, context=context)
