"""Degree blocks: a single-mask layer stores and computes only what its mask allows.

With hidden units sorted by degree and the inputs in a monotone ordering (natural or
reverse), each row of a MADE mask allows one interval of columns, and the intervals move with
the row: the mask is a staircase. A block of neighbouring rows then needs only the union of
its rows' intervals; every other entry of the layer is zero by construction and is neither
stored, multiplied nor given to the optimiser. Only a block's ragged edge, where some of its
rows are allowed and others not, holds masked entries: they are kept at exact zeros (their
gradient is masked, so Adam, AdamW and weight decay leave them at zero) and the products
read them as they are.

A random ordering's input and output layers are staircases once their columns and rows are
put in generation order (``Plan.row_order``, ``column_order``). Nothing here needs sorted
degrees or an order to be correct: a mask with no staircase only makes every block cover more
columns, and the cost model then keeps one block, or the whole matrix. The cost model's constants
were measured on the 2-core CPU this project runs on; the choice is a function of the mask
alone, so a resumed run redoes the same float arithmetic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "BLOCK_COUNTS",
    "Block",
    "Costs",
    "Gather",
    "Plan",
    "Prefixes",
    "blocked_linear",
    "gathered_linear",
    "plan",
    "rows_to_gather",
]

BLOCK_COUNTS = (1, 2, 4, 8, 16)  # candidate blocks per row segment
NOMINAL_BATCH = 100  # rows per product the plan is chosen for (the paper's batch size)
INFERENCE_BATCH = 1000  # rows per product an ensemble member's inference plan is chosen for
# an inference plan's candidates: thinner gathered blocks ran slower on the AMD EPYC (1x500 and
# 1x2000 ensembles, 1000 rows: 16 blocks 0.6x and 0.97x the whole weight times the mask)
INFERENCE_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Costs:
    """What a plan weighs, in multiply-adds of a large product on the machine: one more
    product's dispatch, the blocks' Python forward and backward over F.linear's, masking one
    weight or gradient entry, storing one weight (the optimiser's update and the gradient's
    memory), copying one weight into an ensemble member's order (rows, then columns), and
    the fixed cost of one block so copied. The first four were measured on an AVX-512 CPU
    (about 90 G multiply-adds/s); the copies' were fitted on an AMD EPYC (AVX2) to where
    gathered blocks paid there: a 2x8000 ensemble's 1000-row mixture 1.1x its whole
    products, a 1x2000's 0.96x (so it is not gathered). Constants timed on the AMD EPYC by
    a probe made plans of more blocks that trained slower there than these (docs/results.md):
    a small product loses more than its dispatch, which ``call`` stands for."""

    call: float = 1.0e6
    function: float = 3.0e6
    mask: float = 10.0
    store: float = 40.0
    gather: float = 500.0
    gathered_block: float = 1.0e8


COSTS = Costs()


@dataclass(frozen=True)
class Block:
    """Rows ``r0:r1`` read the columns ``c0:c1``; every one of them reads ``d0:d1``."""

    r0: int
    r1: int
    c0: int
    c1: int
    d0: int
    d1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.r1 - self.r0, self.c1 - self.c0

    @property
    def ragged(self) -> tuple[tuple[int, int], ...]:
        """Column ranges, relative to ``c0``, that some rows of the block read and others not."""
        if self.d0 >= self.d1:
            return ((0, self.c1 - self.c0),)
        parts = ((0, self.d0 - self.c0), (self.d1 - self.c0, self.c1 - self.c0))
        return tuple((a, z) for a, z in parts if z > a)


@dataclass(frozen=True)
class Plan:
    """How an (R, C) layer is stored and computed: one weight per block (rows that read no
    column keep only their bias), and the last ``tail`` columns (the context, degree 0) read
    by every row, stored as one (R, tail) weight.

    Blocks are laid out in stored coordinates: stored row i is the layer's row
    ``row_order[i]`` and stored column j its column ``column_order[j]`` (identity when None;
    the tail is never reordered). A random ordering's input and output layers are reordered
    into generation order, where they are staircases: the layer gathers its input columns
    and scatters its output rows (``MaskedLinear.forward``)."""

    rows: int
    columns: int
    tail: int
    blocks: tuple[Block, ...]
    row_order: tuple[int, ...] | None = None
    column_order: tuple[int, ...] | None = None

    @property
    def staircase(self) -> int:
        """Columns before the tail."""
        return self.columns - self.tail

    def indices(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor | None, ...]:
        """(row order, its inverse, column order over all C columns, its inverse) as index
        tensors; None where there is no reordering."""
        out: list[torch.Tensor | None] = []
        for order, size in ((self.row_order, self.rows), (self.column_order, self.columns)):
            if order is None:
                out += [None, None]
                continue
            index = torch.tensor([*order, *range(len(order), size)], device=device)
            out += [index, index.argsort()]
        return tuple(out)

    def stored(self, matrix: torch.Tensor) -> torch.Tensor:
        """An (R, C) matrix in the plan's stored coordinates."""
        rows, _, columns, _ = self.indices(matrix.device)
        if rows is not None:
            matrix = matrix.index_select(0, rows)
        return matrix if columns is None else matrix.index_select(1, columns)

    def unstored(self, matrix: torch.Tensor) -> torch.Tensor:
        """An (R, C) matrix in stored coordinates, back in the layer's own."""
        _, rows, _, columns = self.indices(matrix.device)
        if rows is not None:
            matrix = matrix.index_select(0, rows)
        return matrix if columns is None else matrix.index_select(1, columns)

    def covered(self) -> torch.Tensor:
        """(R, C) bool: the entries the plan stores (a superset of the mask)."""
        out = torch.zeros(self.rows, self.columns, dtype=torch.bool)
        out[:, self.staircase :] = True
        for b in self.blocks:
            out[b.r0 : b.r1, b.c0 : b.c1] = True
        return self.unstored(out)

    def trained(self, mask: torch.Tensor) -> torch.Tensor:
        """(R, C) bool: the stored entries whose gradient can be nonzero (within the mask)."""
        out = torch.zeros(self.rows, self.columns, dtype=torch.bool)
        out[:, self.staircase :] = True
        mask = self.stored(mask.detach().bool().cpu())
        for b in self.blocks:
            out[b.r0 : b.r1, b.d0 : max(b.d0, b.d1)] = True
            for a, z in b.ragged:
                cols = slice(b.c0 + a, b.c0 + z)
                out[b.r0 : b.r1, cols] = mask[b.r0 : b.r1, cols]
        return self.unstored(out)

    def split(self, weight: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """An (R, C) matrix (a weight, or an optimiser moment) as the plan stores it: the
        blocks' parts and the tail. Entries outside the plan are dropped."""
        weight = self.stored(weight)
        blocks = [weight[b.r0 : b.r1, b.c0 : b.c1].clone() for b in self.blocks]
        return blocks, weight[:, self.staircase :].clone() if self.tail else None

    def join(
        self, blocks: Sequence[torch.Tensor], tail: torch.Tensor | None, like: torch.Tensor
    ) -> torch.Tensor:
        """The (R, C) matrix of the blocks' parts and the tail, with zeros elsewhere (of
        ``like``'s dtype and device: a plan may store nothing, as for a MADE of one input)."""
        out = like.new_zeros(self.rows, self.columns)
        for b, w in zip(self.blocks, blocks, strict=True):
            out[b.r0 : b.r1, b.c0 : b.c1] = w
        if tail is not None:
            out[:, self.staircase :] = tail
        return self.unstored(out)


Intervals = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _row_intervals(mask: torch.Tensor) -> Intervals:
    """Per row: first allowed column, one past the last (0, 0 for an empty row), and whether
    the allowed columns are exactly that interval."""
    columns = mask.shape[1]
    bytes_ = mask.to(torch.uint8)
    nonempty = mask.any(1)
    lo = torch.where(nonempty, bytes_.argmax(1), 0)
    hi = torch.where(nonempty, columns - bytes_.flip(1).argmax(1), 0)
    exact = mask.sum(1) == hi - lo
    return lo, hi, exact


def _blocks(intervals: Intervals, bounds: list[int]) -> list[Block]:
    """Row blocks between consecutive ``bounds``; blocks whose rows read nothing are left out."""
    lo, hi, exact = intervals
    out = []
    for r0, r1 in itertools.pairwise(bounds):
        a, z, ok = lo[r0:r1], hi[r0:r1], exact[r0:r1]
        nonempty = z > a
        if r1 <= r0 or not nonempty.any():
            continue
        c0, c1 = int(a[nonempty].min()), int(z.max())
        d0, d1 = (int(a.max()), int(z.min())) if bool(ok.all() and nonempty.all()) else (c0, c0)
        out.append(Block(r0, r1, c0, c1, d0, max(d0, d1)))
    return out


def _cost(blocks: list[Block], costs: Costs, batch: int | None = None) -> float:
    """Modelled time of one training step's three products over ``blocks`` (multiply-adds);
    with ``batch``, of one inference product of that many rows over blocks gathered from a
    whole weight (an ensemble member's)."""
    stored = sum(r * c for r, c in (b.shape for b in blocks))
    masked = sum((b.r1 - b.r0) * (z - a) for b in blocks for a, z in b.ragged)
    if batch is not None:
        return (batch + costs.gather) * stored + costs.mask * masked + costs.gathered_block * len(blocks)
    return (3 * NOMINAL_BATCH + costs.store) * stored + costs.mask * masked + 3 * costs.call * len(blocks)


@dataclass(frozen=True, eq=False)
class Prefixes:
    """A mask given by its stored rows: row i reads the first ``reads[i]`` of the staircase's
    columns (and the tail), as an ensemble member's layer does in its order of degrees.
    ``plan`` takes it without forming and reordering an (R, C) mask (a second at 8000x8000)."""

    reads: torch.Tensor
    columns: int


def plan(
    mask: torch.Tensor | Prefixes,
    *,
    segments: int = 1,
    tail: int = 0,
    count: int | None = None,
    row_order: tuple[int, ...] | None = None,
    column_order: tuple[int, ...] | None = None,
    batch: int | None = None,
    costs: Costs | None = None,
) -> Plan | None:
    """The cheapest plan for an (R, C) ``mask`` whose last ``tail`` columns every row reads,
    or None where the whole matrix times the mask is modelled cheaper (small layers, where
    the blocks' Python overhead outweighs the arithmetic they save).

    The rows form ``segments`` equal segments (an output layer's P parameters per dimension,
    each a copy of the staircase), each split into the same number of equal row blocks:
    ``count`` if given (then never None), else the count in ``BLOCK_COUNTS`` the cost model
    prefers. One block over all rows (the plain product) is always a candidate. The blocks
    are cut from the mask reordered by ``row_order`` and ``column_order`` (see ``Plan``), or
    from ``Prefixes`` already in that order.

    ``batch`` plans an ensemble member's inference instead (``gathered_linear`` over products
    of that many rows, its blocks copied out of the whole weight each call). ``costs``:
    ``COSTS`` unless given.
    """
    if isinstance(mask, Prefixes):
        reads, columns = mask.reads.detach().cpu().long(), mask.columns
        intervals = (torch.zeros_like(reads), reads, torch.ones_like(reads, dtype=torch.bool))
    else:
        mask = mask.detach().bool().cpu()
        columns = mask.shape[1]
        mask = Plan(mask.shape[0], columns, tail, (), row_order, column_order).stored(mask)
        if tail and not mask[:, columns - tail :].all():
            raise ValueError("the tail columns must be read by every row")
        intervals = _row_intervals(mask[:, : columns - tail])
    costs = COSTS if costs is None else costs
    rows = len(intervals[0])
    if rows % segments:
        raise ValueError(f"{rows} rows do not split into {segments} segments")
    size = rows // segments
    candidates = []
    for n in (BLOCK_COUNTS if batch is None else INFERENCE_COUNTS) if count is None else (count,):
        if count is None and n > size:
            break
        bounds = sorted({s * size + round(i * size / n) for s in range(segments) for i in range(n + 1)})
        candidates.append(_blocks(intervals, bounds if n > 1 or segments > 1 else [0, rows]))
    if count is None:
        candidates.append(_blocks(intervals, [0, rows]))
    best = min(candidates, key=lambda c: _cost(c, costs, batch))
    area = rows * (columns - tail)
    if batch is None:  # training: the whole weight times the mask, and the mask on its gradient
        whole = (3 * NOMINAL_BATCH + costs.store + 2 * costs.mask) * area + 3 * costs.call
        extra = costs.function
    else:  # inference: weight * mask, against the rows' copy that the gathered blocks start from
        whole = (batch + costs.mask) * area + costs.call
        extra = costs.mask * area if row_order is not None else 0.0
    if count is None and whole <= _cost(best, costs, batch) + extra:
        return None
    stored = tuple(best or [Block(0, rows, 0, 0, 0, 0)])  # an empty block: a weight to save
    return Plan(rows, columns, tail, stored, row_order, column_order)


class _BlockedLinear(torch.autograd.Function):
    """y = x w^T + b with w stored as a plan's blocks and tail."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        mask: torch.Tensor,
        p: Plan,
        tail: torch.Tensor | None,
        *blocks: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, mask, tail, *blocks)
        ctx.plan, ctx.has_bias = p, bias is not None
        s = p.staircase
        if tail is not None:
            y = torch.mm(x[:, s:], tail.t()) if bias is None else torch.addmm(bias, x[:, s:], tail.t())
        elif bias is not None:
            y = bias.expand(x.shape[0], -1).clone()
        else:
            y = x.new_zeros(x.shape[0], p.rows)
        for b, w in zip(p.blocks, blocks, strict=True):
            y[:, b.r0 : b.r1].addmm_(x[:, b.c0 : b.c1], w.t())
        return y

    @staticmethod
    @once_differentiable  # no second derivatives: the masked gradient is not one
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, mask, tail, *blocks = ctx.saved_tensors
        p: Plan = ctx.plan
        s = p.staircase
        grad = grad.contiguous()
        grad_x = grad_b = grad_tail = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
            if tail is not None:
                torch.mm(grad, tail, out=grad_x[:, s:])
            for b, w in zip(p.blocks, blocks, strict=True):
                grad_x[:, b.c0 : b.c1].addmm_(grad[:, b.r0 : b.r1], w)
        if ctx.has_bias and ctx.needs_input_grad[1]:
            grad_b = grad.sum(0)
        if tail is not None and ctx.needs_input_grad[4]:
            grad_tail = grad.t() @ x[:, s:]
        grad_blocks: list[torch.Tensor | None] = []
        for i, b in enumerate(p.blocks):
            if not ctx.needs_input_grad[5 + i]:
                grad_blocks.append(None)
                continue
            g = grad[:, b.r0 : b.r1].t() @ x[:, b.c0 : b.c1]
            for a, z in b.ragged:
                g[:, a:z].mul_(mask[b.r0 : b.r1, b.c0 + a : b.c0 + z])
            grad_blocks.append(g)
        return grad_x, grad_b, None, None, grad_tail, *grad_blocks


def blocked_linear(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor,
    p: Plan,
    tail: torch.Tensor | None,
    blocks: Sequence[torch.Tensor],
) -> torch.Tensor:
    """``F.linear(x, w * mask, bias)`` for the weight ``w`` the plan stores as ``blocks`` and
    ``tail``, which must hold zeros wherever ``mask`` does. ``x`` may have leading dimensions."""
    lead = x.shape[:-1]
    y = _BlockedLinear.apply(x.reshape(-1, x.shape[-1]), bias, mask, p, tail, *blocks)
    return y.view(*lead, p.rows)


@dataclass(frozen=True, eq=False)
class Gather:
    """An ensemble member's inference plan for one layer: the plan, its indices on the
    layer's device, how many staircase columns each stored row reads (the member's mask, as
    ``Prefixes``) and the fewest rows per product for which it is used (``rows_to_gather``)."""

    plan: Plan
    index: tuple[torch.Tensor | None, ...]
    reads: torch.Tensor
    fewest: int


def gathered_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, g: Gather
) -> torch.Tensor:
    """``F.linear(x, weight * mask, bias)`` for a whole ``weight`` (an ensemble's, which its
    members share) by the blocks of ``g``, one member's plan: each call copies the blocks out
    of the weight in the member's order and masks their ragged edges. The copy is paid once
    per product, so this pays for products of many rows (evaluation), not for a training
    batch. ``x`` may have leading dimensions."""
    p = g.plan
    rows, scatter, columns, _ = g.index
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    if columns is not None:
        x = x.index_select(1, columns)
    s = p.staircase
    if bias is not None and rows is not None:
        bias = bias.index_select(0, rows)
    if p.tail:
        tail = weight[:, s:] if rows is None else weight[:, s:].index_select(0, rows)
        y = torch.mm(x[:, s:], tail.t()) if bias is None else torch.addmm(bias, x[:, s:], tail.t())
    elif bias is not None:
        y = bias.expand(x.shape[0], -1).clone()
    else:
        y = x.new_zeros(x.shape[0], p.rows)
    for b in p.blocks:
        if b.c1 <= b.c0:
            continue
        if columns is None:
            w = weight[:, b.c0 : b.c1]
            w = w[b.r0 : b.r1].clone() if rows is None else w.index_select(0, rows[b.r0 : b.r1])
        else:
            w = weight[b.r0 : b.r1] if rows is None else weight.index_select(0, rows[b.r0 : b.r1])
            w = w.index_select(1, columns[b.c0 : b.c1])
        for a, z in b.ragged:  # the member's mask where some of the block's rows read and others not
            read = torch.arange(b.c0 + a, b.c0 + z, device=w.device) < g.reads[b.r0 : b.r1, None]
            w[:, a:z].mul_(read)
        y[:, b.r0 : b.r1].addmm_(x[:, b.c0 : b.c1], w.t())
    if scatter is not None:
        y = y.index_select(1, scatter)
    return y.view(*lead, p.rows)


def rows_to_gather(p: Plan, costs: Costs | None = None) -> int:
    """The fewest rows for which ``gathered_linear`` over ``p`` is modelled cheaper than the
    whole weight times the mask: the copy costs the same for any number of rows, the
    products it saves grow with them."""
    costs = COSTS if costs is None else costs
    area = p.rows * p.staircase
    stored = sum(r * c for r, c in (b.shape for b in p.blocks))
    if stored >= area:
        return 2**62
    masked = sum((b.r1 - b.r0) * (z - a) for b in p.blocks for a, z in b.ragged)
    fixed = costs.gather * stored + costs.mask * masked + costs.gathered_block * len(p.blocks) - costs.call
    fixed += costs.mask * area * ((p.row_order is not None) - 1)  # the rows' copy, against w * mask
    return max(1, math.ceil(fixed / (area - stored)))
