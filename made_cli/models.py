"""A MADE with a likelihood head (model.kind: made): its mixture over masks, labels, sampling."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import sampling
from .condition import UNCONDITIONAL, Condition
from .config import Config
from .errors import BadArgument, UsageError
from .evaluation import evaluate_nll, evaluate_terms
from .heads import Bernoulli, ColumnHeads, Head, check_observed, check_rows
from .interface import APPROXIMATE, EXACT, MARKOV_CHAIN, SUB_ENSEMBLE, Completion, Progress
from .made import MADE
from .mcmc import effective_sample_size

__all__ = [
    "CHAIN_STEPS", "ChainState", "ExactLikelihood", "MADEModel", "context_classes",
    "given_context", "input_standardisation", "label_log_prior", "label_marginal",
]  # fmt: skip


CHAIN_STEPS = 200  # Metropolis-Hastings moves per completion that is not exact (made complete --steps)
ENUMERATED_COMPLETIONS = 64  # a row's discrete gaps with at most this many joint values are drawn exactly
OBSERVED_DRAWS = 100  # importance-sampling completions per member for log p(x_observed) (made score --draws)


def given_context(features: int) -> str:
    """What an estimator's name adds for a model with context columns."""
    return "" if not features else f", given {features} context column" + ("s" if features > 1 else "")


def input_standardisation(train: torch.Tensor, per_column: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift (D,), scale (D,)) that standardise a network's input, from the training split.

    Centred per dimension but, for images, with one scale shared by all: a per-dimension scale
    blows up dimensions that barely vary in training (on 8-level MNIST, test pixels reached
    |z| = 775 and 78 images cost over 1000 nats each; a MAF on logit MNIST with per-pixel scales
    gave one validation image 2.5e7 nats, its rare pixel at z = 11 and then expanded by every
    layer). A table's columns have units of their own (a price, an age): ``per_column`` scales
    each by its own standard deviation.
    """
    if train.shape[0] < 2:
        return train.nan_to_num().mean(0), torch.ones(train.shape[1], dtype=train.dtype, device=train.device)
    if per_column:  # a table's missing cells (NaN) aside
        mean = train.nanmean(0)
        count = (~torch.isnan(train)).sum(0).clamp_min(2)
        var = ((train - mean) ** 2).nansum(0) / (count - 1)
        return mean.nan_to_num(), var.sqrt().nan_to_num(1.0).clamp_min(1e-3)
    return train.mean(0), train.std().clamp_min(1e-3).expand(train.shape[1])


def label_log_prior(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """log p(y) (C,): the training labels' frequencies, add-one smoothed."""
    counts = torch.bincount(labels.long(), minlength=classes).double() + 1
    return (counts / counts.sum()).log()


def label_marginal(
    log_prob: Callable[[torch.Tensor, Condition], torch.Tensor],
    x: torch.Tensor,
    label_log_prior: torch.Tensor,
    given: Condition = UNCONDITIONAL,
) -> torch.Tensor:
    """log p(x) (B,) with the label summed out: logsumexp_y log p(x | y) + log p(y), p(y)
    (C,) the training label frequencies (one pass per class); ``given``'s context kept."""
    per = [
        log_prob(x, given.with_labels(torch.full((x.shape[0],), y, device=x.device))) + label_log_prior[y]
        for y in range(len(label_log_prior))
    ]
    return torch.logsumexp(torch.stack(per), 0)  # (B,)


class ExactLikelihood:
    """What the models with an exact log p(x) share (MADEModel, MAF): a schedule with nothing
    in it, -log p(x) for validation and `made evaluate`, and, for a class-conditional model,
    log p(x) with the label summed out. The model gives ``log_prob``, ``check_input``,
    ``estimator``, ``classes`` and (when conditional) a ``label_log_prior`` buffer."""

    classes: int
    context_features: int

    # -- what the MADEs are given at degree 0: labels and context columns -------------------------
    def _register_context(self, features: int) -> None:
        """Buffers that standardise the context columns (set by ``_fit_context``, saved)."""
        self.context_features = features
        if features:
            module: Any = self
            module.register_buffer("context_shift", torch.zeros(features))
            module.register_buffer("context_scale", torch.ones(features))

    @torch.no_grad()
    def _fit_context(self, given: Condition) -> None:
        if self.context_features and given.context is not None:
            module: Any = self
            shift, scale = input_standardisation(given.context.to(module.context_shift), per_column=True)
            module.context_shift.copy_(shift)
            module.context_scale.copy_(scale)

    @property
    def log_prob_estimator(self) -> str:
        """How ``log_prob`` computes log p(x) (``made score`` names it): exactly, as validated."""
        return self.estimator  # type: ignore[attr-defined]

    def check_condition(self, given: Condition, rows: int | None = None) -> None:
        """``given`` fits the model (``Condition.check``)."""
        given.check(self.classes, self.context_features, rows)

    def network_condition(self, given: Condition, rows: int) -> torch.Tensor | None:
        """What every MADE of the model sees at degree 0 (rows, classes + C): the one-hot label
        and the standardised context columns; None for an unconditional model."""
        module: Any = self
        scaled = self.context_features > 0
        return given.encode(
            self.classes, rows, module._device, module._dtype,
            module.context_shift if scaled else None, module.context_scale if scaled else None,
        )  # fmt: skip

    def schedule_terms(self, step: int, steps_per_epoch: int) -> dict[str, float]:
        """Nothing to record: the exact likelihood has no schedule (a MADE ensemble's member is
        the step modulo K)."""
        return {}

    def patience_counts(self, step: int, steps_per_epoch: int) -> bool:
        """Every epoch trains on the full objective."""
        return True

    def epoch_line(self, train_loss: float, valid: dict[str, float], terms: dict[str, float]) -> str:
        return f"train {train_loss:7.2f}  valid {valid['nll']:7.2f} nats"

    @torch.no_grad()
    def validation_terms(
        self, x: torch.Tensor, given: Condition = UNCONDITIONAL, rows: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-row (B,) numbers the trainer averages on a split; ``nll`` decides early stopping.
        ``rows``, the batch's indices in the split, seed the noise of models that draw any."""
        return {"nll": -self.log_prob(x, given, rows=rows)}  # type: ignore[attr-defined]

    def evaluate(
        self,
        x: torch.Tensor,
        given: Condition,
        batch_size: int,
        samples: int | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """The exact NLL of rows x; a class-conditional model's also with the label summed out,
        comparable with unconditional runs."""
        if samples is not None or seed is not None:
            raise BadArgument(("samples", "seed"), "are for VAE runs; this model's likelihood is exact")
        model: Any = self
        report: dict[str, Any] = {
            "nll_nats": evaluate_nll(model, x, batch_size, given=given),
            "estimator": model.estimator,
        }
        if self.classes:
            summed_out = lambda b, g, i: {"nll": -self.marginal_log_prob(b, g, rows=i)}  # noqa: E731
            marginal = evaluate_nll(model, x, batch_size, given=given, terms=summed_out)
            report.update(marginal_nll_nats=marginal, marginal_estimator=self.marginal_estimator)
        return report

    @property
    def marginal_estimator(self) -> str:
        """How ``marginal_log_prob`` is computed (class-conditional models)."""
        estimator: str = self.estimator  # type: ignore[attr-defined]
        return estimator.replace("given the label", f"label summed out over {self.classes} classes")

    def marginal_log_prob(
        self, x: torch.Tensor, given: Condition = UNCONDITIONAL, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x) (B,) with the label summed out (see ``label_marginal``); ``given``'s labels,
        if any, are not read."""
        if not self.classes:
            raise ValueError("only a class-conditional model has a label to sum out")
        model: Any = self
        model.check_input(x)
        log_prob = lambda b, g: model.log_prob(b, g, rows=rows)  # noqa: E731
        return label_marginal(log_prob, x, model.label_log_prior, given)


class MADEModel(ExactLikelihood, nn.Module):
    """A MADE with a likelihood head: log p(x) in nats, exact sampling and completion.

    With K masks the density is the mixture p(x) = (1/K) sum_k p_k(x) (Germain et al. 2015,
    section 4.2), never an average of logits, which would not be normalised. With ``classes``
    the model is p(x | y): the one-hot label y enters the MADE as context at degree 0, so
    every unit may see it.
    """

    def __init__(
        self,
        net: MADE,
        head: Head | None = None,
        classes: int = 0,
        context_features: int = 0,
        per_column: bool = False,
    ) -> None:
        super().__init__()
        self.head = head or Bernoulli()
        if net.params_per_dim != self.head.params_per_dim or net.context != classes + context_features:
            raise ValueError(
                "the MADE's parameters per dimension or context do not fit the head, labels and context"
            )
        self.net = net
        self.classes = classes
        self.per_column = per_column  # a table: each input column scaled by its own spread
        self._register_context(context_features)
        if classes:  # p(y) from the training labels (``fit_inputs``), to sum the label out
            self.register_buffer("label_log_prior", torch.full((classes,), -math.log(classes)))
        self.standardises = not isinstance(self.head, Bernoulli)
        if self.standardises:
            # Levels and reals enter the network centred and scaled (set by ``fit_inputs``):
            # raw logit-space pixels reach |y| = 14 and blow up the first steps. Only how x_<d
            # is fed changes, so every conditional stays exact. 0/1 inputs need none, which
            # keeps Bernoulli checkpoints as they were.
            self.register_buffer("input_shift", torch.zeros(net.features))
            self.register_buffer("input_scale", torch.ones(net.features))
        # A table's log-scale columns enter on their log scale, as the head models them (no
        # smaller than the least training value, so a point mass at 0 stays finite). From the
        # columns' laws, which the run keeps: not saved here.
        laws = getattr(self.head, "laws", None) or ()
        logs = [bool(law.log) for law in laws] or [False] * net.features
        floors = [math.exp(law.shift + law.scale * law.low) if law.log else 1.0 for law in laws]
        self.register_buffer("input_log", torch.tensor(logs), persistent=False)
        self.register_buffer("input_floor", torch.tensor(floors or [1.0] * net.features), persistent=False)
        self.logs_inputs = any(logs)

    @property
    def features(self) -> int:
        return self.net.features

    @property
    def num_masks(self) -> int:
        return self.net.num_masks

    @property
    def estimator(self) -> str:
        """How log p(x) is computed, named in every NLL the toolkit reports."""
        k = self.num_masks
        name = "exact, single mask" if k == 1 else f"exact, {k}-mask mixture"
        context = given_context(self.context_features)
        return name + (", given the label" if self.classes else "") + context

    def check_input(self, x: torch.Tensor, what: str = "x") -> None:
        """``x`` is (rows, D) and holds values the head models, else a ValueError that says so
        (instead of a shape error deep in torch, or a number that means nothing). Missing cells
        (NaN) only for a table model that has learnt what a missing cell is."""
        check_rows(x, self.features, self.head, what)
        if self.per_column and not self.takes_missing_cells and bool(torch.isnan(x).any()):
            raise ValueError(
                f"{what} has missing cells, which this run (trained before missing cells were "
                "modelled) cannot score; leave those rows out"
            )

    @property
    def encoding(self) -> sampling.Encoding:
        """How x enters the network: centred and scaled for levels and reals, as is for 0/1."""
        if not self.standardises:
            return sampling.Encoding()
        if self.logs_inputs:
            return sampling.Encoding(self.input_shift, self.input_scale, self.input_log, self.input_floor)
        return sampling.Encoding(self.input_shift, self.input_scale)

    @property
    def takes_missing_cells(self) -> bool:
        """A table's MADE trains on and scores rows with missing cells (NaN): log p of the
        observed cells, each conditional seeing which earlier cells are missing."""
        return isinstance(self.head, ColumnHeads) and self.net.embedding is not None

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """x as the network sees it (``encoding``'s arithmetic, without building one each step);
        a table's missing cell enters as 0, the training mean (and as itself, by the embedding)."""
        if not self.standardises:
            return x
        if self.logs_inputs:
            x = self._log_columns(x)
        encoded = (x - self.input_shift) / self.input_scale
        return torch.nan_to_num(encoded, nan=0.0) if self.per_column else encoded

    @torch.no_grad()
    def fit_inputs(self, train: torch.Tensor, given: Condition = UNCONDITIONAL) -> None:
        """Start from the data: input standardisation and output biases from the marginals,
        the label frequencies (add-one smoothed) of a class-conditional model (uniform when no
        labels are given), and the context columns' standardisation (``given``: the training
        split's labels and context).

        Inputs are standardised as ``input_standardisation`` says.
        """
        if self.classes and given.labels is not None:
            self.label_log_prior.copy_(label_log_prior(given.labels, self.classes))
        self._fit_context(given)
        if self.standardises:
            shift, scale = input_standardisation(self._log_columns(train) if self.logs_inputs else train,
                                                 self.per_column)  # fmt: skip
            self.input_shift.copy_(shift)
            self.input_scale.copy_(scale)
        bias = self.head.init_bias(train).reshape(-1)  # (P * D,): output p * D + d
        if self.net.output_rows is not None:  # the rows the output layer holds
            bias = bias[self.net.output_rows.to(bias.device)]
        self.net.output.bias.copy_(bias.to(self.net.output.bias))

    def _log_columns(self, x: torch.Tensor) -> torch.Tensor:
        """x with the log-scale columns on their log scale (``encoding``)."""
        floor = self.input_floor.to(x)
        return torch.where(self.input_log, torch.log(torch.maximum(x, floor)), x)

    def params(self, x: torch.Tensor, member: int, c: torch.Tensor | None = None) -> torch.Tensor:
        """The head's parameters (B, P, D) under member ``member``, given context ``c``."""
        self.net.set_member(member)
        return self.net(self.network_input(x), c, raw=x if self.net.embedding is not None else None)

    def log_prob_dims(self, x: torch.Tensor, member: int, given: Condition = UNCONDITIONAL) -> torch.Tensor:
        """log p_k(x_d | x_<d) for every dimension (B, D), under member ``member``; 0 for a
        missing cell (NaN) of a table, whose row then has the log-probability of its observed
        cells given which are missing."""
        return self.log_prob_dims_given(x, member, self.network_condition(given, x.shape[0]))

    def log_prob_dims_given(self, x: torch.Tensor, member: int, c: torch.Tensor | None) -> torch.Tensor:
        """``log_prob_dims`` given what the network sees at degree 0 (``network_condition``)."""
        return self._head_log_prob(self.params(x, member, c), x)

    def log_prob_dims_members(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """``log_prob_dims_given`` under every member (K, B, D): K network passes, one head
        evaluation over their K B rows (the head's cost, per call, is most of a small model's)."""
        k = self.num_masks
        if k == 1:
            return self.log_prob_dims_given(x, 0, c)[None]
        params = torch.cat([self.params(x, m, c) for m in range(k)])
        return self._head_log_prob(params, x.repeat(k, 1)).view(k, *x.shape)

    def _head_log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The head's log p(x_d | params) (B, D); 0 for a table's missing cells (NaN)."""
        if not self.per_column:
            return self.head.log_prob(params, x)
        missing = torch.isnan(x)
        if not bool(missing.any()):
            return self.head.log_prob(params, x)
        fill = self.head.fill_value().to(x)  # type: ignore[attr-defined]  # per_column: ColumnHeads
        dims = self.head.log_prob(params, torch.where(missing, fill, x))
        return torch.where(missing, 0.0, dims)

    def log_prob_member(self, x: torch.Tensor, member: int, given: Condition = UNCONDITIONAL) -> torch.Tensor:
        """log p_k(x) (B,) under one member."""
        return self.log_prob_dims(x, member, given).sum(-1)

    # -- training (the DensityModel protocol) ---------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        step: int,
        steps_per_epoch: int,
        given: Condition = UNCONDITIONAL,
        noise: torch.Generator | None = None,
    ) -> torch.Tensor:
        """-log p_k(x) (B,) under the step's member, the K masks in turn: the training loss,
        through DistributedDataParallel when distributed. The exact likelihood draws no noise."""
        return -self.log_prob_member(x, step % self.num_masks, given)

    def made_nets(self) -> list[MADE]:
        """Every MADE in the model."""
        return [self.net]

    # -- the commands (the DensityModel protocol) --------------------------------------------------
    def draw(
        self,
        n: int,
        generator: torch.Generator,
        given: Condition = UNCONDITIONAL,
        means: bool = False,
    ) -> torch.Tensor:
        if means:
            raise BadArgument("means", "is for VAE runs: a MADE's samples are drawn pixel by pixel")
        return self.sample(n, generator=generator, given=given)

    def sampler_name(self, means: bool = False) -> str:
        return self.estimator

    def complete_rows(
        self,
        given: Condition,
        per_row: int,
        generator: torch.Generator,
        rounds: int | None = None,
        steps: int | None = None,
        truth: torch.Tensor | None = None,
    ) -> Completion:
        """``given``'s cells completed: exact ancestral completion where the ordering generates
        the fixed cells first; every other row the end of a Metropolis-Hastings chain of
        ``steps`` moves (``complete_chain``; default ``CHAIN_STEPS``; 0: the approximate first
        draw, as it is). ``truth``'s missing values are scored (``DensityModel.complete_rows``)."""
        if rounds is not None:
            raise BadArgument("rounds", "is for VAE runs: a MADE completes by exact ancestral sampling")
        steps = CHAIN_STEPS if steps is None else steps
        if steps < 0:
            raise BadArgument("steps", f"must be at least 0 (got {steps})")
        observed = given.observed
        x = torch.where(observed, given.cells, 0.0 if truth is None else truth)  # type: ignore[arg-type]
        given = given.with_cells(None)
        b, device = x.shape[0], x.device
        members = sampling.exact_members(self.net.ranks, observed.to(device))  # (B, K)
        status = [
            EXACT if row.all() else MARKOV_CHAIN if steps else SUB_ENSEMBLE if row.any() else APPROXIMATE
            for row in members
        ]
        # rows whose gaps are a few discrete values: drawn exactly by enumeration, no chain
        enumerated = self.enumerate_missing(x, observed, given, per_row, generator)
        chained = torch.ones(b, dtype=torch.bool, device=device)
        if enumerated is not None:
            chained[enumerated[0]] = False
            for i in enumerated[0].tolist():
                status[i] = EXACT
        repeated = (chained.nonzero()[:, 0, None] * per_row + torch.arange(per_row, device=device)).reshape(
            -1
        )
        values = x.repeat_interleave(per_row, 0) if enumerated is None else enumerated[1]
        chain = ChainState(
            values,
            torch.ones(b * per_row, dtype=torch.bool, device=device),
            torch.zeros(b * per_row, dtype=torch.long, device=device),
            torch.full((b * per_row, steps + 1), math.nan, dtype=torch.float64, device=device),
        )
        if len(repeated):
            per = lambda t: t.repeat_interleave(per_row, 0)[repeated]  # noqa: E731
            sub = self.complete_chain(
                per(x), per(observed.to(device)), steps, generator, given.repeat(per_row).rows(repeated)
            )
            chain.values[repeated] = sub.values.to(values)
            chain.exact[repeated] = sub.exact
            chain.accepted[repeated] = sub.accepted
            chain.trace[repeated] = sub.trace
        acceptance = torch.full((b,), math.nan, dtype=torch.float64)
        ess = torch.full((b,), math.nan, dtype=torch.float64)
        moved = chain.accepted.view(b, per_row).sum(1).cpu().double() / max(steps * per_row, 1)
        traces = chain.trace.view(b, per_row, steps + 1).cpu()
        for i, s in enumerate(status):
            if s == MARKOV_CHAIN:
                acceptance[i] = moved[i]
                if per_row > 1:  # over the chains' second halves: the first is their warm-up
                    ess[i] = effective_sample_size(traces[i, :, steps // 2 + 1 :])
        conditional = torch.full((b,), torch.nan, dtype=self._dtype, device=device)  # no truth: none
        if truth is not None:
            conditional = self.conditional_log_prob(x, observed, given)
            if enumerated is not None:
                rows = enumerated[0]
                conditional[rows] = enumerated[2][rows].to(conditional)
        return Completion(
            chain.values, status, conditional,
            steps=steps if MARKOV_CHAIN in status else 0, acceptance=acceptance, ess=ess,
        )  # fmt: skip

    @torch.no_grad()
    def enumerate_missing(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        given: Condition,
        per_row: int,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Exact draws for a table's rows whose missing cells are all discrete with at most
        ``ENUMERATED_COMPLETIONS`` joint values (a table's blank category, a year): p(missing |
        observed) is the model's joint at each completion, normalised, so ``per_row`` draws come
        from it directly, at one density pass per completion instead of a chain's hundreds.
        Returns (the rows (R,), the draws (B * per_row, D) and log p(x_missing | x_observed) (B,)
        of x's own missing values (NaN where they are no completion), valid at those rows), or None."""
        if not isinstance(self.head, ColumnHeads):  # a table's: images' gaps are hundreds of pixels
            return None
        levels = torch.tensor(self.head.levels, device=x.device)  # (D,): categories, 0 for a real column
        observed = observed.to(x.device)
        missing = ~observed
        exact = sampling.exact_members(self.net.ranks, observed).all(1)
        count = torch.where(missing, levels.clamp_min(1).double(), 1.0).prod(1)
        eligible = (
            ~exact & missing.any(1) & ~(missing & (levels == 0)).any(1) & (count <= ENUMERATED_COMPLETIONS)
        )
        if not bool(eligible.any()):
            return None
        out = x.repeat_interleave(per_row, 0).clone()
        conditional = torch.full((x.shape[0],), torch.nan, dtype=torch.float64, device=x.device)
        patterns, which = torch.unique(missing[eligible], dim=0, return_inverse=True)
        rows = eligible.nonzero()[:, 0]
        for p, pattern in enumerate(patterns):
            sel = rows[which == p]
            dims = pattern.nonzero()[:, 0]
            combos = torch.cartesian_prod(*[torch.arange(int(levels[d]), device=x.device) for d in dims])
            combos = combos.reshape(-1, len(dims)).to(x.dtype)  # (C, M)
            c_count = combos.shape[0]
            candidates = x[sel].repeat_interleave(c_count, 0).clone()  # (R * C, D)
            candidates[:, dims] = combos.repeat(len(sel), 1)
            log_p = self.log_prob(candidates, given.rows(sel).repeat(c_count)).view(len(sel), c_count)
            truth = (combos[None] == x[sel][:, None, dims]).all(-1)  # (R, C): the row's own missing values
            own = torch.where(truth, log_p, -torch.inf).amax(1) - torch.logsumexp(log_p, 1)
            conditional[sel] = torch.where(truth.any(1), own, torch.nan).to(conditional)
            picks = torch.multinomial(
                torch.softmax(log_p.double(), 1).cpu(), per_row, True, generator=generator
            )
            chosen = combos[picks.to(x.device)]  # (R, per_row, M)
            index = (sel[:, None] * per_row + torch.arange(per_row, device=x.device)).reshape(-1)
            filled = out[index]
            filled[:, dims] = chosen.reshape(-1, len(dims))
            out[index] = filled
        return rows, out, conditional

    @torch.no_grad()
    def complete_chain(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        steps: int,
        generator: torch.Generator | None = None,
        given: Condition = UNCONDITIONAL,
        fast: bool = True,
        independent: bool = False,
    ) -> ChainState:
        """Completion that follows the model for any observed set: exact rows as ``complete``
        draws them; every other row starts from that draw and takes ``steps`` Metropolis-Hastings
        moves whose stationary law is the model's p(missing | observed) (the mixture's, for an
        ensemble).

        A move picks a member k uniformly (each member proposes the completions it favours, so
        the chain reaches every mode of the mixture) and a missing dimension at random, keeps
        the missing values that k generates before it and redraws the rest from k's
        conditionals (observed values kept: the proposal of ``complete`` from that point on),
        then accepts with min(1, p(x') q(x | x') / (p(x) q(x' | x))); q is a product of k's
        conditionals at the redrawn dimensions, read off the density passes (one per member)
        that give p(x'). ``independent`` redraws every
        missing value each move (an independent Metropolis-Hastings sampler). Either is exact
        in the limit; redrawing a suffix changes less at once and is accepted far more often.
        """
        if steps < 0:
            raise ValueError(f"steps must be at least 0 (got {steps})")
        values, exact = self.ancestral_completion(x, observed, generator, fast=fast, given=given)
        device, n = values.device, values.shape[0]
        accepted = torch.zeros(n, dtype=torch.long, device=device)
        trace = torch.full((n, steps + 1), math.nan, dtype=torch.float64, device=device)
        rows = (~exact).nonzero()[:, 0]
        if steps == 0 or len(rows) == 0:
            return ChainState(values, exact, accepted, trace)
        r = len(rows)
        missing = ~observed.to(device)[rows]
        cond = self.network_condition(given.to(device).rows(rows), r)
        k_all = self.num_masks

        def member_terms(z: torch.Tensor) -> torch.Tensor:  # (K, R, D): log p_k(z_d | z_<d)
            return self.log_prob_dims_members(z, cond)

        def joint(terms: torch.Tensor) -> torch.Tensor:  # (R,): log p(z), the mixture
            return torch.logsumexp(terms.sum(-1), 0) - math.log(k_all)

        current = values[rows]
        terms = member_terms(current)
        log_p = joint(terms)
        trace[rows, 0] = log_p.double()
        row = torch.arange(r, device=device)
        moves = torch.zeros(r, dtype=torch.long, device=device)
        for step in range(steps):
            # every member proposes, uniformly: each reaches the completions it favours
            members = torch.randint(k_all, (r,), generator=generator).to(device)
            ranks = self.net.ranks[members]  # (R, D)
            if independent:
                pivot = torch.where(missing, ranks, self.features + 1).amin(1)
            else:  # a missing dimension, uniformly: the redraw starts at its rank
                pick = torch.rand(missing.shape, generator=generator).to(device).masked_fill(~missing, -1.0)
                pivot = ranks.gather(1, pick.argmax(1, keepdim=True))[:, 0]
            fill = missing & (ranks >= pivot[:, None])
            uniforms = self.noise(r, generator)
            proposal = current.clone()
            for k in members.unique().tolist():
                sel = members == k
                proposal[sel] = sampling.ancestral(
                    self.net, self.head, self.encoding, current[sel], fill[sel], k, uniforms[sel], fast,
                    None if cond is None else cond[sel],
                )  # fmt: skip
            new_terms = member_terms(proposal)
            new_log_p = joint(new_terms)
            forward = torch.where(fill, new_terms[members, row], 0).sum(-1)  # log q(x' | x)
            backward = torch.where(fill, terms[members, row], 0).sum(-1)  # log q(x | x')
            log_alpha = (new_log_p - forward) - (log_p - backward)
            u = torch.rand(r, generator=generator, dtype=torch.float64).to(device)
            accept = torch.log(u) < log_alpha.double()
            current = torch.where(accept[:, None], proposal, current)
            terms = torch.where(accept[None, :, None], new_terms, terms)
            log_p = torch.where(accept, new_log_p, log_p)
            moves += accept.long()
            trace[rows, step + 1] = log_p.double()
        values = values.clone()
        values[rows] = current
        accepted[rows] = moves
        return ChainState(values, exact, accepted, trace)

    def log_prob(
        self, x: torch.Tensor, given: Condition = UNCONDITIONAL, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x) (B,) in nats (a density for real-valued heads): the mixture over all members.
        (``rows`` seed noise in the kinds that draw any; this likelihood draws none.)"""
        self.check_input(x)
        self.check_condition(given, x.shape[0])
        if self.num_masks == 1:
            return self.log_prob_member(x, 0, given)
        per = torch.stack([self.log_prob_member(x, k, given) for k in range(self.num_masks)])  # (K, B)
        return torch.logsumexp(per, 0) - math.log(self.num_masks)

    @torch.no_grad()
    def log_prob_parts(self, x: torch.Tensor, given: Condition = UNCONDITIONAL) -> dict[str, torch.Tensor]:
        """A table's log p(x) (B,) in parts that sum to it: ``discrete`` (log-probabilities of the
        discrete columns' conditionals) and ``continuous`` (log-densities of the real ones'); an
        ensemble weighs each member's parts by its responsibility p(k | x) and adds ``mixture``,
        sum_k p(k | x) log(p(x) / p_k(x)) = H(p(k | x)) - log K (<= 0)."""
        if not isinstance(self.head, ColumnHeads):
            raise ValueError("only a model of a table (a per-column head) splits log p(x) into parts")
        self.check_input(x)
        self.check_condition(given, x.shape[0])
        c = self.network_condition(given, x.shape[0])
        missing = torch.isnan(x)  # a missing cell is in no part
        filled = torch.where(missing, self.head.fill_value().to(x), x)
        gap_disc, gap_real = self.head.split_columns(missing)
        per = [self.head.log_prob_parts(self.params(x, k, c), filled) for k in range(self.num_masks)]
        disc = torch.stack([torch.where(gap_disc, 0.0, d).sum(-1) for d, _ in per])  # (K, B)
        real = torch.stack([torch.where(gap_real, 0.0, r).sum(-1) for _, r in per])
        weights = torch.softmax(disc + real, 0)  # p(k | x)
        parts = {"discrete": (weights * disc).sum(0), "continuous": (weights * real).sum(0)}
        if self.num_masks > 1:
            total = torch.logsumexp(disc + real, 0) - math.log(self.num_masks)
            parts["mixture"] = total - parts["discrete"] - parts["continuous"]
        return parts

    def evaluate(
        self,
        x: torch.Tensor,
        given: Condition,
        batch_size: int,
        samples: int | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """The exact NLL (see ``ExactLikelihood.evaluate``); for a table, also its discrete and
        continuous parts (``log_prob_parts``)."""
        report = super().evaluate(x, given, batch_size, samples, seed, progress)
        if isinstance(self.head, ColumnHeads):
            parts = lambda b, g, _i: {k: -v for k, v in self.log_prob_parts(b, g).items()}  # noqa: E731
            means = evaluate_terms(self, x, batch_size, given=given, terms=parts)
            report.update({f"{k}_nll_nats": v for k, v in means.items()})
        return report

    @torch.no_grad()
    def conditional_log_prob(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        given: Condition = UNCONDITIONAL,
    ) -> torch.Tensor:
        """log p(x_missing | x_observed) (B,); NaN for rows where it is not exact.

        Exact when every member generates the observed dimensions first: then
        p_k(observed) is a prefix of its chain rule and the mixture conditional is a ratio.
        """
        self.check_input(x)
        check_observed(observed, x)
        self.check_condition(given, x.shape[0])
        observed = observed.to(x.device)
        exact = sampling.exact_members(self.net.ranks, observed).all(1)
        dims = torch.stack([self.log_prob_dims(x, k, given) for k in range(self.num_masks)])  # (K, B, D)
        joint = torch.logsumexp(dims.sum(-1), 0)
        marginal = torch.logsumexp(torch.where(observed, dims, 0.0).sum(-1), 0)
        return torch.where(exact, joint - marginal, torch.nan)

    @torch.no_grad()
    def observed_log_prob(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        given: Condition = UNCONDITIONAL,
        draws: int = OBSERVED_DRAWS,
        generator: torch.Generator | None = None,
        shared_noise: bool = False,
        seeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x_observed) (B,), the missing dimensions summed out, and (B,) bool: exact.

        The mixture's p(x_o) = (1/K) sum_k p_k(x_o). A member that generates the observed
        dimensions first gives p_k(x_o) exactly, as a prefix of its chain rule. Any other member's
        is estimated by importance sampling with ``draws`` completions from its own conditionals
        (missing values drawn in its order, observed ones kept): each completion's weight is
        prod_{d observed} p_k(x_d | x_<d), an unbiased estimate of p_k(x_o); so the mixture's is
        unbiased in p, and its log errs low on average (Jensen). A row is exact when every member
        is. Missing values in ``x`` (NaN or anything) are never read. ``shared_noise``: every
        row's completions use the same uniforms (common random numbers), so that rows which differ
        in one cell (a grid of its values) differ in their estimates smoothly. ``seeds`` (B,)
        instead seed each row's completions by its own number, so that a row's estimate does not
        depend on the rows scored with it.
        """
        check_observed(observed, x)
        if draws < 1:
            raise ValueError(f"draws must be at least 1 (got {draws})")
        observed = observed.to(x.device)
        fill = self.head.fill_value().to(x) if isinstance(self.head, ColumnHeads) else torch.zeros_like(x[0])
        x = torch.where(observed, x, fill)
        self.check_input(x, "x (its observed values)")
        b = x.shape[0]
        self.check_condition(given, b)
        c = self.network_condition(given, b)
        exact_k = sampling.exact_members(self.net.ranks, observed)  # (B, K)
        ranks = self.net.ranks
        per_member = []
        for k in range(self.num_masks):
            terms = torch.where(observed, self.log_prob_dims_given(x, k, c), 0.0).sum(-1)  # (B,)
            rows = (~exact_k[:, k]).nonzero()[:, 0]
            if len(rows):
                r = len(rows)
                obs = observed[rows].repeat_interleave(draws, 0)
                # only the missing values generated before the last observed one enter the weight
                last = torch.where(obs, ranks[k], 0).amax(1, keepdim=True)
                fill = ~obs & (ranks[k] < last)
                cs = None if c is None else c[rows].repeat_interleave(draws, 0)
                if seeds is not None:
                    uniforms = torch.cat([
                        self.noise(draws, torch.Generator().manual_seed(hash((int(seeds[i]), k)) % 2**63))
                        for i in rows.tolist()
                    ])  # fmt: skip
                elif shared_noise:
                    uniforms = self.noise(draws, generator).repeat(r, 1, 1)
                else:
                    uniforms = self.noise(r * draws, generator)
                xs = x[rows].repeat_interleave(draws, 0)
                net, head = self.net, self.head
                drawn = sampling.ancestral(net, head, self.encoding, xs, fill, k, uniforms, True, cs)
                weights = torch.where(obs, self.log_prob_dims_given(drawn, k, cs), 0.0).sum(-1)
                estimate = torch.logsumexp(weights.view(r, draws), 1) - math.log(draws)
                terms = terms.index_put((rows,), estimate)
            per_member.append(terms)
        log_p = torch.logsumexp(torch.stack(per_member), 0) - math.log(self.num_masks)
        return log_p, exact_k.all(1)

    def noise(self, rows: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniforms (B, D, U) for sampling: all the randomness a draw takes besides the member."""
        shape = (rows, self.features, self.head.noise_per_dim)
        return torch.rand(shape, generator=generator, dtype=self._dtype).to(self.net.ranks.device)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        uniforms: torch.Tensor | None = None,
        fast: bool = True,
        given: Condition = UNCONDITIONAL,
    ) -> torch.Tensor:
        """Draw ``n`` exact samples (n, D); with an ensemble each row picks a member at random.

        ``fast`` uses the degree-scheduled sampler; ``fast=False`` runs one full forward pass
        per dimension (slow, the reference it is tested against). A class-conditional model
        needs ``given.labels``: one for all rows, or (n,); a model with context columns
        ``given.context`` (n, C).
        """
        empty = torch.zeros(n, self.features, device=self._device, dtype=self._dtype)
        nothing = torch.zeros_like(empty, dtype=torch.bool)
        return self.ancestral_completion(empty, nothing, generator, uniforms, fast=fast, given=given)[0]

    @property
    def _dtype(self) -> torch.dtype:
        return self.net.output.bias.dtype

    @property
    def _device(self) -> torch.device:
        return self.net.ranks.device

    @torch.no_grad()
    def complete(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        generator: torch.Generator | None = None,
        given: Condition = UNCONDITIONAL,
        steps: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D) with the dimensions not ``observed`` drawn from the model's p(missing |
        observed), and (B,) bool: exact (no chain needed). Rows that are not exact are the end of
        a chain of ``steps`` moves (``complete_chain``; default ``CHAIN_STEPS``)."""
        steps = CHAIN_STEPS if steps is None else steps
        chain = self.complete_chain(x, observed, steps, generator, given)
        return chain.values, chain.exact

    @torch.no_grad()
    def ancestral_completion(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        generator: torch.Generator | None = None,
        uniforms: torch.Tensor | None = None,
        fast: bool = True,
        given: Condition = UNCONDITIONAL,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One ancestral draw of the dimensions not ``observed`` (bool (B, D)): exact where every
        member generates the observed dimensions first, else approximate (missing values drawn
        before an observed one ignore it); ``complete_chain`` starts from it and follows the model.

        Returns (completed x (B, D), exact (B,) bool). Observed values are kept as they are.
        ``uniforms`` (B, D, U) fixes the draws (see ``noise``).
        """
        check_observed(observed, x)
        observed = observed.to(x.device)
        self.check_input(torch.where(observed, x, torch.zeros_like(x)), "x (its observed values)")
        self.check_condition(given, x.shape[0])
        x = torch.where(observed, x, torch.zeros_like(x))
        c = self.network_condition(given, x.shape[0])  # (B, classes + C) or None
        if uniforms is None:
            uniforms = self.noise(x.shape[0], generator)
        members, exact = sampling.choose_members(
            self.net.ranks, observed, lambda k: self.log_prob_dims(x, k, given), generator
        )
        out = x.clone()
        for k in members.unique().tolist():
            rows = members == k
            ck = None if c is None else c[rows]
            out[rows] = sampling.ancestral(
                self.net, self.head, self.encoding, x[rows], ~observed[rows], k, uniforms[rows], fast, ck
            )
        return out, exact


@dataclass(frozen=True)
class ChainState:
    """Where ``MADEModel.complete_chain``'s chains ended, row by row."""

    values: torch.Tensor  # (B, D) completed rows
    exact: torch.Tensor  # (B,) bool: drawn exactly, no chain
    accepted: torch.Tensor  # (B,) moves accepted (0 for exact rows)
    trace: torch.Tensor  # (B, steps + 1) log p(x) after each move (NaN for exact rows)


def context_classes(cfg: Config, classes: int) -> int:
    """The label classes a model of ``cfg`` is conditioned on: ``classes`` with
    ``condition_on: label`` (a usage error if the data has none), else 0."""
    if cfg.model.condition_on != "label":
        return 0
    if classes < 1:
        raise UsageError(
            f"model.condition_on: label needs the number of label classes: {cfg.data.name} has no "
            "labels, or build_model was not given classes="
        )
    return classes
