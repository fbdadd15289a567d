"""made: density estimation with masked autoregressive networks (MADE, Germain et al. 2015)."""

from .config import Config, load_config
from .errors import MadeError, UsageError
from .made import MADE, MaskedLinear
from .models import MADEModel, build_model
from .runs import Run, load_run

__all__ = [
    "MADE",
    "Config",
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
