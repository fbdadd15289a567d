"""Ancestral sampling and conditional completion for Bernoulli MADEs, with mask ensembles.

Sampling is completion with nothing observed. Completion is exact for a member whose ordering
puts every observed dimension before every missing one; for an ensemble the member is drawn
with probability proportional to p_k(observed), which makes the draw exact for the mixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .models import MADEModel

__all__ = ["ancestral", "choose_members", "exact_members"]


def exact_members(ranks: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: member k generates every observed dimension of row b before any missing one."""
    features = ranks.shape[1]
    obs = observed[:, None, :]  # (B, 1, D)
    last_observed = torch.where(obs, ranks[None], 0).amax(-1)  # (B, K)
    first_missing = torch.where(~obs, ranks[None], features + 1).amin(-1)  # (B, K)
    return last_observed < first_missing


@torch.no_grad()
def choose_members(
    model: MADEModel, x: torch.Tensor, observed: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick a member per row for completion; returns (members (B,), exact (B,) bool).

    Among the members that are exact for a row, k is drawn with weight p_k(observed) (a prefix
    of its ordering, so one pass gives it). The row is exact when every member is, since then
    this is the mixture's own conditional; otherwise it falls back to the exact sub-ensemble, or
    to a uniform pick when no member is exact.
    """
    k = model.num_masks
    exact = exact_members(model.net.ranks, observed)  # (B, K)
    if k == 1:
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device), exact[:, 0]
    log_obs = torch.stack([(model.log_prob_dims(x, m) * observed).sum(-1) for m in range(k)], dim=1)  # (B, K)
    any_exact = exact.any(1, keepdim=True)
    logits = torch.where(exact, log_obs, -torch.inf)
    logits = torch.where(any_exact, logits, torch.zeros_like(logits))
    probs = torch.softmax(logits, dim=1)
    members = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0]
    return members.to(x.device), exact.all(1)


@torch.no_grad()
def ancestral(
    model: MADEModel,
    x: torch.Tensor,
    fill: torch.Tensor,
    member: int,
    uniforms: torch.Tensor,
) -> torch.Tensor:
    """Naive ancestral sampling: one full forward pass per generated dimension.

    ``x`` (B, D) holds the observed values; dimensions where ``fill`` is true are sampled in
    the member's generation order as ``uniforms < p``. Dimensions nobody needs are skipped.
    """
    x = x.clone()
    order = model.net.ranks[member].argsort()
    model.net.set_member(member)
    for d in order.tolist():
        rows = fill[:, d]
        if not rows.any():
            continue
        p = torch.sigmoid(model.net(x)[:, 0, d])
        x[:, d] = torch.where(rows, (uniforms[:, d] < p).to(x.dtype), x[:, d])
    return x
