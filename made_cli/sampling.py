"""Ancestral sampling and conditional completion for MADEs of any head, with mask ensembles.

Sampling is completion with nothing observed. Completion is exact for a member whose ordering
puts every observed dimension before every missing one; for an ensemble the member is drawn
with probability proportional to p_k(observed), which makes the draw exact for the mixture.

Everything here works on a MADE network, a head and the input encoding, not on a model class:
any model built from MADEs can run its conditionals through the degree-scheduled machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .heads import Head
from .made import MADE

__all__ = [
    "Encoding",
    "ancestral",
    "ancestral_fast",
    "ancestral_naive",
    "choose_members",
    "exact_members",
    "ignored_evidence",
]


@dataclass(frozen=True)
class Encoding:
    """How values enter the network: (g(x) - shift) / scale per dimension, or as they are (None);
    g is the log (of x, no smaller than ``floor``) where ``log`` says so (a table's log-scale
    columns), else the identity.

    The head models the values as stored; only what the network reads is encoded.
    """

    shift: torch.Tensor | None = None  # (D,)
    scale: torch.Tensor | None = None  # (D,)
    log: torch.Tensor | None = None  # (D,) bool
    floor: torch.Tensor | None = None  # (D,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Encoded values; a missing cell (NaN) enters as 0, the training mean."""
        if self.shift is None or self.scale is None:
            return x
        if self.log is not None and self.floor is not None:
            x = torch.where(self.log, torch.log(torch.maximum(x, self.floor)), x)
        return torch.nan_to_num((x - self.shift) / self.scale, nan=0.0)

    def column(self, value: torch.Tensor, d: int) -> torch.Tensor:
        """Dimension ``d`` of the encoding, for one column of values: the same arithmetic."""
        if self.shift is None or self.scale is None:
            return value
        if self.log is not None and self.floor is not None and bool(self.log[d]):
            value = torch.log(torch.clamp_min(value, float(self.floor[d])))
        return torch.nan_to_num((value - self.shift[d]) / self.scale[d], nan=0.0)


def exact_members(ranks: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: member k generates every observed dimension of row b before any missing one."""
    features = ranks.shape[1]
    obs = observed[:, None, :]  # (B, 1, D)
    last_observed = torch.where(obs, ranks[None], 0).amax(-1)  # (B, K)
    first_missing = torch.where(~obs, ranks[None], features + 1).amin(-1)  # (B, K)
    return last_observed < first_missing


def ignored_evidence(ranks: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """(B, K): pairs (missing m, observed o) that member k generates m before o.

    Each such pair is evidence a completion under that member cannot use; 0 means exact.
    """
    out = []
    for member_ranks in ranks:
        obs = observed[:, member_ranks.argsort()].long()  # (B, D) in generation order
        after = obs.flip(1).cumsum(1).flip(1) - obs  # observed dimensions generated later
        out.append(((1 - obs) * after).sum(1))
    return torch.stack(out, dim=1)


@torch.no_grad()
def choose_members(
    ranks: torch.Tensor,
    observed: torch.Tensor,
    log_prob_dims: Callable[[int], torch.Tensor],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick a member per row for completion; returns (members (B,), exact (B,) bool).

    ``ranks`` (K, D) are the members' orderings and ``log_prob_dims(k)`` gives member k's
    log p_k(x_d | x_<d) (B, D) at the rows' values. Among the members that are exact for a row,
    k is drawn with weight p_k(observed) (a prefix of its ordering, so one pass gives it). The
    row is exact when every member is, since then this is the mixture's own conditional;
    otherwise it falls back to the exact sub-ensemble, or, with no exact member, to a member
    that ignores the least observed evidence.
    """
    k = ranks.shape[0]
    exact = exact_members(ranks, observed)  # (B, K)
    if k == 1:
        return torch.zeros(observed.shape[0], dtype=torch.long, device=observed.device), exact[:, 0]
    # where, not a product: a placeholder in a missing cell may have log p = -inf (off a support)
    log_obs = torch.stack(
        [torch.where(observed, log_prob_dims(m), 0.0).sum(-1) for m in range(k)], 1
    )  # (B, K)
    ignored = ignored_evidence(ranks, observed)
    least = ignored == ignored.amin(1, keepdim=True)  # the exact members, if a row has any
    logits = torch.where(least, log_obs, -torch.inf)
    logits = torch.where(exact.any(1, keepdim=True), logits, torch.where(least, 0.0, -torch.inf))
    probs = torch.softmax(logits, dim=1)
    members = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0]
    return members.to(observed.device), exact.all(1)


@torch.no_grad()
def ancestral_naive(
    net: MADE,
    head: Head,
    encoding: Encoding,
    x: torch.Tensor,
    fill: torch.Tensor,
    member: int,
    uniforms: torch.Tensor,
    c: torch.Tensor | None = None,
) -> torch.Tensor:
    """Naive ancestral sampling: one full forward pass per generated dimension (the test oracle).

    ``x`` (B, D) holds the observed values; dimensions where ``fill`` is true are drawn in the
    member's generation order by the head from ``uniforms`` (B, D, U). Dimensions nobody
    needs are skipped.
    """
    x = x.clone()
    order = net.ranks[member].argsort()
    net.set_member(member)
    for d in order.tolist():
        rows = fill[:, d]
        if not rows.any():
            continue
        value = head.column(d).draw(net(encoding(x), c, raw=x)[:, :, d], uniforms[:, d])
        x[:, d] = torch.where(rows, value, x[:, d])
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
    net: MADE,
    head: Head,
    encoding: Encoding,
    x: torch.Tensor,
    fill: torch.Tensor,
    member: int,
    uniforms: torch.Tensor,
    c: torch.Tensor | None = None,
) -> torch.Tensor:
    """Degree-scheduled ancestral sampling: about one forward pass of arithmetic in all.

    A hidden unit of degree m depends only on inputs of rank <= m, so its pre-activation is
    built up as inputs are set and it is final after step m; the next layer then takes its
    value once. Output d only reads units of degree < rank(d), all final by then; the context
    (degree 0) enters once, at the start. Same arithmetic as ``ancestral_naive`` up to
    summation order: the same uniforms give the same samples (exactly so in float64).
    """
    net.set_member(member)
    n, n_dims = x.shape
    n_ctx = net.context
    order_t = net.ranks[member].argsort()  # step t generates dimension order[t]
    order = order_t.tolist()
    # Hidden units sorted by degree, so the units that become final after a step (a unit of
    # degree m has all its inputs after step m) are one contiguous slice of each layer.
    perms = [degree.argsort(stable=True) for degree in net.degrees(member)[1:-1]]
    final_after = [
        torch.searchsorted(d[p], torch.arange(n_dims + 1, device=d.device), right=True).tolist()
        for d, p in zip(net.degrees(member)[1:-1], perms, strict=True)
    ]
    masked = [layer.masked_weight() for layer in net.layers]  # formed once, not per step
    h_last = masked[-1].shape[0] if masked else 0
    w_in = masked[0][perms[0]][:, order_t].T.contiguous() if masked else None  # (D, H_1)
    w_next = [  # (H_l, H_l+1), both sides in degree order
        masked[i + 1][perms[i + 1]][:, perms[i]].T.contiguous() for i in range(len(masked) - 1)
    ]
    pre = [layer.bias[p].expand(n, -1).clone() for layer, p in zip(net.layers, perms, strict=True)]
    if masked and n_ctx:  # every hidden unit sees the context: its share is in from the start
        pre[0].addmm_(c, masked[0][perms[0]][:, n_dims:].T)
    # z = [last hidden layer, final units only | x | context | 1]: each dimension's P
    # parameters are one product z @ w_params[d].
    # z holds x as the network sees it; ``out`` the values drawn, in data space
    out = x.clone()
    z = torch.zeros(n, h_last + n_dims + n_ctx + 1, dtype=x.dtype, device=x.device)
    z[:, h_last : h_last + n_dims] = encoding(x)
    if n_ctx:
        z[:, h_last + n_dims : -1] = c
    z[:, -1] = 1.0
    w_out = net.padded(net.output.masked_weight())  # (P * D, H): rows no dimension uses are 0
    out_bias = net.padded(net.output.bias)
    w_inputs = torch.zeros(w_out.shape[0], n_dims + n_ctx, dtype=x.dtype, device=x.device)
    if net.direct is not None:
        w_inputs = w_inputs + net.padded(net.direct.masked_weight())
    if masked:
        w_out = w_out[:, perms[-1]]
    else:  # no hidden layer: the output layer itself reads x and the context
        w_inputs, w_out = w_inputs + w_out, w_out[:, :0]
    # Without direct connections the parameters read the last hidden layer alone: its slice of z
    # and the bias, not the D + C columns of zeros (7x less work per step for 1x128 at D = 784).
    hidden_only = net.direct is None and bool(masked)
    reads = h_last if hidden_only else z.shape[1]
    w_all = torch.cat([w_out, w_inputs, out_bias[:, None]], 1)[:, :reads]  # (P * D, Z)
    w_params = w_all.view(head.params_per_dim, n_dims, -1).permute(1, 2, 0).contiguous()  # (D, Z, P)
    bias = out_bias.view(head.params_per_dim, n_dims).T.contiguous()  # (D, P)

    uniforms = uniforms[:, order_t].transpose(0, 1).contiguous()  # (D, B, U): step t's noise
    needed = fill[:, order_t]
    every_row = needed.all(0).tolist()
    for start, stop, sample in _segments(needed.any(0).tolist()):
        if sample:
            col = h_last + order[start]
            d = order[start]
            params = torch.addmm(bias[d], z[:, :reads], w_params[d]) if hidden_only else z @ w_params[d]
            value = head.column(d).draw(params, uniforms[start])
            if not every_row[start]:
                value = torch.where(needed[:, start], value, out[:, d])
            out[:, d] = value
            z[:, col] = encoding.column(value, d)
        if not masked:
            continue
        if stop - start == 1:  # a plain slice: cheaper than gathering one column
            col = h_last + order[start]
            xs = z[:, col : col + 1]
        else:
            xs = z[:, h_last + order_t[start:stop]]
        pre[0].addmm_(xs, w_in[start:stop])  # inputs of ranks start+1..stop are set
        if net.embedding is not None:  # and so are their categories' (or missing cells') vectors
            pre[0] += net.embedded(out, order[start:stop])[:, perms[0]]
        for layer in range(len(masked)):
            lo, hi = final_after[layer][start], final_after[layer][stop]
            if hi == lo:
                continue
            if layer + 1 < len(masked):
                pre[layer + 1].addmm_(torch.relu(pre[layer][:, lo:hi]), w_next[layer][lo:hi])
            else:
                z[:, lo:hi] = torch.relu(pre[layer][:, lo:hi])
    return out


@torch.no_grad()
def ancestral(
    net: MADE,
    head: Head,
    encoding: Encoding,
    x: torch.Tensor,
    fill: torch.Tensor,
    member: int,
    uniforms: torch.Tensor,
    fast: bool = True,
    c: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample the ``fill`` dimensions of ``x`` under one member, degree-scheduled unless not ``fast``."""
    run = ancestral_fast if fast else ancestral_naive
    return run(net, head, encoding, x, fill, member, uniforms, c)
