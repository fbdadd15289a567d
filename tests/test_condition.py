"""Condition: the one object a model is given besides x, checked, sliced, repeated and encoded
in one place."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from made_cli.condition import UNCONDITIONAL, Condition
from made_cli.config import load_config
from made_cli.kinds import build_model


def test_check_says_what_does_not_fit() -> None:
    UNCONDITIONAL.check(0, 0, 5)
    Condition(torch.tensor([0, 2, 1]), torch.zeros(3, 2)).check(3, 2, 3)
    Condition(1).check(3, 0, 7)  # one label for every row
    cases = [
        (Condition(torch.zeros(3, dtype=torch.long)), (0, 0), "not conditioned on labels"),
        (UNCONDITIONAL, (3, 0), "pass labels"),
        (Condition(torch.tensor([0, 3, 1])), (3, 0), r"labels must be in 0\.\.2"),
        (Condition(torch.zeros(2, dtype=torch.long)), (3, 0), r"one label or \(3,\)"),
        (Condition(context=torch.zeros(3, 1)), (0, 0), "no context columns"),
        (UNCONDITIONAL, (0, 2), "pass context"),
        (Condition(context=torch.zeros(3, 1)), (0, 2), r"\(3, 2\)"),
        (Condition(context=torch.tensor([[0.0, torch.nan]] * 3)), (0, 2), "finite"),
        (Condition(cells=torch.zeros(3, 4)), (0, 0), "complete_rows"),
    ]
    for given, (classes, features), message in cases:
        with pytest.raises(ValueError, match=message):
            given.check(classes, features, 3)


def test_rows_and_repeat_keep_a_row_together_and_one_label_for_all() -> None:
    labels = torch.tensor([0, 1, 2])
    context = torch.arange(6.0).view(3, 2)
    cells = torch.tensor([[1.0, torch.nan], [torch.nan, 2.0], [3.0, 4.0]])
    given = Condition(labels, context, cells)
    picked = given.rows(torch.tensor([2, 0]))
    assert picked.labels.tolist() == [2, 0]
    assert torch.equal(picked.context, context[[2, 0]])
    assert torch.equal(picked.observed, torch.tensor([[True, True], [True, False]]))
    twice = given.repeat(2)
    assert twice.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(twice.context, context.repeat_interleave(2, 0))
    assert torch.equal(twice.rows(slice(2, 4)).cells.isnan(), cells[[1, 1]].isnan())
    one = Condition(1, context)  # one label for all rows stays one through slicing and repeats
    assert one.rows(torch.tensor([2])).labels.tolist() == 1
    assert one.repeat(3).labels.tolist() == 1 and one.repeat(3).context.shape == (9, 2)
    assert given.with_cells(None).cells is None and given.with_labels(None).labels is None
    moved = given.to("cpu", torch.float64)
    assert moved.context.dtype == torch.float64 and moved.labels.dtype == torch.long
    with pytest.raises(ValueError, match="no cells"):
        UNCONDITIONAL.observed  # noqa: B018


def test_encode_is_the_one_hot_label_and_the_standardised_context() -> None:
    shift, scale = torch.tensor([1.0, -2.0]), torch.tensor([2.0, 0.5])
    context = torch.tensor([[3.0, -1.0], [1.0, -2.0]])
    out = Condition(torch.tensor([2, 0]), context).encode(
        3, 2, torch.device("cpu"), torch.float64, shift, scale
    )
    expected = torch.cat(
        [F.one_hot(torch.tensor([2, 0]), 3).double(), ((context - shift) / scale).double()], 1
    )
    assert torch.equal(out, expected)
    assert UNCONDITIONAL.encode(0, 4, torch.device("cpu"), torch.float32) is None
    assert torch.equal(
        Condition(1).encode(2, 3, torch.device("cpu"), torch.float32), torch.tensor([[0.0, 1]] * 3)
    )


def test_a_model_refuses_fixed_cells_where_it_would_ignore_them_and_completes_them() -> None:
    model = build_model(load_config(None, ["model.hidden=[8]"]), 4).double()
    cells = torch.tensor([[1.0, 0.0, torch.nan, torch.nan]], dtype=torch.float64)
    with pytest.raises(ValueError, match="complete_rows"):
        model.log_prob(torch.zeros(1, 4, dtype=torch.float64), Condition(cells=cells))
    done = model.complete_rows(Condition(cells=cells), 5, torch.Generator().manual_seed(0))
    assert done.values.shape == (5, 4) and torch.equal(done.values[:, :2], cells[:, :2].expand(5, 2))
    assert done.status == ["exact"] and torch.isnan(done.conditional).all()  # no truth: nothing scored
    truth = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    scored = model.complete_rows(Condition(cells=cells), 1, torch.Generator().manual_seed(0), truth=truth)
    with torch.no_grad():
        expected = model.log_prob(truth) - torch.logsumexp(
            model.log_prob(torch.tensor([[1.0, 0.0, a, b] for a in (0.0, 1.0) for b in (0.0, 1.0)],
                                        dtype=torch.float64)), 0)  # fmt: skip
    torch.testing.assert_close(scored.conditional, expected)
