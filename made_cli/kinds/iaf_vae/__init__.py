"""model.kind: iaf_vae, a VAE whose posterior is refined by inverse autoregressive flow steps
(Kingma et al. 2016); its models live in vae.py."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError
from ...sections import ConfigView
from ..kind import Kind, check_positive

__all__ = ["KIND", "IAFConfig"]


@dataclass(frozen=True)
class IAFConfig:
    """The VAE around the MADEs when model.kind is iaf_vae (Kingma et al. 2016)."""

    latent: int = 32
    """Dimensions of z."""
    encoder: tuple[int, ...] = (500, 500)
    """Hidden layers of the encoder MLP."""
    decoder: tuple[int, ...] = (500, 500)
    """Hidden layers of the decoder MLP."""
    context: int = 64
    """Size of the encoder's context h, fed to every IAF step at degree 0."""
    steps: int = 2
    """IAF steps; 0 is the diagonal-Gaussian VAE."""
    warmup_epochs: int = 10
    """Epochs over which the KL weight rises linearly from 0 to 1."""
    free_bits: float = 0.0
    """Nats per latent dimension the batch-mean KL may use for free."""
    importance_samples: int = 1000
    """K of made evaluate's importance-weighted log p(x)."""


def _validate(cfg: ConfigView) -> None:
    """The iaf section's numbers; its MADEs are single-mask flow steps on binary data."""
    model, iaf = cfg.model, cfg.iaf
    check_positive(cfg, "iaf.latent", "iaf.importance_samples")
    for key in ("encoder", "decoder"):
        if any(h < 1 for h in getattr(iaf, key)):
            raise UsageError(f"iaf.{key} sizes must be at least 1 (got {list(getattr(iaf, key))})")
    for key in ("context", "steps", "warmup_epochs"):
        if getattr(iaf, key) < 0:
            raise UsageError(f"iaf.{key} must be at least 0 (got {getattr(iaf, key)})")
    if not (math.isfinite(iaf.free_bits) and iaf.free_bits >= 0):
        raise UsageError(f"iaf.free_bits must be a number >= 0 (got {iaf.free_bits})")
    refused = {
        "model.num_masks": (model.num_masks, 1),
        "model.head": (model.head, "bernoulli"),
        "model.condition_on": (model.condition_on, "none"),
    }
    for key, (value, only) in refused.items():
        if value != only:
            raise UsageError(f"{key}: {value} is not available for model.kind: iaf_vae (it needs {only})")
    if cfg.data.values != "binary":
        raise UsageError(f"model.kind: iaf_vae models binary data (data.values is {cfg.data.values})")


def _summary(cfg: Mapping[str, Any]) -> str:
    return f"VAE, {(cfg.get('iaf') or {}).get('steps', '?')} IAF steps"


KIND = Kind(
    name="iaf_vae",
    module="made_cli.kinds.iaf_vae.vae",
    summary=_summary,
    sections={"iaf": IAFConfig},
    validate=_validate,
    model_key=lambda cfg, key: (
        key not in ("model.num_masks", "model.head", "model.components", "model.condition_on")
    ),
    tables=False,
    measure="-ELBO",
    loss_name="train_loss",
    note="-ELBO is an upper bound on the NLL; made evaluate RUN estimates the NLL itself",
    contract=(
        "data.name=synthetic",
        "data.features=4",
        "model.hidden=[8]",
        "iaf.latent=2",
        "iaf.encoder=[16]",
        "iaf.decoder=[16]",
        "iaf.context=4",
        "iaf.steps=2",
        "iaf.importance_samples=500",
    ),
)
