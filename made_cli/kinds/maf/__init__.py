"""model.kind: maf, the masked autoregressive flow (Papamakarios et al. 2017); its models live in
flow.py, the elementwise maps of its layers in transformers.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ...errors import UsageError
from ...sections import ConfigView
from ..kind import Kind, check_positive

__all__ = ["KIND", "FlowConfig", "flow_model_key", "validate_flow"]


@dataclass(frozen=True)
class FlowConfig:
    """The flow around the MADEs when model.kind is maf or nsf (Papamakarios et al. 2017)."""

    layers: int = 5
    """MADE layers, each an autoregressive elementwise map."""
    ordering: Literal["reverse", "random", "same"] = "reverse"
    """Each layer's ordering against the previous one's: reverse, random or the same."""
    batch_norm: bool = True
    """Batch norm after each layer; evaluation uses its saved running statistics."""
    base: Literal["normal", "mog"] = "normal"
    """The base density: a standard normal, or mog (a MADE with model.components Gaussians)."""


def validate_flow(cfg: ConfigView) -> None:
    """A flow models real values with single-mask layers; its conditionals are the layers' maps."""
    model, kind = cfg.model, cfg.model.kind
    check_positive(cfg, "flow.layers")
    if cfg.data.values not in ("real", "logit", "mixed"):
        raise UsageError(
            f"model.kind: {kind} models real values, but data.values is {cfg.data.values} (a flow "
            "takes data.values: logit from mnist or fashion_mnist, real from npz or toy, and tables)"
        )
    if model.num_masks != 1:
        raise UsageError(
            f"model.num_masks: {model.num_masks} is not available for model.kind: {kind} (it needs 1)"
        )
    if model.head not in ("bernoulli", "gaussian", "auto"):  # bernoulli, auto: defaults, left unset
        hint = " (for a mixture-of-Gaussians base, set flow.base: mog)" if model.head == "mog" else ""
        raise UsageError(
            f"model.head: {model.head} is not available for model.kind: {kind}: its layers are its "
            f"conditionals{hint}"
        )


def flow_model_key(cfg: ConfigView, key: str) -> bool:
    """A flow has one mask per layer and no head; model.components sizes a MoG base."""
    if key == "model.components":
        return bool(cfg.flow.base == "mog")
    return key not in ("model.num_masks", "model.head")


def _summary(cfg: Mapping[str, Any]) -> str:
    flow, model = cfg.get("flow") or {}, cfg.get("model") or {}
    base = ", MoG base" if flow.get("base") == "mog" else ""
    label = " | label" if model.get("condition_on") == "label" else ""
    return f"MAF({flow.get('layers', '?')}) {model.get('hidden', '?')}{base}{label}"


KIND = Kind(
    name="maf",
    module="made_cli.kinds.maf.flow",
    summary=_summary,
    sections={"flow": FlowConfig},
    validate=validate_flow,
    model_key=flow_model_key,
    contract=("data.name=toy", "model.hidden=[16]", "flow.layers=2"),
)
