"""What a model is given besides x, as one object: a class label, context columns, fixed cells.

Every model kind, the trainer, the evaluation and the queries pass a ``Condition`` where they
once passed a (labels, context) pair: it is checked against a model, moved to a device, sliced
and repeated here, so that a row's label, its context columns and its fixed cells travel
together and no function threads them one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

__all__ = ["UNCONDITIONAL", "Condition"]


@dataclass(frozen=True)
class Condition:
    """A model's given part, per row.

    ``labels``: class indices (B,), or one label () for every row; ``context``: the context
    columns (B, C) as the data has them (the model scales them); ``cells``: fixed cells (B, D),
    NaN where a cell is free (completions, samples given cells). Absent parts are None.
    """

    labels: torch.Tensor | None = None
    context: torch.Tensor | None = None
    cells: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and not isinstance(self.labels, torch.Tensor):
            object.__setattr__(self, "labels", torch.as_tensor(self.labels))

    @property
    def observed(self) -> torch.Tensor:
        """(B, D) bool: the fixed cells."""
        if self.cells is None:
            raise ValueError("this condition fixes no cells")
        return ~torch.isnan(self.cells)

    def check(self, classes: int, context_features: int, rows: int | None = None) -> None:
        """The labels and context columns fit a model of ``classes`` label classes and
        ``context_features`` context columns (0: none), for ``rows`` rows: each present exactly
        when the model takes it, labels one for all or one per row in 0..classes-1, context
        (rows, C) and finite, and no fixed cells (only a completion takes them, and strips them
        first); else a ValueError that says which.

        Checked where a condition enters (log_prob, sample, complete), not per forward pass:
        reading the labels' range back from a GPU would stall every training step.
        """
        labels, context = self.labels, self.context
        if self.cells is not None:
            raise ValueError("fixed cells are for completions (complete_rows), not this call")
        if not classes and labels is not None:
            raise ValueError("this model is not conditioned on labels")
        if classes:
            if labels is None:
                raise ValueError("this model is conditioned on a label: pass labels")
            if rows is not None and labels.numel() != 1 and labels.shape != (rows,):
                raise ValueError(f"labels must be one label or ({rows},), got shape {tuple(labels.shape)}")
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
                raise ValueError(f"labels must be in 0..{classes - 1}")
        if not context_features:
            if context is not None:
                raise ValueError("this model has no context columns")
            return
        if context is None:
            raise ValueError(f"this model is conditioned on {context_features} context columns: pass context")
        if (
            context.dim() != 2
            or context.shape[1] != context_features
            or (rows is not None and context.shape[0] != rows)
        ):
            want = f"({rows}, {context_features})" if rows is not None else f"(rows, {context_features})"
            raise ValueError(f"context must be {want}, got shape {tuple(context.shape)}")
        if not bool(torch.isfinite(context).all()):
            raise ValueError("context values must be finite")

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Condition:
        """The same condition on ``device``; ``dtype``, if given, for the context columns and
        the cells (labels stay integers)."""
        move = lambda t: None if t is None else t.to(device, dtype or t.dtype)  # noqa: E731
        labels = None if self.labels is None else self.labels.to(device)
        return Condition(labels, move(self.context), move(self.cells))

    def rows(self, index: torch.Tensor | slice) -> Condition:
        """The condition of some rows (an index or a slice); one label for all stays one."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        labels = self.labels if self.labels is None or self.labels.numel() == 1 else self.labels[index]
        return Condition(labels, pick(self.context), pick(self.cells))

    def repeat(self, times: int) -> Condition:
        """Each row ``times`` times in place (row-major: completions or draws per row)."""
        rep = lambda t: None if t is None else t.repeat_interleave(times, 0)  # noqa: E731
        labels = self.labels if self.labels is None or self.labels.numel() == 1 else rep(self.labels)
        return Condition(labels, rep(self.context), rep(self.cells))

    def with_labels(self, labels: torch.Tensor | int | None) -> Condition:
        """The same condition with other labels (a class given in turn, or summed out)."""
        return replace(self, labels=None if labels is None else torch.as_tensor(labels))

    def with_cells(self, cells: torch.Tensor | None) -> Condition:
        """The same labels and context with other fixed cells (NaN where free)."""
        return replace(self, cells=cells)

    def encode(
        self,
        classes: int,
        rows: int,
        device: torch.device,
        dtype: torch.dtype,
        context_shift: torch.Tensor | None = None,
        context_scale: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """What a model's MADEs see at degree 0 (rows, classes + C): the one-hot label of a
        ``classes``-class model and the context columns standardised by (shift, scale); None
        for an unconditional model."""
        parts = []
        if classes:
            if self.labels is None:
                raise ValueError("this model is conditioned on a label: pass labels")
            labels = self.labels.to(device).long().expand(rows)
            parts.append(F.one_hot(labels, classes).to(dtype))
        if context_shift is not None and context_scale is not None:
            if self.context is None:
                raise ValueError(f"this model is conditioned on {len(context_shift)} context columns")
            given = self.context.to(device, dtype).expand(rows, -1)
            parts.append((given - context_shift) / context_scale)
        return torch.cat(parts, 1) if len(parts) > 1 else (parts[0] if parts else None)


UNCONDITIONAL = Condition()  # the default: no label, no context, no fixed cells
