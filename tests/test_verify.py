"""verify-ar: passes on real models, fails on a tampered mask or weight, in either storage."""

import pytest
import torch

from made_cli import degrees as deg
from made_cli.made import MADE
from made_cli.verify import verify_made

from .conftest import tamper

STORAGE = pytest.mark.parametrize("blocks", [True, False], ids=["degree blocks", "whole matrices"])


def test_verify_passes_and_counts_connectivity() -> None:
    net = MADE(10, [20, 20], ordering="random", num_masks=3, seed=1)
    reports = verify_made(net, points=2)
    assert [r.member for r in reports] == [0, 1, 2]
    assert all(r.ok for r in reports)
    assert all(r.allowed_pairs == 45 for r in reports)
    assert all(r.realised_pairs == 45 for r in reports)  # direct connections realise all pairs


@STORAGE
def test_tampered_output_mask_fails_both_checks(blocks: bool) -> None:
    net = MADE(6, [12], direct=False, seed=0)
    net.use_blocks(blocks, count=2 if blocks else None)
    assert verify_made(net)[0].ok
    tamper(net.output, ~deg.mask(net.hidden_degrees_0[0], net.ranks[0], strict=True))
    (report,) = verify_made(net)
    assert not report.ok
    assert report.forbidden_paths > 0
    assert report.jacobian_violations > 0


@STORAGE
def test_tampered_direct_mask_fails(blocks: bool) -> None:
    net = MADE(6, [12], direct=True, seed=0)
    net.use_blocks(blocks, count=2 if blocks else None)
    tamper(net.direct, ~deg.allowed(net.ranks[0]))
    (report,) = verify_made(net)
    assert report.forbidden_paths == 1
    assert report.jacobian_violations > 0


def test_a_nonzero_weight_outside_the_mask_fails_both_checks_and_mask_weights_mends_it() -> None:
    """Degree blocks read the masked entries they store as zeros: an in-place edit that breaks
    that (here, noise on every stored weight) is caught, and ``mask_weights`` restores it."""
    net = MADE(8, [16, 16], seed=0)
    net.use_blocks(True, count=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    (report,) = verify_made(net)
    assert report.forbidden_paths > 0 and report.jacobian_violations > 0
    net.mask_weights()
    assert verify_made(net)[0].ok


def test_a_mask_entry_switched_on_inside_a_block_is_a_forbidden_path_before_any_training() -> None:
    """Its weight is still zero, so no Jacobian shows it yet; the structural check does,
    because the masked gradient would now train it."""
    net = MADE(6, [12], direct=False, seed=0)
    net.use_blocks(True, count=2)
    forbidden = ~deg.mask(net.hidden_degrees_0[0], net.ranks[0], strict=True) & net.output.plan.covered()
    o, i = forbidden.nonzero()[0].tolist()
    net.output.mask[o, i] = 1.0
    net.output.sync_plan()
    (report,) = verify_made(net)
    assert report.forbidden_paths > 0 and report.jacobian_violations == 0


def test_reports_inputs_that_reach_no_output() -> None:
    # Hidden degrees cyclic from 1 with too few units (the nflows/zuko default): the last
    # inputs reach nothing. Build it by hand to show verify-ar notices.
    net = MADE(8, [3], direct=False, hidden_degrees="even", seed=0)
    net.hidden_degrees_0[0] = torch.tensor([1, 2, 3])
    net.apply_masks(0)
    (report,) = verify_made(net)
    assert report.ok
    assert report.inputs_without_output == 4  # ranks 4..7 (rank 8 is never an input to anything)
