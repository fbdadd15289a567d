"""The one interface between a model kind and the rest: what training and every command use.

The trainer, the commands and the CLI see a model only through ``DensityModel`` and the kind's
registry entry (kinds/); a new kind implements this protocol in its own package (kinds/<kind>/).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .condition import UNCONDITIONAL, Condition
from .heads import Head
from .made import MADE

__all__ = ["Completion", "DensityModel", "Progress", "Verification"]

Progress = Callable[[int, int], None]  # (done, total) while a long evaluation runs

EXACT, SUB_ENSEMBLE, APPROXIMATE = "exact", "exact for a sub-ensemble", "approximate"
MARKOV_CHAIN = "Markov chain"  # drawn by a chain whose stationary law is p(missing | observed)


@dataclass(frozen=True)
class Completion:
    """Rows completed from an observed part, and what is exact about each.

    Per row: EXACT (drawn from p(missing | observed) directly), MARKOV_CHAIN (the end of a chain
    of ``steps`` Metropolis-Hastings moves that targets it: exact in the limit, and its
    ``acceptance`` and ``ess`` say how far it got), or, with no chain, SUB_ENSEMBLE (exact for
    the members that generate the observed part first) or APPROXIMATE.
    """

    values: torch.Tensor  # (B * per_row, D): observed values kept, the rest drawn
    status: list[str]  # per row
    conditional: torch.Tensor  # (B,) log p(missing | observed) of the truth where EXACT, else NaN
    method: str | None = None  # how an approximate completion was made, if the model says
    steps: int = 0  # Metropolis-Hastings moves of each chain (MARKOV_CHAIN rows)
    acceptance: torch.Tensor | None = None  # (B,) share of moves accepted over a row's chains; NaN: none
    ess: torch.Tensor | None = None  # (B,) effective sample size of a row's chains (per_row > 1); NaN: none


@dataclass(frozen=True)
class Verification:
    """The autoregressive checks of a model, as rows of a table (`made verify-ar`)."""

    unit: str  # what a row is: "member", "IAF step"
    columns: list[str]  # after the unit's own column
    rows: list[list[str]]
    ok: list[bool]
    caption: str
    verdict: str  # said when every row passes
    records: list[dict[str, Any]] = field(default_factory=list)  # per row, for verify-ar.json

    @property
    def failed(self) -> list[str]:
        return [row[0] for row, ok in zip(self.rows, self.ok, strict=True) if not ok]


class DensityModel(Protocol):
    """A model the trainer trains and every command uses (MADEModel, MAF, IAFVAE).

    It owns its training schedule (a MADE's mask of the step, a VAE's KL weight): the trainer
    only hands it the step.
    """

    features: int  # dimensions of x
    classes: int  # label classes it is conditioned on; 0 for none
    context_features: int  # continuous context columns it is conditioned on (c at degree 0); 0 for none
    head: Head  # the law of each dimension its outputs parameterise (the baseline fits it alone)

    @property
    def estimator(self) -> str:
        """How its validation and test numbers are computed, printed beside each."""
        ...

    @property
    def log_prob_estimator(self) -> str:
        """How ``log_prob`` computes log p(x) (a VAE: by importance sampling, not its -ELBO)."""
        ...

    def fit_inputs(self, train: torch.Tensor, given: Condition = UNCONDITIONAL) -> None:
        """Set what comes from the training split and its condition (input statistics, output
        biases, p(y), the context columns' scaling)."""
        ...

    def forward(
        self,
        x: torch.Tensor,
        step: int,
        steps_per_epoch: int,
        given: Condition = UNCONDITIONAL,
        noise: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The training loss per row (B,) at a step, whose mean is minimised."""
        ...

    def schedule_terms(self, step: int, steps_per_epoch: int) -> dict[str, float]:
        """What the schedule is at a step, recorded with each epoch (a VAE: its KL weight)."""
        ...

    def patience_counts(self, step: int, steps_per_epoch: int) -> bool:
        """Whether an epoch ending at this step counts against early stopping."""
        ...

    def validation_terms(
        self, x: torch.Tensor, given: Condition = UNCONDITIONAL, rows: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-row numbers the trainer averages on a split; ``nll`` decides early stopping."""
        ...

    def epoch_line(self, train_loss: float, valid: dict[str, float], terms: dict[str, float]) -> str:
        """The middle of the per-epoch line: the training loss and the validation terms."""
        ...

    def evaluate(
        self,
        x: torch.Tensor,
        given: Condition,
        batch_size: int,
        samples: int | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """`made evaluate`'s report on rows x: ``nll_nats``, ``estimator`` and any other terms."""
        ...

    def log_prob(
        self, x: torch.Tensor, given: Condition = UNCONDITIONAL, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x) (B,) in nats (a density for real values): exact, or the kind's estimate.
        ``rows`` (B,): each row's place, which seeds whatever noise its estimate draws (a VAE's
        importance samples, a flow's dequantisation); default: its place in x."""
        ...

    def draw(
        self,
        n: int,
        generator: torch.Generator,
        given: Condition = UNCONDITIONAL,
        means: bool = False,
    ) -> torch.Tensor:
        """``n`` samples (n, D); ``means`` asks for the conditional means where the kind has them."""
        ...

    def sampler_name(self, means: bool = False) -> str:
        """How ``draw`` samples, in words."""
        ...

    def complete_rows(
        self,
        given: Condition,
        per_row: int,
        generator: torch.Generator,
        rounds: int | None = None,
        steps: int | None = None,
        truth: torch.Tensor | None = None,
    ) -> Completion:
        """Each row of ``given.cells`` (NaN where free) completed ``per_row`` times (rows repeat
        in place, row-major), given its labels and context; rows that are not exact run chains
        of ``steps`` moves where the kind has them. ``truth`` (B, D), the rows as they were (a
        test row's own missing values), is what ``Completion.conditional`` scores; None: NaN."""
        ...

    def made_nets(self) -> list[MADE]:
        """Every MADE in the model (their degrees are broadcast under torchrun)."""
        ...

    # what training and loading use of torch.nn.Module
    def parameters(self) -> Iterator[torch.nn.Parameter]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...
    def to(self, *args: Any) -> Any: ...

    @property
    def training(self) -> bool: ...
