"""Evaluation on a split: the means of a model's per-row terms, agreed across ranks, in full fp32."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from .distributed import SINGLE, Dist
from .errors import UsageError
from .interface import DensityModel, Progress

__all__ = ["Terms", "evaluate_nll", "evaluate_terms", "labels_for", "tf32"]

# per-row terms of a batch (B,) given its labels, the rows' places in the split and its context
Terms = Callable[
    [torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None], dict[str, torch.Tensor]
]


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
    labels: torch.Tensor | None = None,
    terms: Terms | None = None,
    progress: Progress | None = None,
    context: torch.Tensor | None = None,
) -> dict[str, float]:
    """Means per example of per-row terms (``nll`` among them, in nats): the model's
    ``validation_terms`` unless ``terms`` says otherwise (given the batch, its labels, its
    rows' places in the split and its context). ``progress`` hears (rows done, rows) after each batch.

    A class-conditional model is evaluated given ``labels``, a model with context columns given
    ``context`` (N, C). In a process group each rank takes every world-th row and the sums are
    added up, so all ranks get the same numbers.
    """
    terms = terms or model.validation_terms
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = x[group.rank :: group.world]
    index = torch.arange(x.shape[0])[group.rank :: group.world]  # rows' places in the split
    row_labels = labels_for(model, labels)
    row_labels = None if row_labels is None else row_labels[group.rank :: group.world]
    row_context = None if context is None else context[group.rank :: group.world]
    totals: dict[str, float] = {}
    with tf32(False):  # reported likelihoods in full fp32, whatever training used
        for i in range(0, rows.shape[0], batch_size):
            batch = rows[i : i + batch_size].to(device)
            y = None if row_labels is None else row_labels[i : i + batch_size].to(device)
            c = None if row_context is None else row_context[i : i + batch_size].to(device)
            for key, value in terms(batch, y, index[i : i + batch_size], c).items():
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
    labels: torch.Tensor | None = None,
    terms: Terms | None = None,
    context: torch.Tensor | None = None,
) -> float:
    """Mean negative log-likelihood in nats per example, with the model's full estimator
    (for a VAE: -ELBO, which bounds it from above); see ``evaluate_terms``."""
    return evaluate_terms(model, x, batch_size, group, labels, terms, context=context)["nll"]


def labels_for(model: DensityModel, labels: torch.Tensor | None) -> torch.Tensor | None:
    """The labels a model takes: those given if it is class-conditional, else none."""
    if not model.classes:
        return None
    if labels is None:
        raise UsageError("this model is conditioned on labels, but the data has none")
    return labels
