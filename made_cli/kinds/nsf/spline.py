"""The neural spline flow (model.kind: nsf): MAF's layers with a rational-quadratic spline of K
bins for the affine map (Durkan, Bekasov, Murray & Papamakarios, NeurIPS 2019, autoregressive).

On [-B, B] the map is monotone, piecewise rational-quadratic through K + 1 knots whose widths,
heights and inner derivatives a layer's MADE gives (3K - 1 numbers per dimension); outside it is
the identity, with derivative 1 at the ends, so the tails are linear as in the paper. Forward,
log-derivative and inverse (the root of a quadratic) are closed-form, so density takes one pass
and the degree-scheduled inverse samples in about one pass per layer, as MAF's does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ...config import Config
from ...heads import ColumnLaw
from ..maf.flow import MAF, build_flow, flow_verification
from ..maf.transformers import Transformer

__all__ = ["MIN_BIN", "MIN_DERIVATIVE", "RationalQuadraticSpline", "build", "describe", "verify"]

MIN_BIN = 1e-3  # the narrowest bin, as a share of 2B (width and height): no bin collapses
MIN_DERIVATIVE = 1e-3  # the shallowest slope at a knot: the map stays strictly monotone


class RationalQuadraticSpline(Transformer):
    """A monotone rational-quadratic spline on [-bound, bound] with ``bins`` bins, the identity
    outside; parameters: bins raw widths, bins raw heights, bins - 1 raw inner derivatives. All
    zero give equal bins and unit derivatives: the identity."""

    def __init__(self, bins: int = 8, bound: float = 3.0) -> None:
        if bins < 2 or not bound > 0:
            raise ValueError("a spline needs at least 2 bins and a bound > 0")
        self.bins, self.bound = bins, float(bound)
        self.params_per_dim = 3 * bins - 1
        self.name, self.flow = "rational-quadratic spline", "NSF"
        # softplus(0 + shift) + MIN_DERIVATIVE = 1: raw derivatives of 0 give slope 1
        self._shift = math.log(math.expm1(1 - MIN_DERIVATIVE))

    def describe(self) -> str:
        return f"rational-quadratic spline, {self.bins} bins on [-{self.bound:g}, {self.bound:g}]"

    def _knots(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(knots in x (..., K+1), knots in u (..., K+1), derivatives at the knots (..., K+1))."""
        k, b = self.bins, self.bound

        def edges(raw: torch.Tensor) -> torch.Tensor:
            share = MIN_BIN + (1 - MIN_BIN * k) * torch.softmax(raw, -1)
            cum = F.pad(torch.cumsum(share, -1), (1, 0))
            knots = 2 * b * cum - b
            return torch.cat(
                [knots[..., :1].clamp(-b, -b), knots[..., 1:-1], knots[..., -1:].clamp(b, b)], -1
            )

        inner = MIN_DERIVATIVE + F.softplus(params[..., 2 * k :] + self._shift)
        ends = torch.ones_like(inner[..., :1])
        return edges(params[..., :k]), edges(params[..., k : 2 * k]), torch.cat([ends, inner, ends], -1)

    def _bin(
        self, knots: torch.Tensor, v: torch.Tensor, others: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        """For each value v (...) inside [-B, B]: its bin's (left knot, width) in the searched
        knots and in ``others``' (knots, derivatives): x_k, w_k, y_k, h_k, d_k, d_k+1."""
        index = (v[..., None] >= knots[..., 1:-1]).sum(-1, keepdim=True)  # (..., 1) in 0..K-1
        right = index + 1
        y_knots, derivatives = others

        def at(t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            return t.gather(-1, i)[..., 0]

        x_k = at(knots, index)
        y_k = at(y_knots, index)
        return (
            x_k, at(knots, right) - x_k, y_k, at(y_knots, right) - y_k, at(derivatives, index),
            at(derivatives, right),
        )  # fmt: skip

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.bound
        inside = (x >= -b) & (x <= b)
        xs, ys, ds = self._knots(params)
        v = x.clamp(-b, b)
        x_k, w, y_k, h, d0, d1 = self._bin(xs, v, (ys, ds))
        xi = ((v - x_k) / w).clamp(0, 1)
        s = h / w
        between = xi * (1 - xi)
        den = s + (d1 + d0 - 2 * s) * between
        u = y_k + h * (s * xi.square() + d0 * between) / den
        slope = s.square() * (d1 * xi.square() + 2 * s * between + d0 * (1 - xi).square())
        log_det = torch.log(slope) - 2 * torch.log(den)
        return torch.where(inside, u, x), torch.where(inside, log_det, torch.zeros_like(log_det))

    def inverse(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        b = self.bound
        inside = (u >= -b) & (u <= b)
        xs, ys, ds = self._knots(params)
        v = u.clamp(-b, b)
        y_k, h, x_k, w, d0, d1 = self._bin(ys, v, (xs, ds))
        s = h / w
        rel = v - y_k
        curve = d1 + d0 - 2 * s
        qa = h * (s - d0) + rel * curve
        qb = h * d0 - rel * curve
        qc = -s * rel
        root = torch.sqrt((qb.square() - 4 * qa * qc).clamp_min(0))
        xi = (2 * qc / (-qb - root)).clamp(0, 1)  # the root in [0, 1], stable where qa is near 0
        return torch.where(inside, x_k + xi * w, u)


def build(
    cfg: Config,
    features: int,
    classes: int = 0,
    columns: tuple[ColumnLaw, ...] | None = None,
    context: int = 0,
) -> MAF:
    """The spline flow a config describes: the flow section's layers, spline.bins and spline.bound."""
    spline = RationalQuadraticSpline(cfg.spline.bins, cfg.spline.bound)
    return build_flow(cfg, features, classes, columns, context, spline)


def verify(model: MAF, points: int = 2) -> Any:
    """Each layer's MADE, Jacobian and log-determinant, the base's MADE and the whole flow's."""
    return flow_verification(model, points)


def describe(cfg: Config, model: MAF) -> str:
    given = f", given one of {model.classes} labels" if model.classes else ""
    return f"{model.describe()}{given}"
