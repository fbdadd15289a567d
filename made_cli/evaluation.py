"""Evaluation on a split: the means of a model's per-row terms, agreed across ranks, in full fp32."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from .condition import UNCONDITIONAL, Condition
from .distributed import SINGLE, Dist
from .errors import UsageError
from .interface import DensityModel, Progress

__all__ = ["Terms", "condition_for", "evaluate_nll", "evaluate_terms", "tf32"]

# per-row terms of a batch (B,) given its condition and the rows' places in the split
Terms = Callable[[torch.Tensor, Condition, torch.Tensor], dict[str, torch.Tensor]]


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls on CUDA (Ampere and later) for training steps; off for reported likelihoods."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


@torch.no_grad()
def evaluate_terms(
    model: DensityModel,
    x: torch.Tensor,
    batch_size: int = 1000,
    group: Dist = SINGLE,
    given: Condition = UNCONDITIONAL,
    terms: Terms | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Means per example of per-row terms (``nll`` among them, in nats): the model's
    ``validation_terms`` unless ``terms`` says otherwise (given the batch, its condition and
    its rows' places in the split). ``progress`` hears (rows done, rows) after each batch.

    The rows are evaluated ``given`` their labels and context (as ``condition_for`` keeps them).
    In a process group each rank takes every world-th row and the sums are added up, so all
    ranks get the same numbers.
    """
    terms = terms or model.validation_terms
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = x[group.rank :: group.world]
    index = torch.arange(x.shape[0])[group.rank :: group.world]  # rows' places in the split
    row_given = condition_for(model, given).rows(slice(group.rank, None, group.world))
    totals: dict[str, float] = {}
    with tf32(False):  # reported likelihoods in full fp32, whatever training used
        for i in range(0, rows.shape[0], batch_size):
            batch = rows[i : i + batch_size].to(device)
            g = row_given.rows(slice(i, i + batch_size)).to(device)
            for key, value in terms(batch, g, index[i : i + batch_size]).items():
                totals[key] = totals.get(key, 0.0) + float(value.sum())
            if progress is not None:
                progress(min(i + batch_size, rows.shape[0]), rows.shape[0])
    model.train(was_training)
    keys = sorted(totals)
    sums = group.sum([*(totals[k] for k in keys), float(rows.shape[0])], device)
    return {k: v / sums[-1] for k, v in zip(keys, sums, strict=False)}


def evaluate_nll(
    model: DensityModel,
    x: torch.Tensor,
    batch_size: int = 1000,
    group: Dist = SINGLE,
    given: Condition = UNCONDITIONAL,
    terms: Terms | None = None,
) -> float:
    """Mean negative log-likelihood in nats per example, with the model's full estimator
    (for a VAE: -ELBO, which bounds it from above); see ``evaluate_terms``."""
    return evaluate_terms(model, x, batch_size, group, given, terms)["nll"]


def condition_for(model: DensityModel, given: Condition) -> Condition:
    """What a model takes of the data's condition: the labels only if it is class-conditional
    (a usage error if the data has none), the context columns only if it has any."""
    if model.classes and given.labels is None:
        raise UsageError("this model is conditioned on labels, but the data has none")
    labels = given.labels if model.classes else None
    context = given.context if model.context_features else None
    return Condition(labels, context, given.cells)
