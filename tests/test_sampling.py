"""Samplers and completion: frequencies match the model; observed values are kept."""

import torch

from made_cli.config import Config, ModelConfig
from made_cli.models import MADEModel, build_model

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
    out, exact = model.complete(
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


def test_completion_with_an_ensemble_picks_members_by_their_evidence() -> None:
    # Members with random orderings; observe a set that only some members generate first.
    model = _model(3, ordering="random", num_masks=6)
    x = torch.tensor([[1.0, 0.0, 0.0]])
    observed = torch.tensor([[True, False, False]])
    out, exact = model.complete(
        x.expand(10, 3), observed.expand(10, 3), generator=torch.Generator().manual_seed(0)
    )
    assert (out[:, 0] == 1).all()
    first = model.net.ranks[:, 0] == 1
    assert bool(exact[0]) == bool(first.all())
    cond = model.conditional_log_prob(out[:1], observed)
    assert torch.isnan(cond).all() == (not first.all())


def test_exact_ensemble_completion_matches_the_mixture_conditional() -> None:
    model = _model(3, ordering="natural", num_masks=4, hidden_degrees="random")
    x = torch.tensor([[0.0, 1.0, 0.0]])
    observed = torch.tensor([[True, False, False]])
    n = 30000
    out, exact = model.complete(
        x.expand(n, 3), observed.expand(n, 3), generator=torch.Generator().manual_seed(2)
    )
    assert exact.all()
    candidates = x.repeat(4, 1)
    candidates[:, 1:] = all_binary(2)
    joint = model.log_prob(candidates).detach().double().exp()
    target = joint / joint.sum()
    freq = torch.bincount(_index(out[:, 1:]), minlength=4).double() / n
    assert float(0.5 * (freq - target).abs().sum()) < 0.02
