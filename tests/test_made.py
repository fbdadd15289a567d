"""MADE invariants: every mask respects the ordering (exactly and by autograd), and normalises."""

import math

import pytest
import torch

from made_cli import degrees as deg
from made_cli.config import Config, ModelConfig
from made_cli.kinds import build_model
from made_cli.made import MADE
from made_cli.models import MADEModel
from made_cli.verify import connectivity, jacobian

from .conftest import all_binary

CASES = [
    # (hidden, ordering, direct, context, params_per_dim, num_masks, hidden_degrees)
    ([12], "natural", True, 0, 1, 1, "random"),
    ([12], "reverse", False, 0, 1, 1, "random"),
    ([16, 16], "random", True, 0, 1, 1, "random"),
    ([8, 8, 8], "random", False, 0, 1, 4, "random"),
    ([16, 16], "random", True, 3, 2, 3, "even"),
    ([5], "natural", True, 2, 3, 2, "random"),
    ([], "random", True, 0, 1, 2, "even"),
]


def _net(case, seed: int) -> MADE:
    hidden, ordering, direct, context, p, k, mode = case
    return MADE(7, hidden, context=context, params_per_dim=p, direct=direct, ordering=ordering,
                hidden_degrees=mode, num_masks=k, seed=seed)  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_mask_product_never_connects_a_forbidden_pair(case) -> None:
    _, _, direct, context, p, k, _ = case
    net = _net(case, seed=3)
    for member in range(k):
        net.set_member(member)
        paths, _, _ = connectivity(net)
        allowed = deg.allowed(net.ranks[member]).repeat(p, 1)
        assert not (paths[:, :7] & ~allowed).any()
        if context and direct:  # context has degree 0: every output may and does see it
            assert paths[:, 7:].all()
        if direct:  # with direct connections the product equals the allowed pattern exactly
            assert torch.equal(paths[:, :7], allowed)


@pytest.mark.parametrize("case", CASES)
def test_jacobian_is_zero_wherever_the_ordering_forbids(case) -> None:
    _, _, direct, context, p, k, _ = case
    net = _net(case, seed=5)
    for member in range(k):
        net.set_member(member)
        allowed = deg.allowed(net.ranks[member]).repeat(p, 1)
        for _ in range(3):
            c = torch.randn(context) if context else None
            jac = jacobian(net, torch.rand(7), c)
            assert jac.shape == (7 * p, 7)
            assert (jac[~allowed] == 0).all()
            if direct:  # direct weights are dense on the allowed pairs
                assert (jac[allowed] != 0).all()


def test_members_differ_and_degrees_reload_exactly() -> None:
    net = MADE(6, [10, 10], ordering="random", num_masks=4, seed=0)
    assert len({tuple(r.tolist()) for r in net.ranks}) > 1
    other = MADE(6, [10, 10], ordering="random", num_masks=4, seed=99)
    other.load_state_dict(net.state_dict())
    assert torch.equal(other.ranks, net.ranks)
    for k in range(4):
        net.set_member(k)
        other.set_member(k)
        for a, b in zip(net.masked_layers().values(), other.masked_layers().values(), strict=True):
            assert torch.equal(a.mask, b.mask)


def _model(d: int, **kw) -> MADEModel:
    cfg = Config(model=ModelConfig(**{"hidden": (12, 12), **kw}))
    model = build_model(cfg, d)
    with torch.no_grad():  # make the distribution far from uniform
        for param in model.parameters():
            param.mul_(3.0)
    return model


@pytest.mark.parametrize(
    "kw",
    [
        {"ordering": "natural"},
        {"ordering": "reverse", "direct": False},
        {"ordering": "random", "num_masks": 5},
        {"ordering": "natural", "num_masks": 3, "hidden_degrees": "random"},
    ],
)
def test_probabilities_sum_to_one_over_all_binary_inputs(kw) -> None:
    d = 8
    model = _model(d, **kw)
    x = all_binary(d)
    with torch.no_grad():
        for k in range(model.num_masks):
            assert math.isclose(model.log_prob_member(x, k).double().exp().sum(), 1.0, rel_tol=1e-4)
        assert math.isclose(model.log_prob(x).double().exp().sum(), 1.0, rel_tol=1e-4)


def test_mixture_is_logsumexp_over_members_not_averaged_logits() -> None:
    model = _model(6, ordering="random", num_masks=4)
    x = all_binary(6)
    with torch.no_grad():
        per = torch.stack([model.log_prob_member(x, k) for k in range(4)])
        brute = torch.log(per.double().exp().mean(0))
        torch.testing.assert_close(model.log_prob(x).double(), brute, atol=1e-5, rtol=0)


def test_the_embeddings_gradient_is_the_same_every_time_on_several_threads() -> None:
    """A table's categories and missing cells enter by embedding; its gradient adds each row's
    share in a fixed order on two threads too (indexing's scatter-add did not, and the same
    penguins training gave 16.65 to 16.87 test nats run after run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = MADE(6, [256], embed=[4, 0, 3, 5, 0, 2], seed=0)
        g = torch.Generator().manual_seed(0)
        raw = torch.stack([torch.randint(0, 4, (200,), generator=g).float(), torch.randn(200, generator=g),
                           torch.randint(0, 3, (200,), generator=g).float(),
                           torch.randint(0, 5, (200,), generator=g).float(), torch.randn(200, generator=g),
                           torch.randint(0, 2, (200,), generator=g).float()], 1)  # fmt: skip
        raw[torch.rand(raw.shape, generator=g) < 0.2] = torch.nan
        up = torch.randn(200, 256, generator=g)

        def grad() -> torch.Tensor:
            net.zero_grad()
            (net.embedded(raw) * up).sum().backward()
            assert net.embedding is not None and net.embedding.grad is not None
            return net.embedding.grad.clone()

        first = grad()
        assert all(torch.equal(first, grad()) for _ in range(20))
    finally:
        torch.set_num_threads(threads)


def _ensemble_steps(pooled: bool, cached: bool, monkeypatch, dtype=torch.float64) -> tuple[MADEModel, list]:
    """Three Adam steps of a 4-mask ensemble, then the mixture's gradient under grad (all
    members in one graph): the big-layer paths (the masked weight and its gradient in
    buffers kept between steps, masks written in place) forced on or off."""
    import made_cli.made as made_module

    monkeypatch.setattr(made_module, "POOLED_ELEMENTS", 0 if pooled else 2**62)
    monkeypatch.setattr(made_module, "_MASK_CACHE_ELEMENTS", 2**26 if cached else 0)
    cfg = Config(model=ModelConfig(hidden=[16, 12], ordering="random", num_masks=4, direct=True))
    torch.manual_seed(0)
    model = build_model(cfg, 6).to(dtype)
    x = (torch.rand(40, 6, generator=torch.Generator().manual_seed(1)) < 0.4).to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    grads = []
    for step in range(3):
        opt.zero_grad(set_to_none=True)
        model(x, step, 4).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        opt.step()
    opt.zero_grad(set_to_none=True)
    (-model.log_prob(x).mean()).backward()
    grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    return model, grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_buffers_kept_between_steps_give_autograds_products_bit_for_bit(monkeypatch, dtype) -> None:
    """A big layer's masked weight and gradient in kept buffers, and masks written over the
    last member's, train exactly as fresh tensors do: every gradient of three steps and of a
    mixture (four members in one graph, so no buffer is written under a saved one) is equal
    bit for bit, and so are the weights after."""
    reference, expected = _ensemble_steps(False, True, monkeypatch, dtype)
    for pooled, cached in ((True, True), (False, False), (True, False)):
        model, grads = _ensemble_steps(pooled, cached, monkeypatch, dtype)
        for step, (mine, theirs) in enumerate(zip(grads, expected, strict=True)):
            for name in theirs:
                assert torch.equal(mine[name], theirs[name]), (pooled, cached, step, name)
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            assert torch.equal(p, q), name


def test_a_kept_gradient_buffer_is_reused_only_when_nobody_holds_it(monkeypatch) -> None:
    """After the gradient is set to None the next step's lands in the same buffer; a
    gradient someone still holds is never written over (the next step gets a new tensor)."""
    import made_cli.made as made_module

    monkeypatch.setattr(made_module, "POOLED_ELEMENTS", 0)
    cfg = Config(model=ModelConfig(hidden=[16], ordering="random", num_masks=2))
    model = build_model(cfg, 6)
    x = (torch.rand(40, 6, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    weight = model.net.layers[0].weight
    model(x, 0, 4).mean().backward()
    first = weight.grad.data_ptr()
    weight.grad = None
    model(x, 0, 4).mean().backward()
    assert weight.grad.data_ptr() == first  # reused
    held = weight.grad
    kept = held.clone()
    weight.grad = None
    model(x, 1, 4).mean().backward()  # another member: another gradient
    assert weight.grad.data_ptr() != held.data_ptr()
    assert torch.equal(held, kept)


def test_a_mask_or_buffer_someone_holds_is_never_written_over(monkeypatch) -> None:
    """A mask a caller keeps keeps its values when the member changes; a layer used under
    inference mode still trains; a 1-D input gets F.linear's gradients."""
    import made_cli.made as made_module

    monkeypatch.setattr(made_module, "POOLED_ELEMENTS", 0)
    monkeypatch.setattr(made_module, "_MASK_CACHE_ELEMENTS", 0)
    cfg = Config(model=ModelConfig(hidden=[16], ordering="random", num_masks=2))
    model = build_model(cfg, 6)
    held = model.net.layers[0].mask
    kept = held.clone()
    model.net.set_member(1)
    assert torch.equal(held, kept) and not torch.equal(model.net.layers[0].mask, kept)
    x = (torch.rand(40, 6, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    with torch.inference_mode():
        model.log_prob(x)
    model(x, 0, 4).mean().backward()  # no inference tensor was kept for training to write
    layer = model.net.layers[0]
    point = torch.randn(6, requires_grad=True)
    layer(point).square().sum().backward()
    reference = point.detach().clone().requires_grad_(True)
    weight = layer.weight.detach().clone().requires_grad_(True)
    F = torch.nn.functional
    F.linear(reference, weight * layer.mask, layer.bias.detach()).square().sum().backward()
    assert torch.equal(point.grad, reference.grad)
