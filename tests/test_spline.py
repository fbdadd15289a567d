"""The rational-quadratic spline (kinds/nsf/spline.py): the identity at zero parameters, a
monotone map whose inverse inverts it inside and outside [-B, B], log-derivatives against
autograd, continuity at the knots and slope 1 at the ends (linear tails), read backwards as a
head, and the nsf kind's config checks. A spline flow's degree-scheduled inverse against the
naive one, its normalisation and its samples are in test_maf.py's spline cases."""

from __future__ import annotations

import pytest
import torch

from made_cli.kinds.maf.transformers import Affine, TransformerInverse
from made_cli.kinds.nsf.spline import RationalQuadraticSpline


def _params(spline: RationalQuadraticSpline, n: int, scale: float = 2.0, seed: int = 0) -> torch.Tensor:
    """(P, n): parameters of n values, laid out as a MADE gives them (parameter axis before values)."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(spline.params_per_dim, n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("bins,bound", [(2, 1.0), (8, 3.0), (16, 5.0)])
def test_zero_parameters_give_the_identity(bins: int, bound: float) -> None:
    spline = RationalQuadraticSpline(bins, bound)
    x = torch.linspace(-2 * bound, 2 * bound, 301, dtype=torch.float64)
    u, log_det = spline.forward(x, torch.zeros(spline.params_per_dim, 301, dtype=torch.float64))
    assert torch.allclose(u, x, atol=1e-12) and torch.allclose(log_det, torch.zeros_like(x), atol=1e-12)


@pytest.mark.parametrize("bins,bound", [(2, 1.0), (5, 2.0), (8, 3.0)])
def test_the_inverse_inverts_inside_and_outside_the_interval(bins: int, bound: float) -> None:
    spline = RationalQuadraticSpline(bins, bound)
    x = torch.cat([torch.linspace(-1.5 * bound, 1.5 * bound, 997, dtype=torch.float64), torch.tensor(
        [-bound, bound, 0.0], dtype=torch.float64)])  # fmt: skip
    params = _params(spline, x.numel())
    u, _ = spline.forward(x, params)
    assert torch.allclose(spline.inverse(u, params), x, rtol=0, atol=1e-10)
    outside = x.abs() > bound
    assert torch.equal(u[outside], x[outside])  # linear tails: the identity
    # and the inverse's own image: u drawn anywhere comes back to itself through forward
    v = 2 * bound * torch.rand(500, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - bound
    p2 = _params(spline, 500, seed=2)
    assert torch.allclose(spline.forward(spline.inverse(v, p2), p2)[0], v, rtol=0, atol=1e-10)


def test_log_derivatives_match_autograd_and_the_map_is_monotone_and_continuous() -> None:
    spline = RationalQuadraticSpline(6, 2.0)
    params = _params(spline, 1).expand(-1, 4001)
    x = torch.linspace(-3.0, 3.0, 4001, dtype=torch.float64, requires_grad=True)
    u, log_det = spline.forward(x, params)
    (grad,) = torch.autograd.grad(u.sum(), x)
    assert torch.allclose(log_det, grad.log(), atol=1e-9)
    assert bool((u[1:] > u[:-1]).all())  # strictly increasing
    knots = spline.knots(params[:, :1])[0][:, 0]  # no jump at a knot: its two sides meet
    sides = torch.cat([knots - 1e-9, knots + 1e-9]).detach()
    left, right = spline.forward(sides, params[:, : sides.numel()])[0].detach().chunk(2)
    assert float((left - right).abs().max()) < 1e-6
    # slope 1 at both ends, as the linear tails need
    ends = torch.tensor([-2.0 + 1e-11, 2.0 - 1e-11], dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(spline.forward(ends, params[:, :2])[0].sum(), ends)
    assert torch.allclose(slope, torch.ones(2, dtype=torch.float64), atol=1e-5)


def test_a_transformer_read_as_a_head_draws_its_inverse() -> None:
    for transformer in (Affine(), RationalQuadraticSpline(4, 2.0)):
        head = TransformerInverse(transformer)
        params = torch.randn(50, transformer.params_per_dim, dtype=torch.float64)  # (B, P): one dimension
        x = torch.randn(50, dtype=torch.float64)
        u, _ = transformer.forward(x[:, None], params[:, :, None])
        assert head.params_per_dim == transformer.params_per_dim
        assert torch.allclose(head.draw(params, u), x, atol=1e-10)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="2 to 999 bins"):
        RationalQuadraticSpline(1, 3.0)
    with pytest.raises(ValueError, match="2 to 999 bins"):
        RationalQuadraticSpline(1000, 3.0)  # bins of at least 0.1% each would be fixed
    with pytest.raises(ValueError, match="bound > 0"):
        RationalQuadraticSpline(4, 0.0)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.kind=nsf", "spline.bins=1"], "spline.bins must be between 2 and 999 (got 1)"),
        (["model.kind=nsf", "spline.bins=1200"], "spline.bins must be between 2 and 999 (got 1200)"),
        (
            ["model.kind=nsf", "spline.bound=0"],
            "spline.bound must be a number > 0 and at most 1e+06 (got 0.0)",
        ),
        (["model.kind=nsf", "spline.bound=1e39"], "spline.bound must be a number > 0 and at most 1e+06"),
        (
            ["model.kind=maf", "spline.bins=4"],
            "the spline section is for model.kind: nsf (this config has kind: maf)",
        ),
        (["flow.layers=2"], "the flow section is for model.kind: maf or nsf (this config has kind: made)"),
        (["model.kind=nsf", "flow.layers=0"], "flow.layers must be at least 1 (got 0)"),
        (["model.kind=nsf", "model.num_masks=2"], "model.num_masks: 2 is not available for model.kind: nsf"),
        (["model.kind=spline"], "unknown model.kind 'spline' (known: made, iaf_vae, maf, nsf)"),
    ],
)
def test_the_nsf_kinds_config_is_checked(overrides: list[str], message: str) -> None:
    from made_cli.config import load_config
    from made_cli.errors import UsageError

    with pytest.raises(UsageError) as info:
        load_config(None, ["data.name=toy", *overrides])
    assert message in str(info.value)


def test_an_nsf_config_keeps_its_sections_and_builds_spline_layers() -> None:
    from made_cli.config import config_to_dict, load_config
    from made_cli.kinds import build_model

    cfg = load_config(
        None, ["data.name=toy", "model.kind=nsf", "spline.bins=5", "spline.bound=2.5", "model.hidden=[8]"]
    )
    saved = config_to_dict(cfg)
    assert saved["spline"] == {"bins": 5, "bound": 2.5} and "flow" in saved and "iaf" not in saved
    model = build_model(cfg, 3)
    assert all(layer.transformer.bins == 5 and layer.transformer.bound == 2.5 for layer in model.layers)
    assert all(layer.made.params_per_dim == 14 for layer in model.layers)  # 3K - 1
    assert model.estimator == "exact, NSF of 5 layers"
