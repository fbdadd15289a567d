"""Likelihood heads: what the P outputs a MADE gives each dimension mean, and how to draw from them.

A head turns the parameters (B, P, D) of p(x_d | x_<d) into log-densities and draws. Draws take
uniform noise, U numbers per dimension, so that the degree-scheduled sampler and the naive
one produce the same values from the same noise. Heads have no weights of their own.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .config import HeadName

__all__ = [
    "Bernoulli", "Categorical", "ColumnHeads", "Gaussian", "Head", "HeadName", "MixtureOfGaussians",
    "check_observed", "check_rows", "make_head", "standard_normal_log_prob",
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
    categories (codes 0..L-1), ``real`` (a Gaussian or a mixture) for a real column.

    log p(x) stays exact: a sum of log-probabilities and log-densities. The MADE gives every
    column the same number P of parameters, the widest column's; a column reads the first of
    them (a categorical column of L < P categories has its other logits at -inf).
    """

    name = "columns"

    def __init__(self, levels: list[int] | tuple[int, ...], real: Head) -> None:
        if not levels or any(level == 1 or level < 0 for level in levels):
            raise ValueError("levels: per column 0 (real) or at least 2 categories")
        self.levels, self.real = tuple(int(v) for v in levels), real
        self.discrete_dims = [d for d, level in enumerate(self.levels) if level]
        self.real_dims = [d for d, level in enumerate(self.levels) if not level]
        self.max_levels = max(self.levels)
        self.params_per_dim = max(self.max_levels, real.params_per_dim if self.real_dims else 0)
        self.noise_per_dim = max(1 if self.discrete_dims else 0, real.noise_per_dim if self.real_dims else 0)
        self.discrete = not self.real_dims
        self._categorical = Categorical(self.max_levels) if self.discrete_dims else None
        # -inf for the logits beyond each discrete column's categories (L_max, D_discrete)
        present = torch.arange(self.max_levels)[:, None] < torch.tensor(
            [self.levels[d] for d in self.discrete_dims]
        )
        self._absent = torch.where(present, 0.0, -torch.inf)
        self._order = torch.tensor(self.discrete_dims + self.real_dims).argsort()  # parts -> columns

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., self.discrete_dims], x[..., self.real_dims]

    def log_prob_parts(self, params: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p of the discrete columns (B, D_discrete), log densities of the real ones (B, D_real))."""
        x_disc, x_real = self._split(x)
        p_disc, p_real = self._split(params)
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
        return _ColumnView(self.real, self.real.params_per_dim)

    def draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        raise TypeError("a table's columns each have their own law: draw through column(d)")

    def init_bias(self, train: torch.Tensor) -> torch.Tensor:
        bias = torch.zeros(self.params_per_dim, train.shape[1], dtype=train.dtype, device=train.device)
        for d in self.discrete_dims:
            level = self.levels[d]
            bias[:level, d] = Categorical(level).init_bias(train[:, d : d + 1])[:, 0]
        if self.real_dims:
            bias[: self.real.params_per_dim, self.real_dims] = self.real.init_bias(train[:, self.real_dims])
        return bias

    def baseline(self) -> Head:
        """The head whose marginal fit is the independent baseline: one Gaussian per real column."""
        real = Gaussian() if isinstance(self.real, MixtureOfGaussians) else self.real
        return ColumnHeads(self.levels, real)

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
        if not bool(torch.isfinite(x).all()):
            return "values must be finite"
        levels = torch.tensor(self.levels, dtype=x.dtype, device=x.device)
        discrete = levels > 0
        ok = ~discrete | ((x == x.round()) & (x >= 0) & (x < levels))
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
    name: str, levels: int = 2, components: int = 1, column_levels: list[int] | tuple[int, ...] | None = None
) -> Head:
    """The head a config names; ``levels`` for categorical, ``components`` for mog. For a table,
    ``column_levels`` gives each column's categories (0: real), and ``name`` the real columns' law
    (auto: a mixture of ``components`` Gaussians)."""
    if column_levels is not None:
        real = Gaussian() if name == "gaussian" else MixtureOfGaussians(components)
        return ColumnHeads(column_levels, real)
    if name == "bernoulli":
        return Bernoulli()
    if name == "categorical":
        return Categorical(levels)
    if name == "gaussian":
        return Gaussian()
    if name == "mog":
        return MixtureOfGaussians(components)
    raise ValueError(f"unknown head {name!r}")
