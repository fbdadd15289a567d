"""The masked autoregressive flow (model.kind: maf): MADEs with Gaussian conditionals, stacked,
each reading the previous layer's output (Papamakarios, Pavlakou & Murray, NeurIPS 2017).

Layer t maps its input x to u = (x - mu_t(x_<d)) * exp(-alpha_t(x_<d)): triangular in the
layer's ordering, log|det du/dx| = -sum_d alpha_t. Another monotone map (a ``Transformer``: the
nsf kind's rational-quadratic spline) takes the affine one's place with nothing else changed.
The data enter standardised by a fixed affine
map from the training split; an optional batch norm follows each layer; u has a standard normal
or a MADE mixture-of-Gaussians base density ("MAF MoG"). log p(x) takes one pass. Sampling
inverts each layer in its generation order with the degree-scheduled machinery of sampling.py,
about one pass of arithmetic per layer where the peers run the network once per dimension.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ... import degrees as deg
from ... import sampling
from ...condition import UNCONDITIONAL, Condition
from ...config import Config
from ...errors import BadArgument, UsageError
from ...heads import (
    ColumnLaw,
    Gaussian,
    MixtureOfGaussians,
    check_observed,
    check_rows,
    standard_normal_log_prob,
)
from ...interface import EXACT, Completion, Verification
from ...made import MADE
from ...models import (
    ExactLikelihood,
    MADEModel,
    context_classes,
    given_context,
    input_standardisation,
    label_log_prior,
)
from ...verify import (
    MADE_COLUMNS,
    made_cells,
    triangular_report,
    verify_made,
    whole_flow_caption,
    whole_flow_error,
)
from .transformers import Affine, Transformer, TransformerInverse

__all__ = [
    "MAF", "BatchNormLayer", "MAFLayer", "build", "build_flow", "describe", "flow_verification", "verify",
]  # fmt: skip

_FIT_ROWS = 5000  # rows per pass when the MoG base is fitted to the transformed training split
_DEQUANTISE_SEED = 0x5EED  # the training split's noise when fitting the input statistics


def _columns(n: int, what: str) -> str:
    return f"{n} {what} column" + ("s" if n != 1 else "")


def _row_seed(row: np.ndarray) -> int:
    """A seed (< 2**63) from a row's values: its dequantisation stream in evaluation."""
    digest = hashlib.blake2b(row.tobytes(), digest_size=8, person=b"dequantise").digest()
    return int.from_bytes(digest, "little") >> 1


_AS_IS = sampling.Encoding()  # a layer reads the previous layer's output as it is


class MAFLayer(nn.Module):
    """One layer: a single-mask MADE on (x, context) gives the parameters of each dimension's
    monotone map (``transformer``: affine (mu, raw alpha) unless told)."""

    def __init__(self, made: MADE, transformer: Transformer | None = None) -> None:
        super().__init__()
        self.transformer = transformer or Affine()
        if made.params_per_dim != self.transformer.params_per_dim or made.num_masks != 1:
            raise ValueError(
                f"a flow layer of {self.transformer.name}s needs a single-mask MADE with "
                f"{self.transformer.params_per_dim} parameters per dimension"
            )
        self.made = made
        self._inverse = TransformerInverse(self.transformer)
        with torch.no_grad():  # every layer starts as the identity
            made.output.zero_rows()
            made.output.bias.zero_()
            if made.direct is not None:
                made.direct.zero_rows()

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(u (B, D), log|du_d/dx_d| (B, D)): the log-determinant is the sum of the second."""
        return self.transformer.forward(x, self.made(x, c))

    @torch.no_grad()
    def inverse(
        self,
        u: torch.Tensor,
        c: torch.Tensor | None,
        known: torch.Tensor,
        fill: torch.Tensor,
        fast: bool = True,
    ) -> torch.Tensor:
        """The input x (B, D) whose output is ``u`` at the ``fill`` dimensions; elsewhere x is
        ``known``. Degree-scheduled unless not ``fast`` (then one pass per dimension)."""
        return sampling.ancestral(self.made, self._inverse, _AS_IS, known, fill, 0, u[..., None], fast, c)


class BatchNormLayer(nn.Module):
    """MAF's batch norm as a bijection: u = (x - m) / sqrt(v + eps) * exp(log_gamma) + beta.

    Training normalises by the batch's mean and variance (the gradient flows through them) and
    keeps running averages; evaluation and inversion use those averages, buffers saved with the
    model, so log p(x) of a row never depends on the rows beside it. Batch statistics are used
    only where a gradient is taken in training mode (the training loss); everything else, the
    inverse included, reads the saved ones and leaves them alone. ``momentum`` 0.1: on logit
    MNIST, averages over about 100 batches (0.01) lagged the changing layers, and the validation
    NLL after one epoch was 1528 nats against 1324 at 0.1.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u (B, D), log|du_d/dx_d| (B, D))."""
        if self.training and torch.is_grad_enabled() and x.shape[0] > 1:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = torch.rsqrt(var + self.eps)
        u = (x - mean) * inv_std * torch.exp(self.log_gamma) + self.beta
        return u, (self.log_gamma + inv_std.log()).expand_as(x)

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        """x from u, with the saved statistics."""
        std = torch.sqrt(self.running_var + self.eps)
        return (u - self.beta) * torch.exp(-self.log_gamma) * std + self.running_mean


class MAF(ExactLikelihood, nn.Module):
    """A masked autoregressive flow with a standard normal or a MADE MoG base (model.kind: maf);
    with a spline ``transformer``, a neural spline flow (model.kind: nsf).

    Implements the ``DensityModel`` protocol. With ``classes`` it is p(x | y): the one-hot label
    enters every MADE (and the MoG base) at degree 0, as do ``context_features`` context columns.
    ``head`` is the per-dimension Gaussian that the trainer's independent baseline fits.

    A table's discrete columns (``column_levels``: per column its categories, 0 for real) are
    dequantised: the flow models code + u, u ~ U[0, 1), a density whose log at one draw of u is
    in expectation a lower bound on the log-probability of the codes (Theis et al. 2016).
    Training draws u afresh each step; evaluation draws a row's u from a stream seeded by a hash
    of the row, so its log p(x) is a function of the row alone.
    Samples are floored back to codes.
    """

    input_shift: torch.Tensor
    input_scale: torch.Tensor

    def __init__(
        self,
        features: int,
        hidden: Sequence[int],
        *,
        layers: int = 5,
        classes: int = 0,
        direct: bool = True,
        ordering: deg.Ordering = "natural",
        flow_ordering: str = "reverse",
        hidden_degrees: deg.HiddenDegrees = "random",
        batch_norm: bool = True,
        base: str = "normal",
        components: int = 5,
        seed: int = 0,
        context_features: int = 0,
        column_levels: Sequence[int] | None = None,
        per_column: bool = False,
        grids: Sequence[tuple[float, float, float]] | None = None,
        transformer: Transformer | None = None,
    ) -> None:
        """``transformer``: each layer's monotone map (affine unless told). ``grids``: per column
        (step, origin, lower) of a table's column on a grid, step 0 for any other; such a column
        is dequantised across its cell, and samples come back on the grid (no lower than
        ``lower``, -inf for none)."""
        super().__init__()
        if layers < 1:
            raise ValueError("a flow needs at least one layer")
        if flow_ordering not in ("reverse", "random", "same") or base not in ("normal", "mog"):
            raise ValueError("flow_ordering is reverse, random or same; base is normal or mog")
        self.head = Gaussian()
        self.transformer = transformer or Affine()
        self.classes, self.flow_ordering = classes, flow_ordering
        self._features = features
        first = "random" if flow_ordering == "random" else ordering
        nets: list[MADE] = []
        for t in range(layers + (base == "mog")):  # the MoG base's MADE continues the pattern
            params = self.transformer.params_per_dim if t < layers else 3 * components
            ranks = None
            if nets and flow_ordering != "random":
                previous = nets[-1].ranks
                ranks = features + 1 - previous if flow_ordering == "reverse" else previous
            made = MADE(
                features, hidden, context=classes + context_features, params_per_dim=params, direct=direct,
                ordering=first, hidden_degrees=hidden_degrees, seed=seed + t, ranks=ranks,
            )  # fmt: skip
            nets.append(made)
        self.layers = nn.ModuleList(MAFLayer(made, self.transformer) for made in nets[:layers])
        self.norms = nn.ModuleList(BatchNormLayer(features) for _ in range(layers) if batch_norm)
        self.base = None
        if base == "mog":
            self.base = MADEModel(nets[-1], MixtureOfGaussians(components), classes, context_features)
        self.register_buffer("input_shift", torch.zeros(features))
        self.register_buffer("input_scale", torch.ones(features))
        if classes:  # p(y) from the training labels, to sum the label out
            self.register_buffer("label_log_prior", torch.full((classes,), -math.log(classes)))
        self._register_context(context_features)
        self.per_column = per_column
        levels = [0] * features if column_levels is None else list(column_levels)
        if len(levels) != features:
            raise ValueError("column_levels: one per column")
        # not saved: they come from the table's schema, which the run keeps
        self.register_buffer("column_levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        cells = torch.tensor(
            list(grids) if grids else [(0.0, 0.0, -math.inf)] * features, dtype=torch.float32
        )
        self.register_buffer("grid_step", cells[:, 0].contiguous(), persistent=False)
        self.register_buffer("grid_origin", cells[:, 1].contiguous(), persistent=False)
        self.register_buffer("grid_lower", cells[:, 2].contiguous(), persistent=False)
        self.discrete_columns = sum(1 for d, level in enumerate(levels) if level or float(cells[d, 0]) > 0)

    @property
    def features(self) -> int:
        return self._features

    @property
    def _dtype(self) -> torch.dtype:
        return self.input_shift.dtype

    @property
    def _device(self) -> torch.device:
        return self.input_shift.device

    @property
    def estimator(self) -> str:
        base = ", MoG base" if self.base is not None else ""
        label = ", given the label" if self.classes else ""
        context = given_context(self.context_features)
        flow = f"{self.transformer.flow} of {len(self.layers)} layers{base}{label}{context}"
        if self.discrete_columns:  # said once per command: short
            columns = _columns(self.discrete_columns, "discrete")
            return f"{flow}, {columns} dequantised by uniform noise (a lower bound in expectation)"
        return f"exact, {flow}"

    def describe(self) -> str:
        made = self.layers[0].made
        norm = "batch norm after each layer" if len(self.norms) else "no batch norm"
        base = f"a MADE MoG base ({self.base.head.describe()})" if self.base is not None else "a normal base"
        maps = "" if isinstance(self.transformer, Affine) else f" ({self.transformer.describe()})"
        return (
            f"{self.transformer.flow} {len(self.layers)} layers{maps} of MADE hidden={made.hidden} "
            f"direct={made.direct is not None}, orderings {self.flow_ordering}, {norm}, {base}"
        )

    def made_nets(self) -> list[MADE]:
        """Every MADE in the model: the layers', then the base's."""
        return [layer.made for layer in self.layers] + ([self.base.net] if self.base is not None else [])

    def _ranks(self) -> torch.Tensor:
        """(M, D): the ordering of every MADE."""
        return torch.cat([net.ranks for net in self.made_nets()])

    def check_input(self, x: torch.Tensor, what: str = "x") -> None:
        check_rows(x, self.features, self.head, what)

    def dequantise(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x with U[0, 1) noise added to the discrete columns' codes (x itself when there are
        none): from ``generator`` (training), else each row's from a stream seeded by a hash of
        the row itself, so a row's log p(x) depends on nothing else: not its batch, not its
        place in a file, and two equal rows score the same."""
        if not self.discrete_columns:
            return x
        if generator is not None:
            u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
        else:
            g = torch.Generator()
            draws = [
                torch.rand(x.shape[1], generator=g.manual_seed(_row_seed(row)), dtype=x.dtype)
                for row in x.detach().cpu().double().numpy()
            ]
            u = torch.stack(draws) if draws else x.new_zeros(x.shape)
        u = u.to(x.device)
        return x + u * (self.column_levels > 0) + (u - 0.5) * self.grid_step  # a grid value: its cell

    @torch.no_grad()
    def fit_inputs(self, train: torch.Tensor, given: Condition = UNCONDITIONAL) -> None:
        """The standardising map, p(y) and the context columns' scaling from the training split;
        a MoG base's input encoding and output biases from the split as the untrained flow maps it."""
        if self.classes and given.labels is not None:
            self.label_log_prior.copy_(label_log_prior(given.labels, self.classes))
        self._fit_context(given)
        train = self.dequantise(train, generator=torch.Generator().manual_seed(_DEQUANTISE_SEED))
        shift, scale = input_standardisation(train, self.per_column)
        self.input_shift.copy_(shift)
        self.input_scale.copy_(scale)
        if self.base is not None:  # no gradient here: batch norm reads its saved statistics
            through = given  # the flow's map of the split: without labels, any class does for a start
            if self.classes and given.labels is None:
                through = given.with_labels(0)
            parts = []
            for i in range(0, train.shape[0], _FIT_ROWS):
                rows = slice(i, i + _FIT_ROWS)
                parts.append(self.transform_dims(train[rows], through.rows(rows))[0])
            self.base.fit_inputs(torch.cat(parts), given)

    # -- the flow --------------------------------------------------------------------------
    def transform_dims(
        self, x: torch.Tensor, given: Condition = UNCONDITIONAL, inputs: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(u (B, D), log|du/dx| split per dimension (B, D)): the terms sum to log|det du/dx|.
        ``inputs``, if given, receives each layer's input."""
        c = self.network_condition(given, x.shape[0])
        h = (x - self.input_shift) / self.input_scale
        log_det = (-self.input_scale.log()).expand_as(h)
        for t, layer in enumerate(self.layers):
            if inputs is not None:
                inputs.append(h)
            h, term = layer(h, c)
            log_det = log_det + term
            if len(self.norms):
                h, term = self.norms[t](h)
                log_det = log_det + term
        return h, log_det

    def transform(
        self, x: torch.Tensor, given: Condition = UNCONDITIONAL
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Data to base space: (u (B, D), log|det du/dx| (B,)) (x as the flow models it:
        dequantised, if it has discrete columns)."""
        self.check_input(x)
        self.check_condition(given, x.shape[0])
        u, log_det = self.transform_dims(x, given)
        return u, log_det.sum(-1)

    def base_log_prob_dims(self, u: torch.Tensor, given: Condition = UNCONDITIONAL) -> torch.Tensor:
        """log p(u_d | u_<d) (B, D) under the base."""
        if self.base is None:
            return standard_normal_log_prob(u)
        return self.base.log_prob_dims(u, 0, given)

    def log_prob_dims(self, x: torch.Tensor, given: Condition = UNCONDITIONAL) -> torch.Tensor:
        """Per-dimension terms (B, D) that sum to log p(x) (x as the flow models it). Where every
        MADE has one ordering, term d is log p(x_d | x_<d) in it: the chain rule that exact
        completion reads."""
        u, log_det = self.transform_dims(x, given)
        return self.base_log_prob_dims(u, given) + log_det

    def log_prob(
        self, x: torch.Tensor, given: Condition = UNCONDITIONAL, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x) (B,) in nats: a density. Discrete columns are dequantised first, each row by
        noise of its own (see ``dequantise``; ``rows`` plays no part). A grid column's density
        over its cell, times the cell's width, estimates the value's probability, which is what
        a MADE gives it: log step is added for each."""
        self.check_input(x)
        self.check_condition(given, x.shape[0])
        cells = torch.log(self.grid_step[self.grid_step > 0]).sum()
        return self.log_prob_dims(self.dequantise(x), given).sum(-1) + cells

    @torch.no_grad()
    def inverse(self, u: torch.Tensor, given: Condition = UNCONDITIONAL, fast: bool = True) -> torch.Tensor:
        """Base space to data: the x (B, D) whose ``transform`` is u. ``fast`` inverts each
        layer degree-scheduled; ``fast=False`` runs its network once per dimension (the oracle)."""
        check_rows(u, self.features, self.head, "u")
        self.check_condition(given, u.shape[0])
        fill = torch.ones_like(u, dtype=torch.bool)
        known = [torch.zeros_like(u)] * len(self.layers)
        return self._invert(u, self.network_condition(given, u.shape[0]), fill, known, fast)

    def _invert(
        self,
        u: torch.Tensor,
        c: torch.Tensor | None,
        fill: torch.Tensor,
        known: list[torch.Tensor],
        fast: bool,
    ) -> torch.Tensor:
        """Run the flow backwards: at the ``fill`` dimensions from ``u``, elsewhere each layer's
        input is ``known[t]``."""
        h = u
        for t in reversed(range(len(self.layers))):
            if len(self.norms):
                h = self.norms[t].inverse(h)
            h = self.layers[t].inverse(h, c, known[t], fill, fast)
        return h * self.input_scale + self.input_shift

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        given: Condition = UNCONDITIONAL,
        fast: bool = True,
    ) -> torch.Tensor:
        """``n`` exact samples (n, D): base draws carried through ``inverse``, discrete columns
        floored back to their codes. A class-conditional flow needs ``given.labels``: one for all
        rows, or (n,); a flow with context columns ``given.context`` (n, C)."""
        self.check_condition(given, n)
        if self.base is None:
            u = torch.randn(n, self.features, generator=generator, dtype=self._dtype).to(self._device)
        else:
            u = self.base.sample(n, generator=generator, fast=fast, given=given)
        x = self.inverse(u, given, fast)
        if not self.discrete_columns:
            return x
        codes = torch.minimum(x.floor().clamp_min(0), (self.column_levels - 1).clamp_min(0))
        step = torch.where(self.grid_step > 0, self.grid_step, 1.0)
        on_grid = torch.maximum(
            self.grid_origin + step * torch.round((x - self.grid_origin) / step), self.grid_lower
        )
        return torch.where(self.column_levels > 0, codes, torch.where(self.grid_step > 0, on_grid, x))

    # -- completion --------------------------------------------------------------------------
    def incomplete_reason(self, observed: torch.Tensor) -> str | None:
        """Why the rows with ``observed`` (B, D) cannot be completed exactly (None: they can).

        Exact when every MADE generates the observed dimensions first: then u_observed depends
        on x_observed alone and p(x) factorises into p(x_observed) p(x_missing | x_observed).
        """
        if self.discrete_columns:
            return (
                "a flow that dequantises discrete columns models code + noise, not the codes: its "
                "completions would not follow p(missing | observed); complete with model.kind: made"
            )
        ranks = self._ranks()
        exact = sampling.exact_members(ranks, observed).all(1)
        if bool(exact.all()):
            return None
        if not bool((ranks == ranks[:1]).all()):
            return (
                f"a flow completes exactly only when every layer generates the observed dimensions "
                f"first; this flow's layers have flow.ordering: {self.flow_ordering} (train with "
                "flow.ordering: same to complete an observed prefix)"
            )
        return (
            f"{int((~exact).sum())} of {exact.numel()} row(s) observe dimensions that the flow's "
            "ordering (model.ordering) does not generate first; a flow completes exactly only an "
            "observed prefix of it (--mask top for natural)"
        )

    @torch.no_grad()
    def complete(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        generator: torch.Generator | None = None,
        given: Condition = UNCONDITIONAL,
        fast: bool = True,
    ) -> torch.Tensor:
        """x (B, D) with the dimensions not ``observed`` drawn from p(missing | observed), exactly;
        a ValueError when the flow cannot (see ``incomplete_reason``)."""
        check_observed(observed, x)
        observed = observed.to(x.device)
        x = torch.where(observed, x, torch.zeros_like(x))
        self.check_input(x, "x (its observed values)")
        self.check_condition(given, x.shape[0])
        why = self.incomplete_reason(observed)
        if why is not None:
            raise ValueError(why)
        # Each layer's input at the observed dimensions: they depend on observed values alone.
        known: list[torch.Tensor] = []
        h, _ = self.transform_dims(x, given, known)
        if self.base is None:
            fresh = torch.randn(h.shape, generator=generator, dtype=self._dtype).to(h.device)
            u = torch.where(observed, h, fresh)
        else:
            u = self.base.ancestral_completion(h, observed, generator, fast=fast, given=given)[0]
        c = self.network_condition(given, x.shape[0])
        return torch.where(observed, x, self._invert(u, c, ~observed, known, fast))

    @torch.no_grad()
    def conditional_log_prob(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        given: Condition = UNCONDITIONAL,
    ) -> torch.Tensor:
        """log p(x_missing | x_observed) (B,) where exact (see ``incomplete_reason``), else NaN:
        the chain-rule terms of the missing dimensions."""
        self.check_input(x)
        check_observed(observed, x)
        self.check_condition(given, x.shape[0])
        observed = observed.to(x.device)
        exact = sampling.exact_members(self._ranks(), observed).all(1)
        if self.discrete_columns:
            exact = torch.zeros_like(exact)
        terms = self.log_prob_dims(x, given)
        return torch.where(exact, torch.where(observed, 0.0, terms).sum(-1), torch.nan)

    # -- training (the DensityModel protocol) ---------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        step: int,
        steps_per_epoch: int,
        given: Condition = UNCONDITIONAL,
        noise: torch.Generator | None = None,
    ) -> torch.Tensor:
        """-log p(x) (B,): the training loss (batch norm on the batch's statistics), discrete
        columns dequantised with fresh noise from ``noise``."""
        x = self.dequantise(x, generator=noise or torch.Generator().manual_seed(step))
        return -self.log_prob_dims(x, given).sum(-1)

    # -- the commands (the DensityModel protocol) --------------------------------------------------
    def draw(
        self,
        n: int,
        generator: torch.Generator,
        given: Condition = UNCONDITIONAL,
        means: bool = False,
    ) -> torch.Tensor:
        if means:
            raise BadArgument("means", "is for VAE runs: a flow's samples are base draws carried through it")
        return self.sample(n, generator=generator, given=given)

    def sampler_name(self, means: bool = False) -> str:
        flow = f"{self.transformer.flow} of {len(self.layers)} layers"
        floored = ", discrete columns floored to their codes" if self.discrete_columns else ""
        return f"exact, {flow}: base draws inverted layer by layer, degree-scheduled{floored}"

    def complete_rows(
        self,
        given: Condition,
        per_row: int,
        generator: torch.Generator,
        rounds: int | None = None,
        steps: int | None = None,
        truth: torch.Tensor | None = None,
    ) -> Completion:
        """``given``'s cells completed exactly where every layer generates them first (no
        chain, so ``steps`` plays no part); refused otherwise. ``truth``'s missing values are
        scored (``DensityModel.complete_rows``)."""
        if rounds is not None:
            raise BadArgument("rounds", "is for VAE runs: a flow completes exactly or not at all")
        observed = given.observed
        x = torch.where(observed, given.cells, 0.0 if truth is None else truth)  # type: ignore[arg-type]
        why = self.incomplete_reason(observed.to(x.device))
        if why is not None:
            raise UsageError(why)
        given = given.with_cells(None)
        rows, seen = x.repeat_interleave(per_row, 0), observed.repeat_interleave(per_row, 0)
        values = self.complete(rows, seen, generator, given.repeat(per_row))
        conditional = torch.full((x.shape[0],), torch.nan, dtype=x.dtype, device=x.device)  # no truth
        if truth is not None:
            conditional = self.conditional_log_prob(x, observed, given)
        return Completion(values, [EXACT] * x.shape[0], conditional)


def build_flow(
    cfg: Config,
    features: int,
    classes: int,
    columns: tuple[ColumnLaw, ...] | None,
    context: int,
    transformer: Transformer,
) -> MAF:
    """The flow a config describes with layers of ``transformer``, for ``features`` dimensions,
    ``classes`` labels and, for a table, each column's law ``columns`` (the flow reads their
    categories) and its ``context`` columns."""
    column_levels = None if columns is None else [law.levels for law in columns]
    grids = None if columns is None else [
        (law.step or 0.0, law.origin, -math.inf if law.lower is None else law.lower) for law in columns
    ]  # fmt: skip
    m, f = cfg.model, cfg.flow
    return MAF(
        features, m.hidden, layers=f.layers, classes=context_classes(cfg, classes),
        direct=m.direct, ordering=m.ordering, flow_ordering=f.ordering, hidden_degrees=m.hidden_degrees,
        batch_norm=f.batch_norm, base=f.base, components=m.components, seed=cfg.seed,
        context_features=context, column_levels=column_levels, per_column=column_levels is not None,
        grids=grids, transformer=transformer,
    )  # fmt: skip


def build(
    cfg: Config,
    features: int,
    classes: int = 0,
    columns: tuple[ColumnLaw, ...] | None = None,
    context: int = 0,
) -> MAF:
    """The flow a config describes (model.kind: maf): affine layers."""
    return build_flow(cfg, features, classes, columns, context, Affine())


def describe(cfg: Config, model: MAF) -> str:
    """The "model:" line of training."""
    given = f", given one of {model.classes} labels" if model.classes else ""
    return f"{model.describe()}{given}"


@torch.no_grad()
def flow_verification(model: MAF, points: int = 2, seed: int = 0) -> Verification:
    """`made verify-ar`'s rows for a flow: each layer's MADE, its Jacobian du/dx (triangular in
    the layer's ordering) and log-determinant (the sum of its transformer's log-derivatives),
    both in float64; the MoG base's MADE; and the whole flow's log|det du/dx| against
    autograd's (``verify.whole_flow_error``)."""
    generator = torch.Generator().manual_seed(seed)
    flow = copy.deepcopy(model).double().cpu().eval()
    layers = []
    for t, layer in enumerate(flow.layers):
        (made,) = verify_made(model.layers[t].made, points=points, seed=seed + t)
        layers.append(
            triangular_report(t, made, layer, layer.made.ranks[0], layer.made.context, points, generator)
        )
    rows = [[f"layer {r.step}", *made_cells(r.made), *r.cells()] for r in layers]
    ok = [r.ok for r in layers]
    records: list[dict[str, Any]] = [r.to_dict() for r in layers]
    if model.base is not None:
        base = verify_made(model.base.net, points=points, seed=seed + len(layers))[0]
        rows.append(["base", *made_cells(base), "-", "-"])
        ok.append(base.ok)
        records.append({"step": "base", "made": base.to_dict(), "ok": base.ok})

    whole = whole_flow_error(
        flow.transform_dims,
        flow.input_shift,
        flow.input_scale,
        model.classes,
        model.context_features,
        points,
        generator,
    )
    if whole is not None:
        rows.append(["whole flow", *["-"] * len(MADE_COLUMNS), "-", f"{whole.error:.1e}"])
        ok.append(whole.ok)
        records.append({"step": "whole flow", "log_det_error": whole.error, "ok": whole.ok})
    return Verification(
        unit="flow part",
        columns=[*MADE_COLUMNS, "du/dx off triangle", "log-det error"],
        rows=rows,
        ok=ok,
        caption=f"Jacobian at {points} random point(s); {whole_flow_caption(whole is not None)}",
        verdict=(
            f"all {len(layers)} flow layer(s) satisfy the autoregressive property, with triangular "
            f"Jacobians whose log-determinant is the sum of the {model.transformer.name}s' log-derivatives"
            + (", and so does the base" if model.base is not None else "")
            + (", and the flow's log-determinant matches autograd's" if whole is not None else "")
        ),
        records=records,
    )


def verify(model: MAF, points: int = 2) -> Verification:
    """``flow_verification``: `made verify-ar`'s checks of a flow."""
    return flow_verification(model, points)
