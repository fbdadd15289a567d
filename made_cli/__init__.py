"""made: density estimation with masked autoregressive networks (MADE, Germain et al. 2015), masked
autoregressive flows (MAF, Papamakarios et al. 2017) and VAEs with inverse autoregressive flow
posteriors (IAF, Kingma et al. 2016)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import Config, load_config
from .errors import MadeError, UsageError

if TYPE_CHECKING:
    from .condition import Condition
    from .interface import DensityModel
    from .kinds import build_model
    from .kinds.iaf_vae.vae import IAFVAE
    from .kinds.maf.flow import MAF
    from .made import MADE, MaskedLinear
    from .models import MADEModel
    from .runs import Run, load_run

__all__ = [
    "IAFVAE",
    "MADE",
    "MAF",
    "Condition",
    "Config",
    "DensityModel",
    "MADEModel",
    "MadeError",
    "MaskedLinear",
    "Run",
    "UsageError",
    "build_model",
    "load_config",
    "load_run",
]
__version__ = "0.1.0"

# Imported on first use: reading a config (and `made --help`) needs no torch.
_LAZY = {
    "IAFVAE": "kinds.iaf_vae.vae", "MADE": "made", "MAF": "kinds.maf.flow", "MaskedLinear": "made",
    "MADEModel": "models", "DensityModel": "interface", "build_model": "kinds", "Run": "runs",
    "load_run": "runs", "Condition": "condition",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
