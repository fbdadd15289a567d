"""Degrees: ranks are permutations, hidden degrees cover the range, masks follow the rule."""

import pytest
import torch

from made_cli import degrees as deg


@pytest.mark.parametrize("ordering", ["natural", "reverse", "random"])
def test_ranks_are_a_permutation_of_1_to_d(ordering: str) -> None:
    ranks = deg.input_ranks(7, ordering, torch.Generator().manual_seed(1))
    assert sorted(ranks.tolist()) == list(range(1, 8))
    assert deg.generation_order(ranks).tolist() == ranks.argsort().tolist()
    if ordering == "natural":
        assert ranks.tolist() == [1, 2, 3, 4, 5, 6, 7]
    if ordering == "reverse":
        assert ranks.tolist() == [7, 6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize("mode", ["random", "even"])
def test_hidden_degrees_span_the_range_not_cyclic_from_one(mode: str) -> None:
    # 500 units for 784 inputs: degrees must reach up to D - 1, not stop at 500.
    d = deg.hidden_degrees(500, 784, 1, mode, torch.Generator().manual_seed(0))
    assert d.min() >= 1 and d.max() <= 783
    assert d.max() > 700


def test_mask_rule_hidden_inclusive_output_strict() -> None:
    inputs = torch.tensor([1, 2, 3])
    hidden = torch.tensor([1, 2])
    assert deg.mask(inputs, hidden, strict=False).tolist() == [[True, False, False], [True, True, False]]
    assert deg.mask(hidden, inputs, strict=True).tolist() == [[False, False], [True, False], [True, True]]


def test_allowed_is_strictly_lower_in_rank() -> None:
    ranks = torch.tensor([2, 3, 1])
    a = deg.allowed(ranks)
    assert a.tolist() == [[False, False, True], [True, False, True], [False, False, False]]
    assert not a.diagonal().any()
