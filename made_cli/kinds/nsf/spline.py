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

import torch
import torch.nn.functional as F

from ...config import Config
from ...heads import ColumnLaw
from ..maf.flow import MAF, build_flow, describe, verify  # a spline flow is checked and described as a flow
from ..maf.transformers import Transformer

__all__ = ["MIN_BIN", "MIN_DERIVATIVE", "RationalQuadraticSpline", "build", "describe", "verify"]

MIN_BIN = 1e-3  # the narrowest bin, as a share of 2B (width and height): no bin collapses
MIN_DERIVATIVE = 1e-3  # the shallowest slope at a knot: the map stays strictly monotone


class RationalQuadraticSpline(Transformer):
    """A monotone rational-quadratic spline on [-bound, bound] with ``bins`` bins, the identity
    outside; parameters: bins raw widths, bins raw heights, bins - 1 raw inner derivatives. All
    zero give equal bins and unit derivatives: the identity."""

    def __init__(self, bins: int = 8, bound: float = 3.0) -> None:
        if bins < 2 or bins * MIN_BIN >= 1 or not bound > 0:
            raise ValueError(f"a spline needs 2 to {math.ceil(1 / MIN_BIN) - 1} bins and a bound > 0")
        self.bins, self.bound = bins, float(bound)
        self.params_per_dim = 3 * bins - 1
        self.name, self.flow = "rational-quadratic spline", "NSF"
        # softplus(0 + shift) + MIN_DERIVATIVE = 1: raw derivatives of 0 give slope 1
        self._shift = math.log(math.expm1(1 - MIN_DERIVATIVE))

    def describe(self) -> str:
        return f"rational-quadratic spline, {self.bins} bins on [-{self.bound:g}, {self.bound:g}]"

    def _shares(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(bin shares of 2B (..., 2, K, N): widths then heights; their running sums, the right
        knots as shares; derivatives at the K + 1 knots (..., K+1, N), 1 at both ends)."""
        k = self.bins
        raw = params[..., : 2 * k, :].unflatten(-2, (2, k))
        share = MIN_BIN + (1 - MIN_BIN * k) * torch.softmax(raw, -2)
        slopes = MIN_DERIVATIVE + F.softplus(params[..., 2 * k :, :] + self._shift)
        return share, torch.cumsum(share, -2), F.pad(slopes, (0, 0, 1, 1), value=1.0)

    def knots(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(knots in x, knots in u, derivatives at the knots), each (..., K+1, N)."""
        _, cum, slopes = self._shares(params)
        edges = F.pad((2 * self.bound) * cum - self.bound, (0, 0, 1, 0), value=-self.bound)
        return edges[..., 0, :, :], edges[..., 1, :, :], slopes

    def _cell(self, params: torch.Tensor, v: torch.Tensor, row: int) -> tuple[torch.Tensor, ...]:
        """For values v (..., N) in [-B, B], placed among the knots of ``row`` (0: x, 1: u), the
        bin's x_k, width, u_k, height, and derivatives d_k, d_k+1, each (..., N). Only what the
        bins need is gathered, from shares laid out (..., K, N): at small shapes a training step
        is mostly the count of operations, at large ones their passes over memory."""
        b = self.bound
        share, cum, slopes = self._shares(params)
        place = ((v + b) / (2 * b))[..., None, :]  # as a share of 2B
        index = (place >= cum[..., row, :-1, :]).sum(-2, keepdim=True)  # (..., 1, N) in 0..K-1
        at = index[..., None, :, :].expand(*cum.shape[:-2], 1, v.shape[-1])
        width, height = ((2 * b) * share.gather(-2, at)[..., 0, :]).unbind(-2)
        x_right, u_right = ((2 * b) * cum.gather(-2, at)[..., 0, :] - b).unbind(-2)
        d0 = slopes.gather(-2, index)[..., 0, :]
        d1 = slopes.gather(-2, index + 1)[..., 0, :]
        return x_right - width, width, u_right - height, height, d0, d1

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.bound
        inside = (x >= -b) & (x <= b)
        v = x.clamp(-b, b)
        x0, w, y0, h, d0, d1 = self._cell(params, v, 0)
        xi = ((v - x0) / w).clamp(0, 1)
        s = h / w
        between = xi * (1 - xi)
        den = s + (d1 + d0 - 2 * s) * between
        u = y0 + h * (s * xi.square() + d0 * between) / den
        slope = s.square() * (d1 * xi.square() + 2 * s * between + d0 * (1 - xi).square())
        log_det = torch.log(slope) - 2 * torch.log(den)
        return torch.where(inside, u, x), torch.where(inside, log_det, 0.0)

    def inverse(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        b = self.bound
        inside = (u >= -b) & (u <= b)
        v = u.clamp(-b, b)
        x0, w, y0, h, d0, d1 = self._cell(params, v, 1)
        s = h / w
        rel = v - y0
        curve = d1 + d0 - 2 * s
        qa = h * (s - d0) + rel * curve
        qb = h * d0 - rel * curve
        qc = -s * rel
        root = torch.sqrt((qb.square() - 4 * qa * qc).clamp_min(0))
        xi = (2 * qc / (-qb - root)).clamp(0, 1)  # the root in [0, 1], stable where qa is near 0
        return torch.where(inside, x0 + xi * w, u)


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
