"""made: density estimation with masked autoregressive networks (MADE, Germain et al. 2015) and
VAEs with inverse autoregressive flow posteriors (IAF, Kingma et al. 2016)."""

from .config import Config, load_config
from .errors import MadeError, UsageError
from .iaf import IAFVAE
from .made import MADE, MaskedLinear
from .models import MADEModel, Model, build_model
from .runs import Run, load_run

__all__ = [
    "IAFVAE",
    "MADE",
    "Config",
    "MADEModel",
    "MadeError",
    "MaskedLinear",
    "Model",
    "Run",
    "UsageError",
    "build_model",
    "load_config",
    "load_run",
]
__version__ = "0.1.0"
