"""MaskedLinear and the MADE network: (x, context) -> per-dimension parameters (Germain et al. 2015)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import degrees as deg

__all__ = ["MADE", "MaskedLinear"]

_MASK_CACHE_ELEMENTS = 2**26  # float mask entries kept across all members (256 MB in fp32)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed binary mask.

    The layer only does the masked matmul; MADE owns the degrees and writes the mask.
    """

    mask: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        # Not persistent: masks are derived from the degrees that MADE saves.
        self.register_buffer("mask", torch.ones(out_features, in_features), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


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
        params_per_dim: int = 1,
        direct: bool = True,
        ordering: deg.Ordering = "natural",
        hidden_degrees: deg.HiddenDegrees = "random",
        num_masks: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if features < 1 or num_masks < 1 or params_per_dim < 1 or context < 0:
            raise ValueError("features, num_masks and params_per_dim must be >= 1, context >= 0")
        self.features, self.context, self.params_per_dim = features, context, params_per_dim
        self.hidden = list(hidden)
        self.num_masks = num_masks
        self.member = 0

        sizes = [features + context, *self.hidden]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in itertools.pairwise(sizes))
        self.output = MaskedLinear(sizes[-1], params_per_dim * features)
        self.direct = (
            MaskedLinear(features + context, params_per_dim * features, bias=False) if direct else None
        )

        generator = torch.Generator().manual_seed(seed)
        ranks, hidden_degs = [], [[] for _ in self.hidden]
        for _ in range(num_masks):
            r = deg.input_ranks(features, ordering, generator)
            ranks.append(r)
            low = 1
            for layer, units in enumerate(self.hidden):
                d = deg.hidden_degrees(units, features, low, hidden_degrees, generator)
                hidden_degs[layer].append(d)
                low = int(d.min()) if units else low
        self._mask_cache: dict[int, dict[str, torch.Tensor]] = {}
        self.register_buffer("ranks", torch.stack(ranks))  # (K, D)
        for layer, d in enumerate(hidden_degs):
            self.register_buffer(f"hidden_degrees_{layer}", torch.stack(d))  # (K, H_l)
        self.apply_masks(0)
        self.register_load_state_dict_post_hook(lambda module, _keys: module.reload_masks())

    def degree_buffers(self) -> list[torch.Tensor]:
        """The saved degrees: ranks (K, D), then each hidden layer's (K, H_l)."""
        return [self.ranks, *(getattr(self, f"hidden_degrees_{i}") for i in range(len(self.hidden)))]

    def reload_masks(self) -> None:
        """The degrees were replaced (loaded, broadcast): check them, rebuild member 0's masks."""
        d = self.features
        ranks, *hidden = self.degree_buffers()
        if not torch.equal(ranks.sort(1).values.cpu(), torch.arange(1, d + 1).expand_as(ranks)):
            raise ValueError("corrupt degrees: the ranks are not a permutation of 1..D")
        for i, h in enumerate(hidden):
            if h.numel() and (int(h.min()) < 1 or int(h.max()) > max(1, d - 1)):
                raise ValueError(f"corrupt degrees: hidden layer {i} has degrees outside 1..{max(1, d - 1)}")
        self._mask_cache.clear()
        self.apply_masks(0)

    # -- degrees and masks -------------------------------------------------------------
    def degrees(self, member: int) -> list[torch.Tensor]:
        """Degrees of every layer for one member: inputs (with context at 0), hidden..., outputs."""
        ranks, *hidden = (d[member] for d in self.degree_buffers())
        inputs = torch.cat([ranks, ranks.new_zeros(self.context)])
        outputs = ranks.repeat(self.params_per_dim)
        return [inputs, *hidden, outputs]

    def masks(self, member: int) -> dict[str, torch.Tensor]:
        """Boolean masks of one member, computed from its degrees (what the layers should hold)."""
        d = self.degrees(member)
        out = {f"layers.{i}": deg.mask(d[i], d[i + 1], strict=False) for i in range(len(self.layers))}
        out["output"] = deg.mask(d[-2], d[-1], strict=True)
        if self.direct is not None:
            out["direct"] = deg.mask(d[0], d[-1], strict=True)
        return out

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
            dtype = self.output.weight.dtype
            masks = {name: m.to(dtype) for name, m in self.masks(member).items()}
            per_member = sum(m.numel() for m in masks.values())
            if self.num_masks > 1 and per_member * self.num_masks <= _MASK_CACHE_ELEMENTS:
                self._mask_cache[member] = masks
        for name, layer in self.masked_layers().items():
            layer.mask = masks[name]
        self.member = member

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> MADE:
        self._mask_cache.clear()  # moved or cast: cached masks would be on the old device
        return super()._apply(fn, recurse)

    def set_member(self, member: int) -> None:
        """Switch the layers to the masks of ensemble member ``member``."""
        if not 0 <= member < self.num_masks:
            raise IndexError(f"member {member} out of range for {self.num_masks} masks")
        if member != self.member:
            self.apply_masks(member)

    # -- forward -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Parameters (B, P, D) for the current member."""
        if self.context:
            if c is None:
                raise ValueError("this MADE needs a context input")
            x = torch.cat([x, c], dim=-1)
        h = x
        for layer in self.layers:
            h = F.relu(layer(h))
        out = self.output(h)
        if self.direct is not None:
            out = out + self.direct(x)
        return out.view(x.shape[0], self.params_per_dim, self.features)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, hidden={self.hidden}, context={self.context}, "
            f"params_per_dim={self.params_per_dim}, num_masks={self.num_masks}"
        )
