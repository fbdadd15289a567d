"""Likelihood heads: what the P outputs a MADE gives each dimension mean, and how to draw from them.

A head turns the parameters (B, P, D) of p(x_d | x_<d) into log-densities and draws. Draws take
uniform noise, U numbers per dimension, so that the degree-scheduled sampler and the naive
one produce the same values from the same noise. Heads have no weights of their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from .sections import HeadName

__all__ = [
    "Bernoulli", "Categorical", "ColumnHeads", "ColumnLaw", "Gaussian", "Head", "HeadName",
    "MixtureOfGaussians", "RealColumns", "check_observed", "check_rows", "make_head",
    "standard_normal_log_prob",
]  # fmt: skip

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _normal_quantile(u: torch.Tensor) -> torch.Tensor:
    """Standard normal inverse CDF, with u kept off 0 and 1 so no draw is infinite."""
    tiny = torch.finfo(u.dtype).eps
    return torch.special.ndtri(u.clamp(tiny, 1 - tiny))


def _pick(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw of a category (B,) from probabilities (B, L) and uniforms (B,)."""
    below = (probs.cumsum(-1) <= u[:, None]).sum(-1)
    return below.clamp(max=probs.shape[-1] - 1)


def _spread(train: torch.Tensor) -> torch.Tensor:
    """Per-dimension standard deviation (D,), kept finite and off zero (one row has none)."""
    if train.shape[0] < 2:
        return torch.ones(train.shape[1], dtype=train.dtype, device=train.device)
    return train.std(0).clamp_min(1e-3)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, 1) elementwise: a VAE's prior and posterior noise, a flow's normal base."""
    return -0.5 * z**2 - _HALF_LOG_2PI


def _normal_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - mean) * torch.exp(-log_scale)) ** 2 - log_scale - _HALF_LOG_2PI


def _log_sigmoid(logits: torch.Tensor) -> torch.Tensor:
    """log sigmoid(l) = min(l, 0) - log1p(exp(-|l|)), to about an ulp, from exp and log alone.

    On CPUs torch's AVX-512 kernels compute log1p (so log-sigmoid and the fused
    binary_cross_entropy_with_logits) one element at a time: over 10% of a 1x500 MADE's
    training step, about five times what this costs. On GPUs torch's kernel is one fast pass,
    and in half precision the rounding of each step here would show, so those keep it.
    """
    if logits.device.type != "cpu" or logits.dtype not in (torch.float32, torch.float64):
        return F.logsigmoid(logits)
    e = torch.exp(-logits.abs())
    u = 1 + e
    # log1p(e): log(u) corrected by the rounding error of u = 1 + e, which (u - 1) - e gives exactly
    return logits.clamp_max(0) - (torch.log(u) - ((u - 1) - e) / u)


class _BernoulliLogProb(torch.autograd.Function):
    """log p(x | l) = (x - 1) l + log sigmoid(l): minus binary_cross_entropy_with_logits, to
    float rounding, with its one-pass gradient x - sigmoid(l) (autograd through
    ``_log_sigmoid`` would take a pass per operation)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, x)
        return (x - 1) * logits + _log_sigmoid(logits)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        logits, x = ctx.saved_tensors
        d_logits = grad * (x - torch.sigmoid(logits)) if ctx.needs_input_grad[0] else None
        d_x = grad * logits if ctx.needs_input_grad[1] else None
        return d_logits, d_x


class Head:
    """The conditional law of one dimension given its parameters."""

    name: str
    params_per_dim: int  # P
    noise_per_dim: int  # U: uniforms one draw takes
    discrete: bool  # likelihoods are probabilities (bits/dim apply) rather than densities

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x_d | params_d) (B, D) from params (B, P, D)."""
        raise NotImplementedError

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """One value per row (B,) for one dimension, from params (B, P) and uniforms (B, U)."""
        raise NotImplementedError

    def init_bias(self, train: torch.Tensor) -> torch.Tensor:
        """Output biases (P, D) that start an untrained MADE at (or, for a mixture, near) the
        fit of each marginal on its own."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def baseline(self) -> Head:
        """The head whose fit to each marginal alone is the baseline a model must beat."""
        return self

    def column(self, d: int) -> Head:
        """The law of dimension ``d`` alone, for drawing it: the same for every dimension, except
        in a table's ``ColumnHeads``."""
        return self

    def invalid_values(self, x: torch.Tensor) -> str | None:
        """Why ``x`` holds values this head does not model (None if it holds none): a Bernoulli
        log-likelihood of 0.5 or 7 is a number, but a meaningless one."""
        return None if bool(torch.isfinite(x).all()) else "values must be finite"


class Bernoulli(Head):
    """Binary data: one logit per dimension."""

    name, params_per_dim, noise_per_dim, discrete = "bernoulli", 1, 1, True

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # squeeze, not [:, 0]: select's backward would allocate and copy the gradient
        return _BernoulliLogProb.apply(params.squeeze(1), x)

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return (u[:, 0] < torch.sigmoid(params[:, 0])).to(params.dtype)

    def invalid_values(self, x: torch.Tensor) -> str | None:
        return None if bool(((x == 0) | (x == 1)).all()) else "values must be 0 or 1"

    def init_bias(self, train: torch.Tensor) -> torch.Tensor:
        return torch.logit(train.mean(0).clamp(1e-4, 1 - 1e-4))[None]


class Categorical(Head):
    """Discrete data with ``levels`` values 0..L-1 per dimension: L logits each."""

    name, noise_per_dim, discrete = "categorical", 1, True

    def __init__(self, levels: int) -> None:
        if levels < 2:
            raise ValueError("a categorical head needs at least 2 levels")
        self.levels = self.params_per_dim = levels

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(params, dim=1).gather(1, x.long()[:, None]).squeeze(1)

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return _pick(torch.softmax(params, -1), u[:, 0]).to(params.dtype)

    def init_bias(self, train: torch.Tensor) -> torch.Tensor:
        # one level at a time: a one-hot of the whole set would be N x D x L
        counts = torch.stack([(train == level).sum(0) for level in range(self.levels)]).to(train.dtype)
        return torch.log((counts + 1) / (counts.sum(0) + self.levels))  # (L, D), add-one smoothed

    def describe(self) -> str:
        return f"categorical, {self.levels} levels"

    def invalid_values(self, x: torch.Tensor) -> str | None:
        ok = (x == x.round()) & (x >= 0) & (x < self.levels)
        return None if bool(ok.all()) else f"values must be integers 0..{self.levels - 1}"


class Gaussian(Head):
    """Real data: mean and log standard deviation per dimension (MAF's conditional, Papamakarios 2017)."""

    name, params_per_dim, noise_per_dim, discrete = "gaussian", 2, 1, False

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _normal_log_prob(x, params[:, 0], params[:, 1])

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return params[:, 0] + torch.exp(params[:, 1]) * _normal_quantile(u[:, 0])

    def init_bias(self, train: torch.Tensor) -> torch.Tensor:
        return torch.stack([train.mean(0), _spread(train).log()])


class MixtureOfGaussians(Head):
    """Real data: a mixture of ``components`` Gaussians per dimension (logits, means, log scales)."""

    name, noise_per_dim, discrete = "mog", 2, False

    def __init__(self, components: int) -> None:
        if components < 1:
            raise ValueError("a mixture needs at least one component")
        self.components = components
        self.params_per_dim = 3 * components

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = self.components
        return params[:, :k], params[:, k : 2 * k], params[:, 2 * k :]

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, means, log_scales = self._split(params)  # each (B, K, D)
        per = F.log_softmax(logits, dim=1) + _normal_log_prob(x[:, None], means, log_scales)
        return torch.logsumexp(per, dim=1)

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        logits, means, log_scales = self._split(params)  # each (B, K)
        k = _pick(torch.softmax(logits, -1), u[:, 0])[:, None]
        return (means.gather(1, k) + log_scales.gather(1, k).exp() * _normal_quantile(u[:, 1:2]))[:, 0]

    def init_bias(self, train: torch.Tensor) -> torch.Tensor:
        # Equal weights, means spread over the marginal's central range: distinct components
        # from the first step, or they would all get the same gradient.
        mean, std = train.mean(0), _spread(train)
        spread = torch.linspace(-1.0, 1.0, self.components, dtype=train.dtype, device=train.device)[:, None]
        if self.components == 1:
            spread = torch.zeros_like(spread)
        logits = torch.zeros(self.components, train.shape[1], dtype=train.dtype, device=train.device)
        means = mean + spread * std
        log_scales = (std / math.sqrt(self.components)).log().expand(self.components, -1)
        return torch.cat([logits, means, log_scales])

    def describe(self) -> str:
        return f"mixture of {self.components} Gaussians"

    def baseline(self) -> Head:
        return Gaussian()  # a mixture fitted to a marginal would need EM; its single Gaussian does


# A real column's mixture keeps its means inside the training rows' range [low, high] (on the
# y scale) and each component's scale at most a third of its mean's distance to that range
# widened by its width on each side (in the file's units: on the log scale the edges are not
# symmetric): a draw lands beyond the widened range only past 3 standard deviations of its
# component, at most 0.14% of draws whatever the weights, while central components may be as
# wide as the column. Nor can a scale shrink below a share of the width onto single values.
_SMALLEST_SCALE = 1e-3  # of the width of [low, high]
_SPREAD_IN_MARGIN = 3.0


def _edges(law: ColumnLaw, margin: bool = True) -> tuple[float, float, float]:
    """(lower edge, upper edge, smallest scale) on a real column's y scale: the training range
    widened by its width in the file's units (-inf where that reaches below 0 on the log scale);
    without ``margin`` no edges (the independent baseline's single Gaussian spreads freely)."""
    width = law.high - law.low
    if not margin:
        return -math.inf, math.inf, width * _SMALLEST_SCALE
    below = above = width
    if law.log:  # the x range [a, b] widened to [2a - b, 2b - a]: log(2 - a/b), -log(2 - b/a)
        span = law.scale * width
        above = math.log1p(-math.expm1(-span)) / law.scale
        below = -math.log(2 - math.exp(span)) / law.scale if span < math.log(2) else math.inf
    smallest = min(width * _SMALLEST_SCALE, min(above, below) / _SPREAD_IN_MARGIN / 10)
    return law.low - below, law.high + above, smallest


@dataclass(frozen=True)
class ColumnLaw:
    """How a table's column is modelled, as plain numbers saved with the run (``tables.Column``
    decides them from the training rows).

    ``levels`` > 0: a categorical over codes 0..L-1. Otherwise a real column, modelled on
    y = (g(x) - shift) / scale with g = log when ``log`` (a positive, right-skewed column), else
    the identity; log p(x) adds log|dy/dx|, so it stays a density on the file's scale. ``lower``:
    no value below it (a density truncated there; on a grid, the lowest cell takes all the mass
    below). ``mass``: a value that holds a share of the rows of its own (a point mass: p(x = mass)
    is a probability, the other values a density times 1 - that). ``step``: values on the grid
    ``origin`` + k * ``step``, whose law is the mixture's probability of each value's cell (a
    discretised law, which cannot collapse onto the values). ``low``, ``high``: the training
    rows' range of y, which bounds the mixture's means and scales. A run saved before laws were
    kept has none (``legacy``): its real columns keep the unbounded mixture on the raw scale.
    """

    levels: int = 0
    shift: float = 0.0
    scale: float = 1.0
    log: bool = False
    lower: float | None = None
    mass: float | None = None
    step: float | None = None
    origin: float = 0.0
    low: float = -math.inf
    high: float = math.inf
    legacy: bool = False  # a run saved before laws were kept: raw scale, no embedding

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnLaw:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        """The law in a few words (the training log's column list)."""
        if self.levels:
            return f"categorical, {self.levels} categories"
        parts = ["log scale" if self.log else "standardised"]
        if self.step is not None:
            parts.append(f"on a grid of step {self.step:g}")
        if self.lower is not None:
            parts.append(f">= {self.lower:g}")
        if self.mass is not None:
            parts.append(f"point mass at {self.mass:g}")
        return ", ".join(parts)


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(a)) for a <= 0, accurate at both ends (Maechler 2012)."""
    return torch.where(a > -math.log(2), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def _log_normal_mass(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """log(Phi(zb) - Phi(za)) for za <= zb, computed in the tail where the two are small."""
    flip = za + zb > 0  # both far right: Phi(-za) - Phi(-zb) is the same number, without 1 - 1
    lo, hi = torch.where(flip, -zb, za), torch.where(flip, -za, zb)
    upper = torch.special.log_ndtr(hi)
    return upper + _log1mexp((torch.special.log_ndtr(lo) - upper).clamp_max(0))


class RealColumns(Head):
    """A table's real columns, each with its ``ColumnLaw``: a mixture of ``components`` Gaussians
    on the column's standardised (or log) scale, with bounded means and scales, and where the law
    says so truncated below, discretised on a grid, or with a point mass (an extra logit).

    Parameters per column: K logits, K means, K scales (both through a sigmoid into their
    bounds), and the point mass's logit when any column has one. Draws take 3 uniforms: the
    component, the value (inverse CDF of the truncated component), the point mass.
    """

    name, discrete = "mog", False

    def __init__(self, laws: Sequence[ColumnLaw], components: int, margin: bool = True) -> None:
        if not laws or any(law.levels or law.legacy or not math.isfinite(law.low) for law in laws):
            raise ValueError("RealColumns takes the laws of real columns")
        self.laws, self.components, self.margin = tuple(laws), components, margin
        self.has_mass = any(law.mass is not None for law in laws)
        self.params_per_dim = 3 * components + int(self.has_mass)
        self.noise_per_dim = 3
        t = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
        inf = math.inf
        self._c = {
            "shift": t([law.shift for law in laws]),
            "scale": t([law.scale for law in laws]),
            "log": torch.tensor([law.log for law in laws]),
            "grid": torch.tensor([law.step is not None for law in laws]),
            "step": t([law.step or 0.0 for law in laws]),
            "origin": t([law.origin for law in laws]),
            "lower": t([-inf if law.lower is None else law.lower for law in laws]),
            "mass": t([inf if law.mass is None else law.mass for law in laws]),
            "low": t([law.low for law in laws]),
            "width": t([law.high - law.low for law in laws]),
            "lower_edge": t([_edges(law, margin)[0] for law in laws]),
            "upper_edge": t([_edges(law, margin)[1] for law in laws]),
            "log_smallest": t([math.log(_edges(law, margin)[2]) for law in laws]),
        }
        # the truncation point on the y scale (-inf: none); a grid censors instead of truncating
        lower = self._c["lower"]
        lower_y = (
            torch.where(self._c["log"], torch.log(lower.clamp_min(1e-300)), lower) - self._c["shift"]
        ) / (self._c["scale"])
        self._c["lower_y"] = torch.where(self._c["grid"] | torch.isinf(self._c["lower"]), -inf, lower_y)
        self._converted: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    def _const(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """A per-column constant on ``like``'s device (and dtype, but for flags), converted once
        per device and dtype: a training step reads a dozen of them."""
        key = (name, like.device, like.dtype)
        value = self._converted.get(key)
        if value is None:
            value = self._c[name]
            value = value.to(like.device) if value.dtype == torch.bool else value.to(like)
            self._converted[key] = value
        return value

    def _mixture(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log weights, means, log scales), each (B, K, R), on the y scale, within their bounds."""
        k = self.components
        low, width = self._const("low", params), self._const("width", params)
        means = low + width * torch.sigmoid(params[:, k : 2 * k])
        smallest = self._const("log_smallest", params)
        log_scales = smallest + (self._log_largest(means) - smallest) * torch.sigmoid(
            params[:, 2 * k : 3 * k]
        )
        return F.log_softmax(params[:, :k], dim=1), means, log_scales

    def _log_largest(self, means: torch.Tensor) -> torch.Tensor:
        """The log of the largest scale components of these means may take (see ``_edges``):
        a third of the distance to the nearer edge, and never over the range's width."""
        lower, upper = self._const("lower_edge", means), self._const("upper_edge", means)
        distance = torch.minimum(means - lower, upper - means) / _SPREAD_IN_MARGIN
        return torch.log(torch.minimum(distance, self._const("width", means)))

    def _to_y(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, log|dy/dx|) (B, R) of values x (any positive value where the scale is log)."""
        log, scale = self._const("log", x), self._const("scale", x)
        g = torch.where(log, torch.log(torch.where(log, x, 1.0).clamp_min(torch.finfo(x.dtype).tiny)), x)
        y = (g - self._const("shift", x)) / scale
        return y, -torch.log(scale) - torch.where(log, g, 0.0)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # Every branch is computed on values it can take (infinities would give NaN gradients
        # through torch.where), and the branch that applies is picked.
        log_w, means, log_scales = self._mixture(params)  # (B, K, R)
        inv = torch.exp(-log_scales)
        mass = self._const("mass", x)
        at_mass = x == mass
        lower, grid, log = self._const("lower", x), self._const("grid", x), self._const("log", x)
        below = (x < lower) | (log & (x <= 0))
        safe = torch.where(at_mass | below | ~torch.isfinite(x), self._const("origin", x).abs() + 1, x)
        # a density on the y scale, renormalised above the truncation point
        y, log_jacobian = self._to_y(safe)
        density = torch.logsumexp(log_w + _normal_log_prob(y[:, None], means, log_scales), 1)
        lower_y = self._const("lower_y", x)
        truncated = torch.isfinite(lower_y)
        z_lower = (torch.where(truncated, lower_y, 0.0) - means) * inv
        kept = torch.logsumexp(log_w + torch.special.log_ndtr(-z_lower), 1)
        density = density - torch.where(truncated, kept, 0.0) + log_jacobian
        # on a grid: the probability of the value's cell, the lowest cell open below
        half = self._const("step", x) / 2  # a grid is never on the log scale: its y is linear
        half_y = half / self._const("scale", x)  # the cell's edges on the y scale, from y itself
        ya = torch.where(grid, y - half_y, y - 1)
        yb = torch.where(grid, y + half_y, y + 1)
        za, zb = (ya[:, None] - means) * inv, (yb[:, None] - means) * inv
        open_below = (safe - half < lower)[:, None]
        cell_mass = _log_normal_mass(torch.where(open_below, zb - 1, za), zb)
        cell = torch.logsumexp(log_w + torch.where(open_below, torch.special.log_ndtr(zb), cell_mass), 1)
        value = torch.where(grid, cell, density)
        if self.has_mass:
            logit = params[:, 3 * self.components]
            value = torch.where(at_mass, F.logsigmoid(logit), F.logsigmoid(-logit) + value)
        return torch.where(below & ~at_mass, -math.inf, value)

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if len(self.laws) != 1:
            raise TypeError("draw one column at a time: column(d)")
        log_w, means, log_scales = self._mixture(params[:, :, None])  # (B, K, 1)
        log_w, means, scales = log_w[..., 0], means[..., 0], log_scales[..., 0].exp()  # (B, K)
        c = {name: float(v[0]) for name, v in self._c.items()}
        # the component by its weight above the truncation point, then the inverse CDF of its
        # truncated normal, read from the upper tail so that deep truncation stays accurate
        tail = torch.special.log_ndtr((means - c["lower_y"]) / scales)  # log P_k(y >= lower)
        k = _pick(torch.softmax(log_w + tail, -1), u[:, 0])[:, None]
        m, s, t = means.gather(1, k)[:, 0], scales.gather(1, k)[:, 0], tail.gather(1, k)[:, 0]
        tiny = torch.finfo(params.dtype).tiny
        q = ((1 - u[:, 1]) * t.exp()).clamp(tiny, 1 - torch.finfo(params.dtype).eps)
        y = m - s * torch.special.ndtri(q)
        g = y * c["scale"] + c["shift"]
        x = torch.exp(g) if c["log"] else g
        if c["grid"]:
            x = c["origin"] + c["step"] * torch.round((x - c["origin"]) / c["step"])
        x = x.clamp_min(c["lower"]) if math.isfinite(c["lower"]) else x
        if self.has_mass and math.isfinite(c["mass"]):
            x = torch.where(u[:, 2] < torch.sigmoid(params[:, 3 * self.components]), c["mass"], x)
        return x

    def init_bias(self, train: torch.Tensor) -> torch.Tensor:
        """Equal weights, means at the quantiles of each column's y (observed values off the
        point mass), scales a share of its spread, and the point mass's share of the rows."""
        k = self.components
        bias = torch.zeros(self.params_per_dim, train.shape[1], dtype=train.dtype, device=train.device)
        for r, law in enumerate(self.laws):
            smallest = _edges(law, self.margin)[2]
            x = train[:, r]
            x = x[~torch.isnan(x)]
            on = x != law.mass if law.mass is not None else torch.ones_like(x, dtype=torch.bool)
            y = self.column(r)._to_y(x[on][:, None])[0][:, 0]
            y = y if y.numel() else torch.zeros(1, dtype=train.dtype, device=train.device)
            width = law.high - law.low
            levels = (torch.arange(k, dtype=y.dtype, device=y.device) + 0.5) / k
            q = torch.quantile(y, levels) if k > 1 else y.mean()[None]
            bias[k : 2 * k, r] = torch.logit(((q - law.low) / width).clamp(0.01, 0.99))
            means = law.low + width * torch.sigmoid(bias[k : 2 * k, r])  # as _mixture reads them
            largest = self.column(r)._log_largest(means[:, None]).exp()[:, 0]  # (K,)
            spread = (y.std() if y.numel() > 1 else y.new_tensor(width / 4)) / math.sqrt(k)
            share = torch.log(spread.clamp_min(1e-12) / smallest) / torch.log(largest / smallest)
            bias[2 * k : 3 * k, r] = torch.logit(share.clamp(0.01, 0.99))
            if self.has_mass and law.mass is not None and x.numel():
                bias[3 * k, r] = torch.logit((~on).to(y.dtype).mean().clamp(1e-3, 1 - 1e-3))
        return bias

    def describe(self) -> str:
        return f"mixture of {self.components} Gaussian{'s' if self.components > 1 else ''}, bounded"

    def baseline(self) -> Head:
        """One Gaussian per column under its law, free to spread as the column does."""
        return RealColumns(self.laws, 1, margin=False)

    def column(self, d: int) -> Head:
        return RealColumns([self.laws[d]], self.components, self.margin)


class _ColumnView(Head):
    """A head that reads the first ``params`` of padded parameters (a ``ColumnHeads`` column)."""

    def __init__(self, head: Head, params: int) -> None:
        self.inner, self.params = head, params
        self.name, self.discrete = head.name, head.discrete
        self.params_per_dim, self.noise_per_dim = params, head.noise_per_dim

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.inner.draw(params[:, : self.params], u[:, : self.inner.noise_per_dim])


class ColumnHeads(Head):
    """A table's columns, each with its own law: categorical over a discrete column's L
    categories (codes 0..L-1), and for the real columns their ``ColumnLaw``s (``RealColumns``:
    bounded mixtures on each column's own scale), or, for a run saved before laws were kept, the
    ``real`` head (a Gaussian or a mixture) on the raw values.

    log p(x) stays exact: a sum of log-probabilities and log-densities. The MADE gives every
    column the same number P of parameters, the widest column's; a column reads the first of
    them (a categorical column of L < P categories has its other logits at -inf). A missing cell
    (NaN) is not scored here: the model leaves it out of the sum.
    """

    name = "columns"

    def __init__(self, levels: Sequence[int], real: Head, laws: Sequence[ColumnLaw] | None = None) -> None:
        if not levels or any(level == 1 or level < 0 for level in levels):
            raise ValueError("levels: per column 0 (real) or at least 2 categories")
        if laws is not None and [law.levels for law in laws] != list(levels):
            raise ValueError("laws: one per column, with the columns' levels")
        self.levels, self.laws = tuple(int(v) for v in levels), None if laws is None else tuple(laws)
        self.discrete_dims = [d for d, level in enumerate(self.levels) if level]
        self.real_dims = [d for d, level in enumerate(self.levels) if not level]
        new_laws = self.laws is not None and self.real_dims and not self.laws[self.real_dims[0]].legacy
        if new_laws and not isinstance(real, RealColumns):
            k = real.components if isinstance(real, MixtureOfGaussians) else 1
            real = RealColumns([self.laws[d] for d in self.real_dims], k)
        self.real = real
        self.max_levels = max(self.levels)
        self.params_per_dim = max(self.max_levels, real.params_per_dim if self.real_dims else 0)
        self.noise_per_dim = max(1 if self.discrete_dims else 0, real.noise_per_dim if self.real_dims else 0)
        self.discrete = not self.real_dims
        # -inf for the logits beyond each discrete column's categories (L_max, D_discrete)
        present = torch.arange(self.max_levels)[:, None] < torch.tensor(
            [self.levels[d] for d in self.discrete_dims]
        )
        self._absent = torch.where(present, 0.0, -torch.inf)
        self._order = torch.tensor(self.discrete_dims + self.real_dims).argsort()  # parts -> columns
        self._fill = torch.tensor(
            [
                0.0 if level or self.laws is None else self.laws[d].origin
                for d, level in enumerate(self.levels)
            ]
        )

    @property
    def column_params(self) -> tuple[int, ...]:
        """The parameters each column reads (the rest of the P are padding)."""
        real = self.real.params_per_dim if self.real_dims else 0
        return tuple(level if level else real for level in self.levels)

    def split_columns(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the discrete columns of ``x``, the real ones), in ``log_prob_parts``' order."""
        return x[..., self.discrete_dims], x[..., self.real_dims]

    def log_prob_parts(self, params: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p of the discrete columns (B, D_discrete), of the real ones (B, D_real): densities,
        or probabilities at a point mass or on a grid)."""
        x_disc, x_real = self.split_columns(x)
        p_disc, p_real = self.split_columns(params)
        if self.discrete_dims:
            logits = p_disc[:, : self.max_levels] + self._absent.to(params)
            disc = F.log_softmax(logits, dim=1).gather(1, x_disc.long()[:, None]).squeeze(1)
        else:
            disc = x.new_zeros(x.shape[0], 0)
        real = (
            self.real.log_prob(p_real[:, : self.real.params_per_dim], x_real)
            if self.real_dims
            else (x.new_zeros(x.shape[0], 0))
        )
        return disc, real

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        disc, real = self.log_prob_parts(params, x)
        return torch.cat([disc, real], 1)[:, self._order.to(x.device)]

    def column(self, d: int) -> Head:
        if self.levels[d]:
            return _ColumnView(Categorical(self.levels[d]), self.levels[d])
        if isinstance(self.real, RealColumns):
            return _ColumnView(self.real.column(self.real_dims.index(d)), self.real.params_per_dim)
        return _ColumnView(self.real, self.real.params_per_dim)

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        raise TypeError("a table's columns each have their own law: draw through column(d)")

    def fill_value(self) -> torch.Tensor:
        """(D,) a value each column's law can score, put in a missing cell's place (its score is
        then left out): code 0, or a real column's origin."""
        return self._fill

    def init_bias(self, train: torch.Tensor) -> torch.Tensor:
        bias = torch.zeros(self.params_per_dim, train.shape[1], dtype=train.dtype, device=train.device)
        for d in self.discrete_dims:
            level = self.levels[d]
            column = train[:, d : d + 1]
            column = column[~torch.isnan(column[:, 0])]
            bias[:level, d] = Categorical(level).init_bias(column)[:, 0]
        if self.real_dims:
            bias[: self.real.params_per_dim, self.real_dims] = self.real.init_bias(train[:, self.real_dims])
        return bias

    def baseline(self) -> Head:
        """The head whose marginal fit is the independent baseline: one Gaussian per real column
        (under the column's law, where it has one)."""
        if isinstance(self.real, RealColumns):
            return ColumnHeads(self.levels, self.real.baseline(), self.laws)
        real = Gaussian() if isinstance(self.real, MixtureOfGaussians) else self.real
        return ColumnHeads(self.levels, real, self.laws)

    def describe(self) -> str:
        parts = []
        if self.discrete_dims:
            levels = sorted({self.levels[d] for d in self.discrete_dims})
            span = f"{levels[0]}" if len(levels) == 1 else f"{levels[0]}-{levels[-1]}"
            parts.append(f"{len(self.discrete_dims)} categorical ({span} categories)")
        if self.real_dims:
            parts.append(f"{len(self.real_dims)} {self.real.describe()}")
        return "per column: " + ", ".join(parts)

    def invalid_values(self, x: torch.Tensor) -> str | None:
        """Missing cells (NaN) pass: whether a model takes them is the model's to say."""
        if bool(torch.isinf(x).any()):
            return "values must be finite"
        levels = torch.tensor(self.levels, dtype=x.dtype, device=x.device)
        discrete = levels > 0
        ok = ~discrete | torch.isnan(x) | ((x == x.round()) & (x >= 0) & (x < levels))
        return None if bool(ok.all()) else "a discrete column's values must be its codes 0..L-1"


def check_rows(x: torch.Tensor, features: int, head: Head | None, what: str = "x") -> None:
    """A ValueError unless ``x`` is (rows, features) of values ``head`` models (any values
    when ``head`` is None: the shape alone needs no pass over the data)."""
    if x.dim() != 2 or x.shape[1] != features:
        raise ValueError(f"{what} must be (rows, {features}); got shape {tuple(x.shape)}")
    problem = None if head is None else head.invalid_values(x)
    if problem is not None:
        raise ValueError(f"{what}: {problem} for this model's {head.describe()} head")


def check_observed(observed: torch.Tensor, x: torch.Tensor) -> None:
    """A ValueError unless ``observed`` is a boolean mask of ``x``'s shape."""
    if observed.dtype != torch.bool or observed.shape != x.shape:
        raise ValueError(f"observed must be a bool tensor of x's shape {tuple(x.shape)}")


def make_head(
    name: str, levels: int = 2, components: int = 1, columns: Sequence[ColumnLaw] | None = None
) -> Head:
    """The head a config names; ``levels`` for categorical, ``components`` for mog. For a table,
    ``columns`` gives each column's law, and ``name`` the real columns' mixture (auto: of
    ``components`` Gaussians; gaussian: of one)."""
    if columns is not None:
        real = Gaussian() if name == "gaussian" else MixtureOfGaussians(components)
        return ColumnHeads([law.levels for law in columns], real, columns)
    if name == "bernoulli":
        return Bernoulli()
    if name == "categorical":
        return Categorical(levels)
    if name == "gaussian":
        return Gaussian()
    if name == "mog":
        return MixtureOfGaussians(components)
    raise ValueError(f"unknown head {name!r}")
