"""model.kind: nsf, the autoregressive neural spline flow (Durkan et al. 2019): MAF's flow with a
rational-quadratic spline for each layer's map; its models live in spline.py."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError
from ...sections import ConfigView
from ..kind import Kind
from ..maf import FlowConfig, flow_model_key, validate_flow

__all__ = ["KIND", "SplineConfig"]


@dataclass(frozen=True)
class SplineConfig:
    """Each layer's rational-quadratic spline when model.kind is nsf (Durkan et al. 2019)."""

    bins: int = 8
    """K: the spline's bins on [-bound, bound] (2 to 999)."""
    bound: float = 3.0
    """B: the identity (linear tails) outside [-B, B], in the standardised scale."""


MAX_BINS = 999  # each bin is at least 0.1% of the interval wide (spline.MIN_BIN): 1000 would fix them all
MAX_BOUND = 1e6  # in standardised units; float32 knots need it finite with room to spare


def _validate(cfg: ConfigView) -> None:
    validate_flow(cfg)
    if not 2 <= cfg.spline.bins <= MAX_BINS:
        raise UsageError(f"spline.bins must be between 2 and {MAX_BINS} (got {cfg.spline.bins})")
    if not (math.isfinite(cfg.spline.bound) and 0 < cfg.spline.bound <= MAX_BOUND):
        raise UsageError(
            f"spline.bound must be a number > 0 and at most {MAX_BOUND:g} (got {cfg.spline.bound})"
        )


def _summary(cfg: Mapping[str, Any]) -> str:
    flow, model, spline = cfg.get("flow") or {}, cfg.get("model") or {}, cfg.get("spline") or {}
    base = ", MoG base" if flow.get("base") == "mog" else ""
    label = " | label" if model.get("condition_on") == "label" else ""
    shape = f"NSF({flow.get('layers', '?')}, {spline.get('bins', '?')} bins) {model.get('hidden', '?')}"
    return f"{shape}{base}{label}"


KIND = Kind(
    name="nsf",
    module="made_cli.kinds.nsf.spline",
    summary=_summary,
    sections={"flow": FlowConfig, "spline": SplineConfig},
    validate=_validate,
    model_key=flow_model_key,
    contract=("data.name=toy", "model.hidden=[16]", "flow.layers=2", "spline.bins=4"),
)
