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

__all__ = ["ancestral", "ancestral_fast", "ancestral_naive", "choose_members", "exact_members"]


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


def _draw(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The Bernoulli draw both samplers share, so equal logits give equal bits: u < sigmoid(l)."""
    return uniforms < torch.sigmoid(logits)


@torch.no_grad()
def ancestral_naive(
    model: MADEModel,
    x: torch.Tensor,
    fill: torch.Tensor,
    member: int,
    uniforms: torch.Tensor,
) -> torch.Tensor:
    """Naive ancestral sampling: one full forward pass per generated dimension (the test oracle).

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
        bit = _draw(model.net(x)[:, 0, d], uniforms[:, d]).to(x.dtype)
        x[:, d] = torch.where(rows, bit, x[:, d])
    return x


def _segments(needed: list[bool]) -> list[tuple[int, int, bool]]:
    """Split steps 0..D-1 into (start, stop, sample) runs: each sampled step alone, the rest merged."""
    out: list[tuple[int, int, bool]] = []
    for t, need in enumerate(needed):
        if need:
            out.append((t, t + 1, True))
        elif out and not out[-1][2]:
            out[-1] = (out[-1][0], t + 1, False)
        else:
            out.append((t, t + 1, False))
    return out


@torch.no_grad()
def ancestral_fast(
    model: MADEModel,
    x: torch.Tensor,
    fill: torch.Tensor,
    member: int,
    uniforms: torch.Tensor,
) -> torch.Tensor:
    """Degree-scheduled ancestral sampling: about one forward pass of arithmetic in all.

    A hidden unit of degree m depends only on inputs of rank <= m, so its pre-activation is
    built up as inputs are set and it is final after step m; the next layer then takes its
    value once. Output d only reads units of degree < rank(d), all final by then. Same
    arithmetic as ``ancestral_naive`` up to summation order: the same uniforms give the same
    samples (exactly so in float64).
    """
    net = model.net
    if net.context:
        raise ValueError("the degree-scheduled sampler takes no context inputs")
    net.set_member(member)
    n, n_dims = x.shape
    order_t = net.ranks[member].argsort()  # step t generates dimension order[t]
    order = order_t.tolist()
    # Hidden units sorted by degree, so the units that become final after a step (a unit of
    # degree m has all its inputs after step m) are one contiguous slice of each layer.
    perms = [degree.argsort(stable=True) for degree in net.degrees(member)[1:-1]]
    final_after = [
        torch.searchsorted(d[p], torch.arange(n_dims + 1, device=d.device), right=True).tolist()
        for d, p in zip(net.degrees(member)[1:-1], perms, strict=True)
    ]
    masked = [layer.weight * layer.mask for layer in net.layers]  # formed once, not per step
    h_last = masked[-1].shape[0] if masked else 0
    w_in = masked[0][perms[0]][:, order_t].T.contiguous() if masked else None  # (D, H_1)
    w_next = [  # (H_l, H_l+1), both sides in degree order
        masked[i + 1][perms[i + 1]][:, perms[i]].T.contiguous() for i in range(len(masked) - 1)
    ]
    pre = [layer.bias[p].expand(n, -1).clone() for layer, p in zip(net.layers, perms, strict=True)]
    # z = [last hidden layer, final units only | x | 1]: every output logit is one z @ row.
    z = torch.zeros(n, h_last + n_dims + 1, dtype=x.dtype, device=x.device)
    z[:, h_last : h_last + n_dims] = x
    z[:, -1] = 1.0
    w_out = net.output.weight * net.output.mask
    w_x = torch.zeros(w_out.shape[0], n_dims, dtype=x.dtype, device=x.device)
    if net.direct is not None:
        w_x = w_x + net.direct.weight * net.direct.mask
    if masked:
        w_out = w_out[:, perms[-1]]
    else:  # no hidden layer: the output layer itself reads x
        w_x, w_out = w_x + w_out, w_out[:, :0]
    w_logit = torch.cat([w_out, w_x, net.output.bias[:, None]], 1)[:n_dims]  # Bernoulli: P = 1

    uniforms = uniforms[:, order_t].T.contiguous()  # (D, B): row t is step t's uniforms
    needed = fill[:, order_t]
    every_row = needed.all(0).tolist()
    for start, stop, sample in _segments(needed.any(0).tolist()):
        if sample:
            col = h_last + order[start]
            bit = _draw(z @ w_logit[order[start]], uniforms[start]).to(x.dtype)
            z[:, col] = bit if every_row[start] else torch.where(needed[:, start], bit, z[:, col])
        if not masked:
            continue
        if stop - start == 1:  # a plain slice: cheaper than gathering one column
            col = h_last + order[start]
            xs = z[:, col : col + 1]
        else:
            xs = z[:, h_last + order_t[start:stop]]
        pre[0].addmm_(xs, w_in[start:stop])  # inputs of ranks start+1..stop are set
        for layer in range(len(masked)):
            lo, hi = final_after[layer][start], final_after[layer][stop]
            if hi == lo:
                continue
            if layer + 1 < len(masked):
                pre[layer + 1].addmm_(torch.relu(pre[layer][:, lo:hi]), w_next[layer][lo:hi])
            else:
                z[:, lo:hi] = torch.relu(pre[layer][:, lo:hi])
    x = z[:, h_last : h_last + n_dims].clone()
    return x


@torch.no_grad()
def ancestral(
    model: MADEModel,
    x: torch.Tensor,
    fill: torch.Tensor,
    member: int,
    uniforms: torch.Tensor,
    fast: bool = True,
) -> torch.Tensor:
    """Sample the ``fill`` dimensions of ``x`` under one member, degree-scheduled unless not ``fast``."""
    return (ancestral_fast if fast else ancestral_naive)(model, x, fill, member, uniforms)
