"""Samplers and completion: frequencies match the model; observed values are kept."""

import pytest
import torch

from made_cli import sampling
from made_cli.commands import OBSERVED_MASKS, observed_mask
from made_cli.config import Config, ModelConfig
from made_cli.kinds import build_model
from made_cli.models import MADEModel

from .conftest import all_binary


def _model(d: int, **kw) -> MADEModel:
    model = build_model(Config(model=ModelConfig(**{"hidden": (10, 10), **kw})), d)
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(3.0)
    return model


def _index(x: torch.Tensor) -> torch.Tensor:
    return (x.long() * (2 ** torch.arange(x.shape[1]))).sum(1)


def _tv(samples: torch.Tensor, probs: torch.Tensor) -> float:
    freq = torch.bincount(_index(samples), minlength=probs.numel()).double() / samples.shape[0]
    return float(0.5 * (freq - probs).abs().sum())


def test_sample_frequencies_match_the_model() -> None:
    for kw in ({"ordering": "random"}, {"ordering": "random", "num_masks": 3}):
        model = _model(4, **kw)
        probs = model.log_prob(all_binary(4)).detach().double().exp()
        samples = model.sample(40000, generator=torch.Generator().manual_seed(0))
        # 16 cells, 40k draws: sampling noise puts TV near 0.01; a wrong sampler is far off.
        assert _tv(samples, probs) < 0.02, kw


def test_same_seed_same_samples() -> None:
    model = _model(5)
    a = model.sample(20, generator=torch.Generator().manual_seed(7))
    b = model.sample(20, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_completion_keeps_observed_values_and_follows_the_conditional() -> None:
    model = _model(4, ordering="natural")
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    observed = torch.tensor([[True, True, False, False]])
    n = 30000
    out, exact = model.ancestral_completion(
        x.expand(n, 4), observed.expand(n, 4), generator=torch.Generator().manual_seed(1)
    )
    assert exact.all()
    assert (out[:, :2] == x[:, :2]).all()
    # Exact conditional over the 4 completions of the last two dims.
    candidates = x.repeat(4, 1)
    candidates[:, 2:] = all_binary(2)
    joint = model.log_prob(candidates).detach().double().exp()
    target = joint / joint.sum()
    freq = torch.bincount(_index(out[:, 2:]), minlength=4).double() / n
    assert float(0.5 * (freq - target).abs().sum()) < 0.02
    # conditional_log_prob agrees with the brute-force conditional
    cond = model.conditional_log_prob(candidates, observed.expand(4, 4)).double().exp()
    torch.testing.assert_close(cond, target, atol=1e-5, rtol=0)


def test_members_are_drawn_in_proportion_to_the_evidence_of_the_observed_part() -> None:
    # Natural order, random hidden degrees: every member is exact for a prefix, but their
    # conditionals differ, so p_k(observed) differs and a uniform pick would be wrong.
    model = _model(4, ordering="natural", num_masks=4, hidden_degrees="random")
    n = 20000
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]]).expand(n, 4)
    observed = torch.tensor([[True, True, False, False]]).expand(n, 4)
    members, exact = sampling.choose_members(
        model.net.ranks, observed, lambda k: model.log_prob_dims(x, k), torch.Generator().manual_seed(0)
    )
    assert exact.all()
    with torch.no_grad():
        evidence = torch.stack([model.log_prob_dims(x[:1], k)[0, :2].sum() for k in range(4)])
    target = torch.softmax(evidence.double(), 0)
    assert target.max() - target.min() > 0.05  # the members really differ
    freq = torch.bincount(members, minlength=4).double() / n
    assert (freq - target).abs().max() < 0.02


def _two_member_model() -> MADEModel:
    """Member 0 generates x_0 first; member 1 generates x_1 first."""
    model = _model(3, ordering="random", num_masks=2)
    model.net.ranks[0] = torch.tensor([1, 2, 3])
    model.net.ranks[1] = torch.tensor([2, 1, 3])
    model.net.reload_masks()
    return model


def test_a_partly_exact_ensemble_uses_only_its_exact_members_and_says_approximate() -> None:
    model = _two_member_model()
    x = torch.tensor([[1.0, 0.0, 0.0]]).expand(50, 3)
    observed = torch.tensor([[True, False, False]]).expand(50, 3)
    members, exact = sampling.choose_members(
        model.net.ranks, observed, lambda k: model.log_prob_dims(x, k), torch.Generator().manual_seed(0)
    )
    assert (members == 0).all() and not exact.any()
    out, exact = model.ancestral_completion(x, observed, generator=torch.Generator().manual_seed(0))
    assert (out[:, 0] == 1).all() and not exact.any()
    assert torch.isnan(model.conditional_log_prob(x[:1], observed[:1])).all()
    # observing x_0 and x_1 is a prefix for both members: exact again
    both = torch.tensor([[True, True, False]])
    first = lambda k: model.log_prob_dims(x[:1], k)  # noqa: E731
    assert sampling.choose_members(model.net.ranks, both, first, None)[1].all()
    assert torch.isfinite(model.conditional_log_prob(x[:1], both)).all()


def test_mixture_conditional_log_prob_matches_brute_force() -> None:
    model = _model(4, ordering="natural", num_masks=4, hidden_degrees="random")
    observed = torch.tensor([[True, True, False, False]]).expand(4, 4)
    candidates = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(4, 1)
    candidates[:, 2:] = all_binary(2)
    joint = model.log_prob(candidates).detach().double()
    brute = joint - torch.logsumexp(joint, 0)
    cond = model.conditional_log_prob(candidates, observed).double()
    torch.testing.assert_close(cond, brute, atol=1e-5, rtol=0)


def test_exact_ensemble_completion_matches_the_mixture_conditional() -> None:
    model = _model(3, ordering="natural", num_masks=4, hidden_degrees="random")
    x = torch.tensor([[0.0, 1.0, 0.0]])
    observed = torch.tensor([[True, False, False]])
    n = 30000
    out, exact = model.ancestral_completion(
        x.expand(n, 3), observed.expand(n, 3), generator=torch.Generator().manual_seed(2)
    )
    assert exact.all()
    candidates = x.repeat(4, 1)
    candidates[:, 1:] = all_binary(2)
    joint = model.log_prob(candidates).detach().double().exp()
    target = joint / joint.sum()
    freq = torch.bincount(_index(out[:, 1:]), minlength=4).double() / n
    assert float(0.5 * (freq - target).abs().sum()) < 0.02


SAMPLER_CASES = [
    {"ordering": "natural"},
    {"ordering": "random", "direct": False},
    {"ordering": "random", "num_masks": 3, "hidden": (12, 9, 7)},
    {"ordering": "reverse", "hidden": ()},
    {"ordering": "random", "hidden": (), "direct": False},
    {"ordering": "natural", "hidden_degrees": "even", "hidden": (30,)},
]


@pytest.mark.parametrize("kw", SAMPLER_CASES)
def test_fast_sampler_reproduces_the_naive_sampler_exactly(kw) -> None:
    # float64 so that summation order cannot move a probability across a uniform
    model = _model(9, **kw).double()
    gen = torch.Generator().manual_seed(4)
    uniforms = torch.rand(40, 9, 1, generator=gen, dtype=torch.float64)
    for k in range(model.num_masks):
        fill = torch.ones(40, 9, dtype=torch.bool)
        fill[:20] = torch.rand(20, 9, generator=gen) < 0.5  # arbitrary, per-row observed sets
        x = torch.bernoulli(torch.full((40, 9), 0.5, dtype=torch.float64), generator=gen)
        fast = sampling.ancestral_fast(model.net, model.head, model.encoding, x, fill, k, uniforms)
        naive = sampling.ancestral_naive(model.net, model.head, model.encoding, x, fill, k, uniforms)
        assert torch.equal(fast, naive)
        assert torch.equal(fast[~fill], x[~fill])
    same = model.sample(30, generator=torch.Generator().manual_seed(1), fast=True)
    assert torch.equal(same, model.sample(30, generator=torch.Generator().manual_seed(1), fast=False))


def _observed_first(model: MADEModel, observed: torch.Tensor, seed: int) -> None:
    """Give every member a random ordering that generates the ``observed`` dimensions first."""
    gen = torch.Generator().manual_seed(seed)
    for member in range(model.num_masks):
        first, last = observed.nonzero()[:, 0], (~observed).nonzero()[:, 0]
        order = torch.cat([first[torch.randperm(len(first), generator=gen)],
                           last[torch.randperm(len(last), generator=gen)]])  # fmt: skip
        model.net.ranks[member, order] = torch.arange(1, len(order) + 1)
    model.net.reload_masks()


@pytest.mark.parametrize("kind", OBSERVED_MASKS)
def test_completion_for_every_observed_mask_follows_the_mixture_conditional(kind) -> None:
    # 2x4 "images": every mask kind applies; an ensemble whose members all generate the
    # observed pixels first (in different orders) completes exactly from the mixture.
    observed = observed_mask(kind, 8, (2, 4), 1, torch.Generator().manual_seed(5), fraction=0.5)[0]
    missing = int((~observed).sum())
    assert 1 <= missing <= 5
    model = _model(8, ordering="random", num_masks=3)
    _observed_first(model, observed, seed=1)
    x = torch.bernoulli(torch.full((1, 8), 0.5), generator=torch.Generator().manual_seed(2))
    n = 20000
    out, exact = model.ancestral_completion(
        x.expand(n, 8), observed.expand(n, 8), generator=torch.Generator().manual_seed(3)
    )
    assert exact.all()
    assert torch.equal(out[:, observed], x[:, observed].expand(n, -1))
    candidates = x.repeat(2**missing, 1)
    candidates[:, ~observed] = all_binary(missing)
    with torch.no_grad():
        target = torch.softmax(model.log_prob(candidates).double(), 0)
    freq = torch.bincount(_index(out[:, ~observed]), minlength=2**missing).double() / n
    assert float(0.5 * (freq - target).abs().sum()) < 0.03


def test_without_an_exact_member_the_one_ignoring_least_evidence_completes() -> None:
    model = _model(4, ordering="random", num_masks=3)
    for member, order in enumerate(([2, 0, 1, 3], [2, 3, 0, 1], [0, 2, 1, 3])):
        model.net.ranks[member, order] = torch.arange(1, 5)
    model.net.reload_masks()
    observed = torch.tensor([[True, True, False, False]])
    # missing x_2 comes before both observed dims (2), before both and x_3 too (4), before x_1 (1)
    assert sampling.ignored_evidence(model.net.ranks, observed).tolist() == [[2, 4, 1]]
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(30, 4)
    members, exact = sampling.choose_members(
        model.net.ranks, observed.expand(30, 4), lambda k: model.log_prob_dims(x, k), torch.Generator()
    )
    assert (members == 2).all() and not exact.any()
    out, exact = model.ancestral_completion(
        x, observed.expand(30, 4), generator=torch.Generator().manual_seed(0)
    )
    assert not exact.any() and torch.equal(out[:, :2], x[:, :2])
