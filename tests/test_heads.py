"""Heads and label context: each likelihood normalises, each sampler follows its model."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from made_cli import sampling
from made_cli.condition import Condition
from made_cli.config import Config, DataConfig, ModelConfig
from made_cli.heads import Bernoulli, Categorical, Gaussian, MixtureOfGaussians
from made_cli.kinds import build_model
from made_cli.made import MADE
from made_cli.models import MADEModel
from made_cli.train import independent_baseline_nll
from made_cli.verify import verify_made

LEVELS = 3


def _model(d: int, head: str, classes: int = 0, scale: float = 2.0, **kw) -> MADEModel:
    condition_on = "label" if classes else "none"
    model_cfg = ModelConfig(
        **{"hidden": (10, 10), "head": head, "components": 2, "condition_on": condition_on, **kw}
    )
    model = build_model(Config(data=DataConfig(levels=LEVELS), model=model_cfg), d, classes).double()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(scale)
        if model.standardises:  # a non-trivial input standardisation, as training would set
            gen = torch.Generator().manual_seed(d)
            model.input_shift.copy_(torch.randn(d, generator=gen))
            model.input_scale.copy_(torch.rand(d, generator=gen) + 0.5)
    return model


def _all_levels(d: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(LEVELS), repeat=d)), dtype=torch.float64)


def _grid(d: int, half_width: float, points: int) -> tuple[torch.Tensor, float]:
    """A regular grid over [-w, w]^d (N, d) and the volume of one cell."""
    axis = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    cells = torch.cartesian_prod(*[axis] * d) if d > 1 else axis[:, None]
    return cells, float((axis[1] - axis[0]) ** d)


@pytest.mark.parametrize("kw", [{}, {"ordering": "random", "num_masks": 3}])
@pytest.mark.parametrize("classes", [0, 2])
@torch.no_grad()
def test_categorical_sums_to_one_over_all_inputs(kw, classes) -> None:
    model = _model(3, "categorical", classes, **kw)
    x = _all_levels(3)
    for label in range(max(classes, 1)):
        labels = torch.full((x.shape[0],), label) if classes else None
        assert float(model.log_prob(x, Condition(labels)).exp().sum()) == pytest.approx(1.0, abs=1e-9)
        for k in range(model.num_masks):
            total = model.log_prob_member(x, k, Condition(labels)).exp().sum()
            assert float(total) == pytest.approx(1.0, abs=1e-9)
    if classes:  # the label summed out with its prior is a density of x alone
        model.fit_inputs(x, Condition(torch.tensor([0] * 5 + [1] * (x.shape[0] - 5))))
        prior = model.label_log_prior.exp()
        assert float(prior[0]) == pytest.approx(6 / (x.shape[0] + 2))  # add-one smoothed
        marginal = model.marginal_log_prob(x)
        assert float(marginal.exp().sum()) == pytest.approx(1.0, abs=1e-9)
        given = [model.log_prob(x, Condition(torch.full((x.shape[0],), y))) for y in range(classes)]
        brute = torch.log(sum(p * g.exp() for p, g in zip(prior, given, strict=True)))
        torch.testing.assert_close(marginal, brute)


@pytest.mark.parametrize("head", ["gaussian", "mog"])
@pytest.mark.parametrize("d", [1, 2])
def test_gaussian_and_mog_densities_integrate_to_one(head, d) -> None:
    model = _model(d, head, classes=2, scale=0.7, ordering="random", num_masks=2)
    x, cell = _grid(d, 14.0, 4001 if d == 1 else 701)
    labels = torch.ones(x.shape[0], dtype=torch.long)
    with torch.no_grad():
        members = [model.log_prob_member(x, k, Condition(labels)) for k in range(2)]
        for log_density in (model.log_prob(x, Condition(labels)), *members):
            assert float(log_density.exp().sum() * cell) == pytest.approx(1.0, abs=2e-3)


def _tv_discrete(samples: torch.Tensor, log_probs: torch.Tensor) -> float:
    # _all_levels enumerates with the first dimension most significant
    index = (samples.long() * LEVELS ** torch.arange(samples.shape[1] - 1, -1, -1)).sum(1)
    freq = torch.bincount(index, minlength=log_probs.numel()).double() / samples.shape[0]
    return float(0.5 * (freq - log_probs.exp()).abs().sum())


@torch.no_grad()
def test_categorical_samples_follow_the_model_for_each_label() -> None:
    model = _model(3, "categorical", classes=2, ordering="random", num_masks=2)
    for label in range(2):
        samples = model.sample(40000, generator=torch.Generator().manual_seed(label), given=Condition(label))
        log_probs = model.log_prob(_all_levels(3), Condition(torch.full((LEVELS**3,), label)))
        # 27 cells, 40k draws: noise puts TV near 0.015; a wrong sampler or label is far off.
        assert _tv_discrete(samples, log_probs) < 0.03


@pytest.mark.parametrize("head", ["gaussian", "mog"])
def test_real_valued_samples_follow_the_model(head) -> None:
    model = _model(2, head, scale=0.7, ordering="random", num_masks=2)
    samples = model.sample(40000, generator=torch.Generator().manual_seed(0))
    # Probability of 8x8 bins over [-8, 8]^2 (plus "outside") by integrating the density.
    edges = torch.linspace(-8, 8, 9, dtype=torch.float64)
    x, cell = _grid(2, 8.0, 321)
    with torch.no_grad():
        mass = model.log_prob(x).exp() * cell

    def bins(points: torch.Tensor) -> torch.Tensor:
        inside = ((points > -8) & (points < 8)).all(1)
        idx = (torch.bucketize(points, edges[1:-1]) * torch.tensor([8, 1])).sum(1)
        return torch.where(inside, idx, 64)

    expected = torch.bincount(bins(x), weights=mass, minlength=65)
    expected[64] = 1 - expected[:64].sum()
    observed = torch.bincount(bins(samples), minlength=65).double() / samples.shape[0]
    assert float(0.5 * (observed - expected).abs().sum()) < 0.03


@pytest.mark.parametrize("head", ["bernoulli", "categorical", "gaussian", "mog"])
@pytest.mark.parametrize("kw", [{}, {"ordering": "random", "num_masks": 2, "hidden": (9, 7)}, {"hidden": ()}])
def test_fast_sampler_reproduces_the_naive_one_for_every_head_with_context(head, kw) -> None:
    model = _model(6, head, classes=3, scale=1.0, **kw)
    gen = torch.Generator().manual_seed(3)
    n = 30
    uniforms = torch.rand(n, 6, model.head.noise_per_dim, generator=gen, dtype=torch.float64)
    c = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).double()
    x = model.sample(n, generator=gen, given=Condition(torch.arange(n) % 3))
    for k in range(model.num_masks):
        fill = torch.rand(n, 6, generator=gen) < 0.6
        fast = sampling.ancestral_fast(model.net, model.head, model.encoding, x, fill, k, uniforms, c)
        naive = sampling.ancestral_naive(model.net, model.head, model.encoding, x, fill, k, uniforms, c)
        assert torch.equal(fast[~fill], x[~fill])
        if model.head.discrete:
            assert torch.equal(fast, naive)
        else:  # summation order differs: equal to rounding
            torch.testing.assert_close(fast, naive, rtol=1e-9, atol=1e-9)


def test_every_mask_of_a_conditional_mog_model_is_autoregressive() -> None:
    model = _model(5, "mog", classes=4, ordering="random", num_masks=3)
    reports = verify_made(model.net, points=2)
    assert [r.ok for r in reports] == [True] * 3
    assert all(r.jacobian_points == 2 for r in reports)


@torch.no_grad()
def test_labels_are_required_checked_and_change_the_law() -> None:
    model = _model(4, "bernoulli", classes=3)
    x = torch.bernoulli(torch.full((5, 4), 0.5, dtype=torch.float64))
    a, b = (
        model.log_prob(x, Condition(torch.zeros(5, dtype=torch.long))),
        model.log_prob(x, Condition(torch.ones(5, dtype=torch.long))),
    )
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="pass labels"):
        model.log_prob(x)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2"):
        model.log_prob(x, Condition(torch.full((5,), 3)))
    with pytest.raises(ValueError, match="not conditioned"):
        _model(4, "bernoulli").log_prob(x, Condition(torch.zeros(5, dtype=torch.long)))


def test_untrained_model_starts_at_the_independent_fit() -> None:
    """fit_inputs puts each dimension's output biases at its marginal fit, in the layout the
    head reads (output p * D + d): with the output weights at zero, an untrained model's NLL is
    exactly the independent baseline, and that baseline beats a standard guess."""
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(500, 3, generator=gen, dtype=torch.float64) * 2 + 1
    levels = torch.randint(0, LEVELS, (500, 3), generator=gen).double()
    for head, data in ((Gaussian(), real), (MixtureOfGaussians(3), real), (Categorical(LEVELS), levels)):
        model = MADEModel(MADE(3, [8], params_per_dim=head.params_per_dim), head).double()
        model.fit_inputs(data)
        with torch.no_grad():
            model.net.output.zero_rows()
            model.net.direct.zero_rows()
        fitted = independent_baseline_nll(data, data, head)
        if not isinstance(head, MixtureOfGaussians):  # a mixture starts near its fit, not at it
            assert abs(float(-model.log_prob(data).mean().detach()) - fitted) < 1e-9
        if head.discrete:
            assert fitted <= 3 * math.log(LEVELS) + 1e-9
        else:
            standard = float(
                -Gaussian().log_prob(torch.zeros(500, 2, 3, dtype=torch.float64), data).sum(1).mean()
            )
            assert fitted < standard


def test_inputs_share_one_scale_so_rare_pixels_stay_small() -> None:
    # A pixel that is 0 in all training rows but one must not be blown up when it is set at
    # test time (a per-dimension scale made it |z| = 775 on 8-level MNIST).
    model = _model(3, "categorical")
    train = torch.zeros(1000, 3, dtype=torch.float64)
    train[:, 0] = torch.arange(1000) % LEVELS
    train[0, 2] = 1.0
    model.fit_inputs(train)
    z = model.network_input(torch.full((1, 3), float(LEVELS - 1), dtype=torch.float64))
    assert z.abs().max() < 10
    assert torch.unique(model.input_scale).numel() == 1
    one_row = _model(2, "gaussian")
    one_row.fit_inputs(torch.ones(1, 2, dtype=torch.float64))
    assert torch.isfinite(one_row.input_scale).all()
    assert torch.isfinite(one_row.head.init_bias(torch.ones(1, 2, dtype=torch.float64))).all()


def test_bernoulli_log_prob_equals_torch_bce_in_value_and_gradient() -> None:
    """The head builds log-sigmoid from exp and log (torch's CPU log1p is slow); it must equal
    -binary_cross_entropy_with_logits to float rounding, gradients included, at extreme logits."""
    logits = torch.cat([torch.linspace(-40, 40, 801), torch.tensor([-1e4, -1e-8, 0.0, 1e-8, 1e4])])
    logits = logits.double()[:, None, None].expand(-1, 1, 3).clone().requires_grad_()
    x = torch.tensor([0.0, 1.0, 0.3], dtype=torch.float64).expand(logits.shape[0], 3)
    ours = Bernoulli().log_prob(logits, x)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    theirs = -F.binary_cross_entropy_with_logits(logits[:, 0], x, reduction="none")
    (g_theirs,) = torch.autograd.grad(theirs.sum(), logits)
    assert torch.allclose(ours, theirs, rtol=1e-14, atol=1e-14)
    assert torch.allclose(g_ours, g_theirs, rtol=1e-14, atol=1e-14)
    single = Bernoulli().log_prob(logits.detach().float(), x.float())
    assert torch.allclose(single.double(), theirs.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("head", "bad", "message"),
    [(Bernoulli(), 0.5, "0 or 1"), (Categorical(4), 4.0, "integers 0..3"), (Categorical(4), 1.5, "integers"),
     (Gaussian(), float("nan"), "finite")],
)  # fmt: skip
def test_the_python_api_refuses_values_a_head_does_not_model(head, bad, message) -> None:
    model = MADEModel(MADE(6, [8], params_per_dim=head.params_per_dim), head)
    x = torch.zeros(2, 6)
    x[1, 3] = bad
    with pytest.raises(ValueError, match=message):
        model.log_prob(x)
    with pytest.raises(ValueError, match=r"must be \(rows, 6\); got shape \(2, 5\)"):
        model.log_prob(torch.zeros(2, 5))
    observed = torch.zeros(2, 6, dtype=torch.bool)
    observed[:, :3] = True
    model.ancestral_completion(x, observed)  # a bad value where nothing is observed is simply replaced
    observed[1, 3] = True
    with pytest.raises(ValueError, match=message):
        model.ancestral_completion(x, observed)
