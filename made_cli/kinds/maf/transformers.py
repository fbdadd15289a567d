"""The elementwise maps of a flow layer: u_d = f(x_d; params_d(x_<d)), monotone in x_d.

A layer's MADE gives ``params_per_dim`` numbers per dimension; a transformer reads them as a
monotone map and gives its value, its log-derivative and its inverse. ``Affine`` is MAF's
(Papamakarios et al. 2017); the rational-quadratic spline (Durkan et al. 2019) lives in the nsf
kind. The inverse, read as a head whose "noise" is u_d (``TransformerInverse``), lets the
degree-scheduled sampler of sampling.py invert any of them in about one pass per layer.
"""

from __future__ import annotations

import torch

from ...heads import Head

__all__ = ["ALPHA_BOUND", "Affine", "Transformer", "TransformerInverse", "bounded_alpha"]

# alpha = B tanh(raw / B): the identity near 0, never beyond +-B, so exp(+-alpha) cannot
# overflow however training goes (a factor of at most e^7, about 1100, per layer).
ALPHA_BOUND = 7.0


def bounded_alpha(raw: torch.Tensor) -> torch.Tensor:
    """The log-scale an affine layer applies, from the MADE's raw output (see ``ALPHA_BOUND``)."""
    return ALPHA_BOUND * torch.tanh(raw / ALPHA_BOUND)


class Transformer:
    """A monotone map of one value given its parameters; all zero parameters give the identity
    (a layer starts as one)."""

    name: str
    params_per_dim: int
    flow: str  # what a flow of such layers is called: MAF, NSF

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, log du/dx), each shaped as x, from x (..., N) and params (..., P, N): the layout
        of a MADE's output, (B, P, D), so a layer passes it as it comes."""
        raise NotImplementedError

    def inverse(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """The x (..., N) whose ``forward`` is u (..., N), from params (..., P, N)."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class Affine(Transformer):
    """u = (x - mu) exp(-alpha): MAF's layer, parameters (mu, raw alpha)."""

    name, params_per_dim, flow = "affine", 2, "MAF"

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = bounded_alpha(params[..., 1, :])
        return (x - params[..., 0, :]) * torch.exp(-alpha), -alpha

    def inverse(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return params[..., 0, :] + torch.exp(bounded_alpha(params[..., 1, :])) * u


class TransformerInverse(Head):
    """A flow layer read backwards, as a head: its parameters are the transformer's and the
    "noise" of a draw is the layer's output u_d, so a draw x_d = f^-1(u_d) inverts the layer
    dimension by dimension in the samplers of sampling.py."""

    noise_per_dim, discrete = 1, False

    def __init__(self, transformer: Transformer) -> None:
        self.transformer = transformer
        self.name = f"{transformer.name} layer"
        self.params_per_dim = transformer.params_per_dim

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.transformer.inverse(u[:, :1], params[:, :, None])[:, 0]
