"""Degrees: the single source of truth for every mask, ordering and check (pure functions).

Conventions (Germain et al. 2015, section 4):
- ``ranks[j]`` is the step (1..D) at which x_j is generated; the generation order is
  ``ranks.argsort()``. Context inputs have degree 0, so every unit may see them.
- A hidden unit of degree m sees units of degree <= m; an output of degree d sees units of
  degree < d (strict). The oracle is ``allowed[o, i] = out_degree[o] > in_degree[i]``.
"""

from __future__ import annotations

import torch

from .sections import HiddenDegrees, Ordering

__all__ = [
    "HiddenDegrees",
    "Ordering",
    "allowed",
    "generation_order",
    "hidden_degrees",
    "input_ranks",
    "mask",
]


def input_ranks(features: int, ordering: Ordering, generator: torch.Generator) -> torch.Tensor:
    """Ranks 1..D of the inputs for an ordering; ``random`` draws a permutation."""
    if ordering == "natural":
        return torch.arange(1, features + 1)
    if ordering == "reverse":
        return torch.arange(features, 0, -1)
    if ordering == "random":
        return torch.randperm(features, generator=generator) + 1
    raise ValueError(f"unknown ordering {ordering!r}")


def hidden_degrees(
    units: int, features: int, low: int, mode: HiddenDegrees, generator: torch.Generator
) -> torch.Tensor:
    """Degrees of one hidden layer, spread over [low, D - 1].

    ``low`` is the smallest degree of the layer below, so every unit has an input. ``random``
    samples uniformly as in the paper; ``even`` spaces them evenly. Never cyclic from 1: with
    fewer units than D - 1 that would leave the last inputs unconnected.
    """
    high = max(low, features - 1)
    if mode == "random":
        return torch.randint(low, high + 1, (units,), generator=generator)
    if mode == "even":
        return torch.linspace(low, high, units).round().long()
    raise ValueError(f"unknown hidden degree mode {mode!r}")


def mask(in_degrees: torch.Tensor, out_degrees: torch.Tensor, *, strict: bool) -> torch.Tensor:
    """Boolean (out, in) mask: ``out > in`` for outputs (strict), ``out >= in`` for hidden units."""
    if strict:
        return out_degrees[:, None] > in_degrees[None, :]
    return out_degrees[:, None] >= in_degrees[None, :]


def allowed(ranks: torch.Tensor) -> torch.Tensor:
    """The autoregressive oracle (D, D): output o may depend on input i iff rank[o] > rank[i]."""
    return mask(ranks, ranks, strict=True)


def generation_order(ranks: torch.Tensor) -> torch.Tensor:
    """Indices of the dimensions in the order they are generated."""
    return ranks.argsort()
