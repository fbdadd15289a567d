"""MaskedLinear and the MADE network: (x, context) -> per-dimension parameters (Germain et al. 2015)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import blocks
from . import degrees as deg

__all__ = [
    "MADE",
    "MaskedLinear",
    "load_portable_optimizer_state",
    "parameter_counts",
    "portable_optimizer_state",
]

_MASK_CACHE_ELEMENTS = 2**26  # float mask entries kept across all members (256 MB in fp32)


# a whole weight this big (32 MB of float32) keeps its temporaries in a Workspace: glibc maps
# bigger allocations from the OS page by page, each time
POOLED_ELEMENTS = 2**23


class Workspace:
    """Buffers a layer keeps between calls for its biggest temporaries (a whole weight times
    its mask, the weight's gradient). Above ``POOLED_ELEMENTS`` a fresh matrix comes from the
    OS page by page at every step (glibc maps it): for the paper's 2x8000 that cost more than
    the arithmetic of the mask. A buffer is lent as a new view and only while nothing else
    holds one (an autograd graph, a gradient not yet set to None, a caller's reference):
    otherwise the call gets a fresh tensor, so nothing lent is ever written under anyone."""

    def __init__(self) -> None:
        self._buffers: dict[str, tuple[torch.Tensor, int]] = {}

    def take(self, name: str, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` with ``like``'s dtype and device. Not for
        threads sharing a layer; a storage object held without its tensor is not seen."""
        if torch.is_inference_mode_enabled():  # its tensors could not be written outside it
            return like.new_empty(shape)
        held = self._buffers.get(name)
        if held is not None:
            buffer, idle = held
            if buffer.shape == shape and buffer.dtype == like.dtype and buffer.device == like.device:
                if buffer._use_count() == 1 and _storage_users(buffer) <= idle:
                    return buffer.view(shape)
                return like.new_empty(shape)
        buffer = like.new_empty(shape)
        self._buffers[name] = (buffer, _storage_users(buffer))
        return buffer.view(shape)

    def __deepcopy__(self, memo: dict[int, Any]) -> Workspace:
        return Workspace()  # a copy's buffers are its own, made at its first call


def _storage_users(t: torch.Tensor) -> int:
    """Tensors on ``t``'s storage, as torch counts them here (views of it add one each)."""
    return int(torch._C._storage_Use_Count(t.untyped_storage()._cdata))


_IDLE = _storage_users(torch.empty(1))  # the count for a tensor nothing else shares


class _PooledMaskedLinear(torch.autograd.Function):
    """``F.linear(x, weight * mask, bias)`` with the masked weight and the weight's gradient in
    a ``Workspace``: the same products in the same order as autograd's, bit for bit. First
    derivatives only, as the degree blocks; layers run F.linear instead under autocast."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        mask: torch.Tensor,
        pool: Workspace,
    ) -> torch.Tensor:
        masked = torch.mul(weight, mask, out=pool.take("masked", weight.shape, weight))
        ctx.save_for_backward(x, masked, mask)
        ctx.pool, ctx.has_bias = pool, bias is not None
        return F.linear(x, masked, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, masked, mask = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = g.mm(masked).view(x.shape)
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(
                g.t(), x.reshape(-1, x.shape[-1]), out=ctx.pool.take("grad", masked.shape, masked)
            )
            grad_w.mul_(mask)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)  # as F.linear's backward adds it: over the flattened rows
        return grad_x, grad_w, grad_b, None, None


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed binary mask.

    MADE owns the degrees and writes the mask. An ensemble's layer keeps the whole matrix and
    multiplies it by the mask each call, or in evaluation, where a product has many rows,
    copies the member's degree blocks out of it (``gather``). A single-mask layer big enough
    to gain from it has a ``plan`` (``blocks.plan``): its weight is stored as the plan's
    blocks, zero wherever the mask is, and only those products run. Its state dict still
    holds the whole (out, in) matrix, so checkpoints read the same either way.
    """

    mask: torch.Tensor
    plan: blocks.Plan | None
    row_order: torch.Tensor | None
    row_scatter: torch.Tensor | None
    column_order: torch.Tensor | None
    stored_mask: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        # Not persistent: masks are derived from the degrees that MADE saves.
        self.register_buffer("mask", torch.ones(out_features, in_features), persistent=False)
        self.plan = None
        # A plan in generation order (a random ordering's input or output side): its orders
        # and the mask in its stored coordinates. None otherwise.
        self.register_buffer("row_order", None, persistent=False)
        self.register_buffer("row_scatter", None, persistent=False)  # row_order's inverse
        self.register_buffer("column_order", None, persistent=False)
        self.register_buffer("stored_mask", None, persistent=False)
        self.gather: blocks.Gather | None = None  # an ensemble member's inference plan (MADE's)
        self.workspace = Workspace()
        self.register_state_dict_post_hook(_whole_weight_in_state_dict)
        self.register_load_state_dict_pre_hook(_blocks_from_state_dict)

    # -- storage -----------------------------------------------------------------------
    def block_weights(self) -> tuple[list[nn.Parameter], nn.Parameter | None]:
        """The parameters a plan stores the weight in: one per block, and the context's tail."""
        if self.plan is None:
            raise ValueError("this layer stores its weight whole")
        params = self._parameters
        return [params[f"block{i}"] for i in range(len(self.plan.blocks))], params.get("tail")  # type: ignore[misc]

    def full_weight(self) -> torch.Tensor:
        """The (out, in) weight matrix, whichever way it is stored (a copy under a plan)."""
        if self.plan is None:
            return self.weight
        parts, tail = self.block_weights()
        return self.plan.join(parts, tail, like=self.mask)

    def masked_weight(self) -> torch.Tensor:
        """The (out, in) matrix the layer multiplies by: the weight times the mask, or under a
        plan the stored blocks as they are (zero off the mask, by the blocks' invariant)."""
        return self.weight * self.mask if self.plan is None else self.full_weight()

    @torch.no_grad()
    def set_plan(self, plan: blocks.Plan | None) -> None:
        """Store the weight as ``plan``'s blocks (or whole, with None), keeping its values on
        the current mask. A different plan replaces the weight's parameters: make optimisers
        after this. Either way the plan's buffers follow the current mask."""
        if plan != self.plan:
            self._store_as(plan)
        self.sync_plan()

    def _store_as(self, plan: blocks.Plan | None) -> None:
        weight = self.full_weight().detach()
        trainable = next(
            p for n, p in self._parameters.items() if n != "bias" and p is not None
        ).requires_grad
        for name in [n for n in self._parameters if n != "bias"]:
            del self._parameters[name]
        bias = self._parameters.pop("bias")
        if plan is None:
            self.weight = nn.Parameter(weight.clone(), requires_grad=trainable)
        else:
            parts, tail = plan.split(weight * self.mask)
            for i, part in enumerate(parts):
                self.register_parameter(f"block{i}", nn.Parameter(part, requires_grad=trainable))
            if tail is not None:
                self.register_parameter("tail", nn.Parameter(tail, requires_grad=trainable))
        self.register_parameter("bias", bias)  # after the weight, as nn.Linear orders them
        self.plan = plan

    @torch.no_grad()
    def mask_weight(self) -> None:
        """Zero the stored weight wherever the mask is zero (a plan's ragged edges)."""
        if self.plan is None:
            self.weight.mul_(self.mask)
            return
        parts, _ = self.block_weights()
        mask = self.mask if self.stored_mask is None else self.stored_mask
        for b, part in zip(self.plan.blocks, parts, strict=True):
            part.mul_(mask[b.r0 : b.r1, b.c0 : b.c1])

    @torch.no_grad()
    def zero_rows(self, start: int = 0) -> None:
        """Zero the weight of the outputs ``start:`` (a flow's identity initialisation)."""
        if self.plan is None:
            self.weight[start:].zero_()
            return
        parts, tail = self.block_weights()
        rows = torch.arange(self.plan.rows) if self.row_order is None else self.row_order.cpu()
        zeroed = rows >= start  # stored rows that are the layer's rows start:
        for b, part in zip(self.plan.blocks, parts, strict=True):
            part[zeroed[b.r0 : b.r1].to(part.device)] = 0.0
        if tail is not None:
            tail[zeroed.to(tail.device)] = 0.0

    # -- compute -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.plan is None:
            if self.gather is not None and not torch.is_grad_enabled():
                if x.numel() >= self.gather.fewest * x.shape[-1]:
                    return blocks.gathered_linear(x, self.weight, self.bias, self.gather)
            if self.weight.numel() >= POOLED_ELEMENTS and not torch.is_autocast_enabled(x.device.type):
                return _PooledMaskedLinear.apply(x, self.weight, self.bias, self.mask, self.workspace)
            return F.linear(x, self.weight * self.mask, self.bias)
        parts, tail = self.block_weights()
        if self.stored_mask is None:
            return blocks.blocked_linear(x, self.bias, self.mask, self.plan, tail, parts)
        # Reordered into generation order: gather the input columns, scatter the output rows.
        if self.column_order is not None:
            x = x.index_select(-1, self.column_order)
        bias = self.bias if self.bias is None or self.row_order is None else self.bias[self.row_order]
        y = blocks.blocked_linear(x, bias, self.stored_mask, self.plan, tail, parts)
        return y if self.row_scatter is None else y.index_select(-1, self.row_scatter)

    def sync_plan(self) -> None:
        """Refresh what a reordered plan computes with from the current mask (buffers, so they
        follow the layer to its device): the orders and the mask in stored coordinates. MADE
        replaces masks rather than editing them; after editing one in place, call this."""
        orders = (None,) * 4 if self.plan is None else self.plan.indices(self.mask.device)
        reordered = any(o is not None for o in orders)
        self.row_order, self.row_scatter, self.column_order = orders[0], orders[1], orders[2]
        self.stored_mask = self.plan.stored(self.mask) if reordered and self.plan is not None else None

    def connections(self) -> torch.Tensor:
        """(out, in) bool: where the output can depend on the input, now or after training.

        Whole matrix: the mask it is multiplied by. Plan: the stored entries that are nonzero
        now or can be trained (a nonzero weight outside the mask shows up here).
        """
        if self.plan is None:
            return self.mask.cpu() > 0
        nonzero = self.full_weight().detach().cpu() != 0
        masking = self.mask if self.stored_mask is None else self.plan.unstored(self.stored_mask)
        return self.plan.covered() & (nonzero | self.plan.trained(masking))  # the mask backward uses


def _whole_weight_in_state_dict(module: nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    """A planned layer saves its weight as the whole matrix, before the bias, like any layer."""
    if not isinstance(module, MaskedLinear) or module.plan is None:
        return
    parts = [state.pop(prefix + f"block{i}") for i in range(len(module.plan.blocks))]
    tail = state.pop(prefix + "tail", None)
    bias = state.pop(prefix + "bias", None)
    with torch.no_grad():  # a new tensor even with keep_vars: there is no whole Parameter to give
        state[prefix + "weight"] = module.plan.join(parts, tail, like=module.mask)
    if bias is not None:
        state[prefix + "bias"] = bias


def _blocks_from_state_dict(
    module: nn.Module, state: dict[str, Any], prefix: str, _meta: Any, _strict: bool, _missing: list[str],
    _unexpected: list[str], error_msgs: list[str],
) -> None:  # fmt: skip
    """A planned layer reads the whole matrix and keeps its plan's blocks of it (masked)."""
    if not isinstance(module, MaskedLinear) or module.plan is None:
        return
    weight = state.get(prefix + "weight")
    if not isinstance(weight, torch.Tensor):
        return  # load_state_dict reports the missing weight (as its blocks)
    del state[prefix + "weight"]
    if weight.shape != module.mask.shape:  # as torch words it for a whole weight
        error_msgs.append(
            f"size mismatch for {prefix}weight: copying a param with shape {weight.shape} from checkpoint, "
            f"the shape in current model is {module.mask.shape}."
        )
        weight = module.full_weight().detach()  # the blocks keep their values
    parts, tail = module.plan.split(weight * module.mask.to(weight))
    for i, part in enumerate(parts):
        state[prefix + f"block{i}"] = part
    if tail is not None:
        state[prefix + "tail"] = tail


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation, with an ensemble of K masks.

    Input ``x`` (B, D) and optional context ``c`` (B, C) at degree 0; output (B, P, D): P
    parameters for each dimension, output d depending only on inputs of smaller rank. Member k
    of the ensemble has its own ranks and hidden degrees, saved as buffers so that a checkpoint
    restores exactly the connectivity that was trained.
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int],
        *,
        context: int = 0,
        params_per_dim: int | Sequence[int] = 1,
        direct: bool = True,
        ordering: deg.Ordering = "natural",
        hidden_degrees: deg.HiddenDegrees = "random",
        num_masks: int = 1,
        seed: int = 0,
        ranks: torch.Tensor | None = None,
        embed: Sequence[int] | None = None,
    ) -> None:
        """``ranks`` (K, D), when given, replace the ordering's ranks after they are drawn (so the
        hidden degrees are those of the same seed): a flow's layers reverse each other this way.

        ``params_per_dim`` may differ per dimension (a table's columns: a categorical column's L
        logits, a real column's mixture): the output and direct layers then hold only the rows
        each dimension uses (``output_rows``), and ``forward`` pads the rest with zeros, so a
        head still reads (B, P, D) with P the largest count and nothing is computed twice.

        ``embed`` (a table's: per dimension its categories, 0 for a real column) gives the first
        hidden layer a learned vector per category and one for a missing cell of each column
        (``embedded``): a category enters the network one-hot, as it were, not as an ordinal
        code, and a missing cell as itself, not as a value. Each vector reaches only the units
        the column's input may reach (the first layer's mask)."""
        super().__init__()
        counts = (
            [params_per_dim] * features
            if isinstance(params_per_dim, int)
            else [int(v) for v in params_per_dim]
        )
        if features < 1 or num_masks < 1 or len(counts) != features or min(counts) < 1 or context < 0:
            raise ValueError(
                "features, num_masks and params_per_dim must be >= 1 (one per dimension), context >= 0"
            )
        self.features, self.context, self.params_per_dim = features, context, max(counts)
        kept = [
            p * features + d for p in range(self.params_per_dim) for d in range(features) if p < counts[d]
        ]
        compact = len(kept) < self.params_per_dim * features
        # output unit i stands for parameter p * D + d of the padded layout (None: all of them)
        self.register_buffer("output_rows", torch.tensor(kept) if compact else None, persistent=False)
        self.hidden = list(hidden)
        self.num_masks = num_masks
        self.member = 0

        sizes = [features + context, *self.hidden]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in itertools.pairwise(sizes))
        self.output = MaskedLinear(sizes[-1], len(kept))
        self.direct = MaskedLinear(features + context, len(kept), bias=False) if direct else None

        generator = torch.Generator().manual_seed(seed)
        drawn, hidden_degs = [], [[] for _ in self.hidden]
        for _ in range(num_masks):
            drawn.append(deg.input_ranks(features, ordering, generator))
            low = 1
            for layer, units in enumerate(self.hidden):
                d = deg.hidden_degrees(units, features, low, hidden_degrees, generator)
                hidden_degs[layer].append(d)
                low = int(d.min()) if units else low
        self._mask_cache: dict[int, dict[str, torch.Tensor]] = {}
        self._blocks, self._block_count = True, None  # use_blocks' choice, kept when degrees change
        self._planned: list[torch.Tensor] | None = None  # the degrees the layers' plans are for
        self._gathered: dict[int, dict[str, blocks.Gather | None]] = {}  # an ensemble's, per member
        self.embedding: nn.Parameter | None = None
        if embed is not None and self.hidden:
            if len(embed) != features:
                raise ValueError("embed: one entry per dimension")
            levels = torch.tensor([int(v) for v in embed])
            rows = levels + 1  # a category's vectors, then the missing cell's
            first = torch.cumsum(rows, 0) - rows
            self.register_buffer("embed_levels", levels, persistent=False)
            self.register_buffer("embed_first", first, persistent=False)
            weight = torch.empty(int(rows.sum()), self.hidden[0])
            nn.init.uniform_(weight, -((features + context) ** -0.5), (features + context) ** -0.5)
            weight[first + levels] = 0.0  # a missing cell starts as a value at the mean would
            self.embedding = nn.Parameter(weight.to(self.output.weight))
        self.register_buffer("ranks", torch.stack(drawn) if ranks is None else ranks.clone().long())
        if self.ranks.shape != (num_masks, features):
            raise ValueError(f"ranks must have shape ({num_masks}, {features})")
        for layer, d in enumerate(hidden_degs):
            self.register_buffer(f"hidden_degrees_{layer}", torch.stack(d))  # (K, H_l)
        if num_masks == 1:  # the same network with its hidden units in order of degree
            live = dict(self.named_parameters()) | dict(self.named_buffers())
            orders = _degree_orders(self.degree_buffers()[1:])
            with torch.no_grad():
                for name, value in _relabelled(live, "", orders).items():
                    live[name].copy_(value)
        self.apply_masks(0)
        self.register_load_state_dict_pre_hook(MADE._before_load)
        self.register_load_state_dict_post_hook(lambda module, _keys: module.reload_masks())

    def degree_buffers(self) -> list[torch.Tensor]:
        """The saved degrees: ranks (K, D), then each hidden layer's (K, H_l)."""
        return [self.ranks, *(getattr(self, f"hidden_degrees_{i}") for i in range(len(self.hidden)))]

    def degree_names(self) -> list[str]:
        """The names of ``degree_buffers`` in the state dict."""
        return ["ranks", *(f"hidden_degrees_{i}" for i in range(len(self.hidden)))]

    def _check_degrees(self, degrees: list[torch.Tensor]) -> None:
        d = self.features
        ranks, *hidden = degrees
        if not torch.equal(ranks.sort(1).values.cpu(), torch.arange(1, d + 1).expand_as(ranks)):
            raise ValueError("corrupt degrees: the ranks are not a permutation of 1..D")
        for i, h in enumerate(hidden):
            if h.numel() and (int(h.min()) < 1 or int(h.max()) > max(1, d - 1)):
                raise ValueError(f"corrupt degrees: hidden layer {i} has degrees outside 1..{max(1, d - 1)}")

    def reload_masks(self) -> None:
        """The degrees were replaced (loaded, broadcast): check them, rebuild member 0's masks.

        A single-mask MADE's weights outside its new masks become zero; an ensemble's are kept.
        """
        self._check_degrees(self.degree_buffers())
        self._mask_cache.clear()
        self._gathered.clear()
        self.apply_masks(0)

    def _before_load(self, state: dict[str, Any], prefix: str, *_: Any) -> None:
        """A single-mask MADE takes the incoming degrees, with its hidden units sorted by degree
        (the incoming weights relabelled to match: older runs were saved unsorted), before its
        layers read their weights, so each keeps the blocks of the plan for those degrees."""
        if self.num_masks != 1:
            return
        names = [prefix + n for n in self.degree_names()]
        incoming = [state.get(n) for n in names]
        for new, own in zip(incoming, self.degree_buffers(), strict=True):
            if not isinstance(new, torch.Tensor) or new.shape != own.shape:
                return  # load_state_dict reports the mismatch
        self._check_degrees(incoming)  # type: ignore[arg-type]
        state.update(_relabelled(state, prefix, _degree_orders(incoming[1:])))  # type: ignore[arg-type]
        with torch.no_grad():
            for name, own in zip(names, self.degree_buffers(), strict=True):
                own.copy_(state[name])
        self.apply_masks(0)

    # -- degrees and masks -------------------------------------------------------------
    def degrees(self, member: int) -> list[torch.Tensor]:
        """Degrees of every layer for one member: inputs (with context at 0), hidden..., outputs."""
        ranks, *hidden = (d[member] for d in self.degree_buffers())
        inputs = torch.cat([ranks, ranks.new_zeros(self.context)])
        outputs = ranks.repeat(self.params_per_dim)
        if self.output_rows is not None:
            outputs = outputs[self.output_rows.to(outputs.device)]
        return [inputs, *hidden, outputs]

    def padded(self, rows: torch.Tensor) -> torch.Tensor:
        """A tensor of the output layer's rows (R, ...) in the padded layout (P * D, ...), zeros
        (False) in the rows no dimension uses; as it is when nothing is padded."""
        if self.output_rows is None:
            return rows
        full = rows.new_zeros((self.params_per_dim * self.features, *rows.shape[1:]))
        return full.index_copy(0, self.output_rows.to(rows.device), rows)

    def layer_degrees(self, member: int) -> dict[str, tuple[torch.Tensor, torch.Tensor, bool]]:
        """Per masked layer of one member: the degrees of its input side, of its output side,
        and whether its mask is strict (an output reads only inputs of smaller rank)."""
        d = self.degrees(member)
        sides = {f"layers.{i}": (d[i], d[i + 1], False) for i in range(len(self.layers))}
        sides["output"] = (d[-2], d[-1], True)
        if self.direct is not None:
            sides["direct"] = (d[0], d[-1], True)
        return sides

    def masks(self, member: int) -> dict[str, torch.Tensor]:
        """Boolean masks of one member, computed from its degrees (what the layers should hold)."""
        return {
            name: deg.mask(into, out, strict=strict)
            for name, (into, out, strict) in self.layer_degrees(member).items()
        }

    def masked_layers(self) -> dict[str, MaskedLinear]:
        """The layers by name, in the order the masks are listed."""
        named = {f"layers.{i}": layer for i, layer in enumerate(self.layers)}
        named["output"] = self.output
        if self.direct is not None:
            named["direct"] = self.direct
        return named

    def apply_masks(self, member: int) -> None:
        """Give the layers member ``member``'s masks, computed from its degrees.

        Ensembles switch member every training step, so each member's float masks are kept
        once computed (while all of them fit in ``_MASK_CACHE_ELEMENTS``): a switch then
        rebinds buffers and copies nothing.
        """
        masks = self._mask_cache.get(member)
        if masks is None:
            per_member = sum(layer.mask.numel() for layer in self.masked_layers().values())
            if self.num_masks > 1 and per_member * self.num_masks <= _MASK_CACHE_ELEMENTS:
                dtype = self.output.bias.dtype
                masks = {name: m.to(dtype) for name, m in self.masks(member).items()}
                self._mask_cache[member] = masks
            else:
                masks = self._written_masks(member)
        for name, layer in self.masked_layers().items():
            layer.mask = masks[name]
            layer.gather = None
        self.member = member
        if self.num_masks == 1:
            self._plan_layers()
        elif member in self._gathered:
            self._plan_member()

    def _written_masks(self, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s float masks, written over the layers' current ones where nothing
        else holds those (an autograd graph that saved one keeps it; it gets a new tensor): an
        ensemble too big to keep every member's masks makes them at each step, and a fresh
        matrix of over 32 MB comes from the OS page by page."""
        sides = self.layer_degrees(member)
        cached = {id(m) for kept in self._mask_cache.values() for m in kept.values()}
        masks = {}
        for name, layer in self.masked_layers().items():
            into, out, strict = sides[name]
            current = layer.mask
            shape = torch.Size((len(out), len(into)))
            free = current.shape == shape and current._use_count() == 1 and _storage_users(current) <= _IDLE
            # held by the layer's buffers, `current` and getrefcount's argument, and nobody else
            free = free and sys.getrefcount(current) <= 3 and id(current) not in cached
            free = free and not current.is_inference() and not torch.is_inference_mode_enabled()
            buffer = current if free else current.new_empty(shape)
            torch.sub(out[:, None].to(buffer), into[None, :].to(buffer), out=buffer)
            masks[name] = buffer.gt_(0) if strict else buffer.ge_(0)
        return masks

    # -- degree blocks -------------------------------------------------------------------
    def _layer_shapes(self, inference: bool = False) -> dict[str, dict[str, Any] | None]:
        """How ``blocks.plan`` cuts each layer of the current member (None: not P copies of one
        staircase, so whole). An output layer's P parameters per dimension are P copies of one
        staircase; the context (degree 0) is the tail of any layer that reads the inputs. Each
        side of a layer is put in the member's order of degrees where it is not in it already:
        a random ordering's inputs and outputs, and an ensemble's hidden units (a single-mask
        MADE keeps its hidden units sorted). An ``inference`` plan wants every row to read a
        prefix, so a reverse ordering is reordered too."""
        d, params = self.features, self.params_per_dim
        ranks, *hidden = (degrees[self.member] for degrees in self.degree_buffers())
        order = ranks.argsort().tolist()  # generation order
        monotone = order == list(range(d)) or (not inference and order == list(range(d - 1, -1, -1)))
        inputs = None if monotone else tuple(order)
        outputs = None if monotone else tuple(p * d + o for p in range(params) for o in order)
        units: list[tuple[int, ...] | None] = []
        for h in hidden:
            by_degree = h.argsort(stable=True).tolist()
            units.append(None if by_degree == list(range(len(by_degree))) else tuple(by_degree))
        sides = [inputs, *units]  # the order of each layer's input side, then its output side
        shapes: dict[str, dict[str, Any] | None] = {}
        for name in self.masked_layers():
            reads_inputs = name in ("layers.0", "direct") or (name == "output" and not self.layers)
            writes_outputs = name in ("output", "direct")
            if writes_outputs and self.output_rows is not None:
                shapes[name] = None
                continue
            at = int(name.split(".")[1]) if name.startswith("layers.") else len(self.layers)
            shapes[name] = {
                "segments": params if writes_outputs else 1,
                "tail": self.context if reads_inputs else 0,
                "row_order": outputs if writes_outputs else units[at],
                "column_order": inputs if name == "direct" else sides[at],
            }
        return shapes

    def block_plans(self, count: int | None = None) -> dict[str, blocks.Plan | None]:
        """Each layer's plan for the current masks (None: the whole matrix times the mask is
        cheaper; ``_layer_shapes`` says how a layer is cut). ``count`` fixes the blocks per
        staircase (and always gives a plan)."""
        return {
            name: None if shape is None else blocks.plan(layer.mask, count=count, **shape)
            for (name, layer), shape in zip(
                self.masked_layers().items(), self._layer_shapes().values(), strict=True
            )
        }

    def inference_plans(
        self, count: int | None = None, batch: int = blocks.INFERENCE_BATCH
    ) -> dict[str, blocks.Gather | None]:
        """The current member's plans for ``blocks.gathered_linear`` (an ensemble's evaluation),
        for products of ``batch`` rows: in the member's order of degrees every stored row reads
        a prefix of the columns, counted on its sorted degrees (no (R, C) mask is formed).
        ``count`` fixes the blocks per staircase and gathers for any number of rows."""
        device = self.ranks.device
        sides = self.layer_degrees(self.member)
        plans: dict[str, blocks.Gather | None] = {}
        for (name, layer), shape in zip(
            self.masked_layers().items(), self._layer_shapes(True).values(), strict=True
        ):
            if shape is None:
                plans[name] = None
                continue
            into, out, strict = sides[name]
            into = into[: len(into) - shape["tail"]].cpu()
            into = into if shape["column_order"] is None else into[list(shape["column_order"])]
            out = out.cpu() if shape["row_order"] is None else out.cpu()[list(shape["row_order"])]
            reads = torch.searchsorted(into, out, right=not strict)  # strict: out > in
            p = blocks.plan(blocks.Prefixes(reads, layer.mask.shape[1]), count=count, batch=batch, **shape)
            if p is None:
                plans[name] = None
                continue
            fewest = 1 if count else blocks.rows_to_gather(p)
            plans[name] = blocks.Gather(p, p.indices(device), reads.to(device), fewest)
        return plans

    def _plan_layers(self, count: int | None = None, replan: bool = False) -> None:
        degrees = [d.detach().cpu().clone() for d in self.degree_buffers()]
        same = self._planned is not None and all(
            torch.equal(a, b) for a, b in zip(degrees, self._planned, strict=True)
        )
        if replan or not same:
            plans = (
                self.block_plans(count if count is not None else self._block_count) if self._blocks else {}
            )
            for name, layer in self.masked_layers().items():
                layer.set_plan(plans.get(name))  # new degrees, new masks: the buffers follow
            self._planned = degrees
        self.mask_weights()

    def use_blocks(self, enabled: bool, count: int | None = None) -> None:
        """Store a single-mask MADE's weights as degree blocks (the default) or whole: the
        whole matrices times the masks are the oracle the blocks are tested against. ``count``
        fixes the blocks per staircase. Replaces the weight parameters. An ensemble keeps its
        weights whole (its members share them) and computes an evaluation's products in each
        member's degree blocks, or not (``enabled``); a ``count`` makes it do so for any
        number of rows, where the cost model would multiply small layers whole."""
        self._blocks, self._block_count = enabled, count
        self._gathered.clear()
        if self.num_masks != 1:
            self.apply_masks(self.member)
            return
        self._plan_layers(count, replan=True)

    def _plan_member(self) -> None:
        """Give the layers the current member's inference plans (ensembles; kept per member)."""
        plans = self._gathered.get(self.member)
        if plans is None:
            plans = self._gathered[self.member] = self.inference_plans(self._block_count)
        for name, layer in self.masked_layers().items():
            layer.gather = plans[name]

    def mask_weights(self) -> None:
        """Zero a single-mask MADE's stored weights wherever its masks are zero: the degree
        blocks read those entries and rely on the zeros. Loading does this; so must any edit
        of the weights in place. (An ensemble multiplies by its masks instead.)"""
        if self.num_masks == 1:
            for layer in self.masked_layers().values():
                layer.mask_weight()

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> MADE:
        self._mask_cache.clear()  # moved or cast: cached masks would be on the old device
        self._gathered.clear()  # and the plans' indices
        for layer in self.masked_layers().values():
            layer.gather = None
        return super()._apply(fn, recurse)

    def set_member(self, member: int) -> None:
        """Switch the layers to the masks of ensemble member ``member``."""
        if not 0 <= member < self.num_masks:
            raise IndexError(f"member {member} out of range for {self.num_masks} masks")
        if member != self.member:
            self.apply_masks(member)

    # -- forward -----------------------------------------------------------------------
    def embedded(self, raw: torch.Tensor, dims: Sequence[int] | None = None) -> torch.Tensor:
        """The embedding's share of the first hidden layer's pre-activation (B, H_1), from the
        values ``raw`` (B, D) (codes; NaN: missing) of ``dims`` (default: all): a category's
        vector, or a column's missing-cell vector, each masked as the column's input is."""
        assert self.embedding is not None
        index = torch.arange(self.features, device=raw.device) if dims is None else torch.as_tensor(
            list(dims), dtype=torch.long, device=raw.device)  # fmt: skip
        values = raw.index_select(1, index)  # (B, E)
        levels, first = self.embed_levels[index], self.embed_first[index]
        missing = torch.isnan(values)
        codes = torch.where(missing | (levels == 0), levels.to(values), values).long()  # (B, E)
        codes = torch.minimum(codes.clamp_min(0), levels)  # a placeholder off the codes reads as missing
        used = (missing | (levels > 0)).to(self.embedding)  # a real column's value has no vector
        mask = self.layers[0].mask.index_select(1, index).T  # (E, H_1)
        # F.embedding, not indexing: its backward adds the rows' gradients in a fixed order
        # (indexing's scatter-add on two threads did not, and a table's training varied widely)
        vectors = F.embedding(first + codes, self.embedding) * mask  # (B, E, H_1)
        return (vectors * used[..., None]).sum(1)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor | None = None, raw: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Parameters (B, P, D) for the current member. ``raw``: the values behind the encoded
        ``x``, for the embedding (``embedded``; None leaves it out)."""
        if self.context:
            if c is None:
                raise ValueError("this MADE needs a context input")
            x = torch.cat([x, c], dim=-1)
        if (
            self.num_masks > 1
            and self._blocks
            and not torch.is_grad_enabled()
            and self.member not in self._gathered
        ):
            self._plan_member()  # evaluation: the member's products in its degree blocks
        h = x
        for i, layer in enumerate(self.layers):
            if i == 0 and self.embedding is not None and raw is not None:
                h = F.relu(layer(h) + self.embedded(raw))
                continue
            h = F.relu(layer(h))
        out = self.output(h)
        if self.direct is not None:
            out = out + self.direct(x)
        if self.output_rows is not None:  # zeros where a dimension has fewer parameters
            out = out.new_zeros(x.shape[0], self.params_per_dim * self.features).index_copy(
                1, self.output_rows, out
            )
        return out.view(x.shape[0], self.params_per_dim, self.features)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, hidden={self.hidden}, context={self.context}, "
            f"params_per_dim={self.params_per_dim}, num_masks={self.num_masks}"
        )


def _degree_orders(hidden: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per hidden layer (K = 1, H_l), the order that sorts its units by degree (ties kept)."""
    return [h[0].argsort(stable=True) for h in hidden]


def _relabelled(state: dict[str, Any], prefix: str, orders: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of a single-mask MADE's ``state`` (degrees, weights, biases, or optimiser
    moments shaped like them; missing names are skipped) with each hidden layer's units put
    in ``orders``: the same network under other labels."""
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor | None:
        value = out.get(prefix + name, state.get(prefix + name))
        return value if isinstance(value, torch.Tensor) else None

    for layer, order in enumerate(orders):
        if torch.equal(order, torch.arange(order.numel(), device=order.device)):
            continue
        nxt = f"layers.{layer + 1}.weight" if layer + 1 < len(orders) else "output.weight"
        embedding = [("embedding", 1)] if layer == 0 else []
        for name, dim in ((f"hidden_degrees_{layer}", 1), (f"layers.{layer}.weight", 0),
                          (f"layers.{layer}.bias", 0), (nxt, 1), *embedding):  # fmt: skip
            value = take(name)
            if value is not None:
                out[prefix + name] = value.index_select(dim, order.to(value.device))
    return out


def _planned_owners(model: nn.Module) -> dict[int, MaskedLinear]:
    """id(parameter) -> its layer, for the block and tail parameters of every planned layer."""
    owners: dict[int, MaskedLinear] = {}
    for layer in model.modules():
        if isinstance(layer, MaskedLinear) and layer.plan is not None:
            parts, tail = layer.block_weights()
            for param in [*parts, *([] if tail is None else [tail])]:
                owners[id(param)] = layer
    return owners


def _portable_layout(model: nn.Module, params: list[nn.Parameter]) -> tuple[list[int], list[str]]:
    """For an optimiser's parameters: each one's index among the portable parameters (a planned
    layer's blocks and tail are one whole weight, where nn.Linear's weight would be), and the
    portable parameters' names."""
    owners = _planned_owners(model)
    names = {id(p): n for n, p in model.named_parameters()}
    first: dict[int, int] = {}
    index, portable = [], []
    for param in params:
        layer = owners.get(id(param))
        key = id(param) if layer is None else id(layer)
        if key not in first:
            first[key] = len(portable)
            name = names.get(id(param), str(len(portable)))
            portable.append(name if layer is None else name.rpartition(".")[0] + ".weight")
        index.append(first[key])
    return index, portable


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(parameters counted as whole matrices, as checkpoints hold them; parameters stored)."""
    owners = _planned_owners(model)
    whole: dict[int, int] = {}
    stored = 0
    for param in model.parameters():
        layer = owners.get(id(param))
        stored += param.numel()
        key = id(param) if layer is None else id(layer)
        whole[key] = param.numel() if layer is None else layer.mask.numel()
    return sum(whole.values()), stored


def portable_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` as if every planned layer's weight were one matrix, as in
    checkpoints made before degree blocks: a run resumes in either code."""
    native = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    index, _ = _portable_layout(model, params)
    owners = _planned_owners(model)
    position = {id(p): i for i, p in enumerate(params)}
    state: dict[int, Any] = {}
    for i, param in enumerate(params):
        if index[i] in state or i not in native["state"]:
            continue
        layer = owners.get(id(param))
        if layer is None:
            state[index[i]] = native["state"][i]
            continue
        parts, tail = layer.block_weights()
        per = [native["state"].get(position[id(p)], {}) for p in [*parts, *([] if tail is None else [tail])]]
        whole = {}
        for key, value in per[0].items():
            if isinstance(value, torch.Tensor) and value.dim() == 2:
                values = [s[key] for s in per]
                tail_value = values[-1] if tail is not None else None
                whole[key] = layer.plan.join(values[: len(parts)], tail_value, like=values[0])  # type: ignore[union-attr]
            else:
                whole[key] = value
        state[index[i]] = whole
    groups = []
    for group in native["param_groups"]:
        ids = list(dict.fromkeys(index[i] for i in group["params"]))
        groups.append({**group, "params": ids})
    return {"state": state, "param_groups": groups}


def load_portable_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, portable: dict[str, Any], model_state: dict[str, Any]
) -> None:
    """Load a ``portable_optimizer_state`` (or one saved before degree blocks) into ``optimizer``.

    ``model_state`` is the checkpoint's model state: its degrees say how an older run labelled
    its hidden units, and the moments are relabelled as the weights were. Moments are masked
    like the weights, so a stale one cannot move a zero weight.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    live = {id(p) for p in model.parameters()}
    if any(id(p) not in live for p in params):
        raise ValueError("the optimiser holds parameters the model no longer has: make it after loading")
    index, names = _portable_layout(model, params)
    owners = _planned_owners(model)
    offset = 0
    for group, saved in zip(optimizer.param_groups, portable["param_groups"], strict=True):
        whole = len(set(index[offset : offset + len(group["params"])]))
        offset += len(group["params"])
        if whole != len(saved["params"]):
            raise ValueError("the saved optimiser state has a parameter group of another size")
    state = {int(k): dict(v) for k, v in portable["state"].items()}
    by_name = dict(enumerate(names))
    for prefix, net in model.named_modules():
        if not isinstance(net, MADE) or net.num_masks != 1:
            continue
        prefix = f"{prefix}." if prefix else ""
        hidden = [model_state.get(prefix + n) for n in net.degree_names()[1:]]
        if not all(isinstance(h, torch.Tensor) for h in hidden):
            continue
        orders = _degree_orders(hidden)  # type: ignore[arg-type]
        moments = {
            key for s in state.values() for key, v in s.items() if isinstance(v, torch.Tensor) and v.dim()
        }
        for key in moments:
            tensors = {by_name[j]: s[key] for j, s in state.items() if key in s and s[key].dim()}
            for name, value in _relabelled(tensors, prefix, orders).items():
                state[names.index(name)][key] = value
    native: dict[int, Any] = {}
    for i, param in enumerate(params):
        entry = state.get(index[i])
        if entry is None:
            continue
        layer = owners.get(id(param))
        if layer is None:
            native[i] = entry
            continue
        parts, tail = layer.block_weights()
        which = next(k for k, q in enumerate([*parts, *([] if tail is None else [tail])]) if q is param)
        out = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.shape == layer.mask.shape:
                split_parts, split_tail = layer.plan.split(value * layer.mask.to(value))  # type: ignore[union-attr]
                value = [*split_parts, *([] if split_tail is None else [split_tail])][which]
            elif isinstance(value, torch.Tensor):  # Adam's step: each block counts its own, in place
                value = value.clone()
            out[key] = value
        native[i] = out
    groups = []
    offset = 0
    for group, saved in zip(optimizer.param_groups, portable["param_groups"], strict=True):
        ids = list(range(offset, offset + len(group["params"])))
        offset += len(group["params"])
        groups.append({**saved, "params": ids})
    optimizer.load_state_dict({"state": native, "param_groups": groups})
