"""Degree blocks: the same model as the masked product, stored in the same checkpoint format.

The oracle is the same weights stored whole and multiplied by the masks (``use_blocks(False)``,
which is how ensembles always run), or, for older checkpoints, a masked product written here
from the state dict alone.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from made_cli import blocks
from made_cli import degrees as deg
from made_cli.condition import Condition
from made_cli.config import load_config
from made_cli.heads import ColumnLaw
from made_cli.kinds import build_model
from made_cli.made import MADE, load_portable_optimizer_state, portable_optimizer_state
from made_cli.verify import verify_made

_REAL = ColumnLaw(shift=0.1, scale=1.2, low=-3.0, high=3.0)  # a real column's law, standardised
# (overrides, features, extra build_model arguments, data kind)
MODELS = [
    pytest.param(["model.hidden=[24, 24]"], 7, {}, "binary", id="bernoulli-natural-direct"),
    pytest.param(["model.hidden=[24, 24, 24]", "model.ordering=random", "model.direct=false"], 7, {},
                 "binary", id="bernoulli-random-3-layers"),
    pytest.param(["data.name=mnist", "data.binarize=static", "model.hidden=[24]", "model.ordering=reverse",
                  "model.condition_on=label"], 7, {"classes": 3}, "binary", id="bernoulli-reverse-label"),
    pytest.param(["data.name=npz", "data.path=x.npz", "data.values=real", "model.head=gaussian",
                  "model.hidden=[24, 24]"], 6, {}, "real", id="gaussian"),
    pytest.param(["data.name=npz", "data.path=x.npz", "data.values=real", "model.head=mog",
                  "model.components=3", "model.hidden=[24, 24]", "model.ordering=random"], 6, {}, "real",
                 id="mog"),
    pytest.param(["data.name=npz", "data.path=x.npz", "data.values=levels", "model.head=categorical",
                  "data.levels=4", "model.hidden=[24, 24]"], 6, {}, "levels", id="categorical"),
    pytest.param(["data.name=table", "data.path=unused.csv", "model.hidden=[24, 24]"], 4,
                 {"columns": (ColumnLaw(levels=3), _REAL, ColumnLaw(levels=2), _REAL), "context": 2}, "table",
                 id="table-columns-context"),
    pytest.param(["data.name=toy", "model.kind=maf", "model.hidden=[24, 24]", "flow.layers=3",
                  "flow.base=mog", "model.components=2"], 5, {}, "real", id="maf-mog-base"),
    pytest.param(["data.name=toy", "model.kind=maf", "model.hidden=[24]", "flow.ordering=random",
                  "model.condition_on=label"], 5, {"classes": 2}, "real", id="maf-random-label"),
    pytest.param(["model.kind=iaf_vae", "model.hidden=[24, 24]", "iaf.latent=4", "iaf.encoder=[16]",
                  "iaf.decoder=[16]", "iaf.context=3"], 6, {}, "binary", id="iaf-context"),
]  # fmt: skip


def _data(kind: str, n: int, features: int, g: torch.Generator) -> torch.Tensor:
    if kind == "binary":
        return (torch.rand(n, features, generator=g) < 0.4).double()
    if kind == "levels":
        return torch.randint(0, 4, (n, features), generator=g).double()
    if kind == "table":
        real = torch.randn(n, 2, generator=g, dtype=torch.float64)
        codes = torch.stack(
            [torch.randint(0, 3, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)], 1
        )
        return torch.stack([codes[:, 0].double(), real[:, 0], codes[:, 1].double(), real[:, 1]], 1)
    return torch.randn(n, features, generator=g, dtype=torch.float64)


def _build(overrides: list[str], features: int, extra: dict, blocks_per_staircase: int | None = 2):
    """A float64 model; its MADEs' layers stored in degree blocks (small layers would stay whole
    by the cost model's choice, so the count is fixed), or whole with None."""
    model = build_model(load_config(None, overrides), features, **extra).double()
    for net in model.made_nets():
        net.use_blocks(blocks_per_staircase is not None, blocks_per_staircase)
    return model


def _pair(overrides: list[str], features: int, extra: dict, kind: str):
    """A float64 model with random weights (masked), its masked-product twin, and data."""
    model = _build(overrides, features, extra)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for net in model.made_nets():
            net.mask_weights()
    x = _data(kind, 64, features, g)
    if hasattr(model, "fit_inputs"):
        model.fit_inputs(x)
    model.eval()
    oracle = copy.deepcopy(model)
    for net in oracle.made_nets():
        net.use_blocks(False)
    assert all(  # a table's unpadded output rows are not P staircases: those layers stay whole
        layer.plan is not None
        for net in model.made_nets()
        for name, layer in net.masked_layers().items()
        if net.output_rows is None or name not in ("output", "direct")
    )
    return model, oracle, x


def _given(model, extra: dict, n: int) -> Condition:
    labels = torch.arange(n) % extra["classes"] if extra.get("classes") else None
    context = None
    if extra.get("context"):
        g = torch.Generator().manual_seed(3)
        context = torch.randn(n, extra["context"], generator=g, dtype=torch.float64)
    return Condition(labels, context)


def _whole_grads(model) -> dict[str, torch.Tensor]:
    """Every parameter's gradient by state-dict name, a planned layer's blocks joined whole."""
    out = {}
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if getattr(module, "plan", None) is not None and pname != "bias":
                continue
            out[f"{name}.{pname}"] = p.grad if p.grad is not None else torch.zeros_like(p)
        if getattr(module, "plan", None) is not None:
            parts, tail = module.block_weights()
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parts]
            out[f"{name}.weight"] = module.plan.join(
                grads, None if tail is None else tail.grad, like=module.mask
            )
    return out


@pytest.mark.parametrize(("overrides", "features", "extra", "kind"), MODELS)
def test_blocks_give_the_masked_products_log_probs_gradients_and_samples(
    overrides, features, extra, kind
) -> None:
    """float64: log p(x), every gradient (the whole weights' masked) and samples from the same
    noise agree with the masked product of the same weights."""
    model, oracle, x = _pair(overrides, features, extra, kind)
    given = _given(model, extra, len(x))
    with torch.no_grad():
        torch.manual_seed(5)
        lp = model.log_prob(x, given)
        torch.manual_seed(5)
        lp_oracle = oracle.log_prob(x, given)
    torch.testing.assert_close(lp, lp_oracle, rtol=1e-12, atol=1e-10)
    for m in (model, oracle):  # the training loss, by the same noise
        m(x, 3, 10, given, torch.Generator().manual_seed(6)).mean().backward()
    mine, theirs = _whole_grads(model), _whole_grads(oracle)
    assert mine.keys() == theirs.keys()
    masks = {f"{prefix}.{n}.weight".lstrip("."): layer.mask for prefix, net in oracle.named_modules()
             if isinstance(net, MADE) for n, layer in net.masked_layers().items()}  # fmt: skip
    for name, grad in theirs.items():
        expected = grad * masks[name] if name in masks else grad
        torch.testing.assert_close(mine[name], expected, rtol=1e-10, atol=1e-10, msg=name)
    given = given.rows(slice(0, 20))
    samples = model.draw(20, torch.Generator().manual_seed(9), given)
    samples_oracle = oracle.draw(20, torch.Generator().manual_seed(9), given)
    torch.testing.assert_close(samples, samples_oracle, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("overrides", "features", "extra", "kind"), MODELS)
def test_checkpoints_keep_their_format_and_load_either_way(overrides, features, extra, kind) -> None:
    """The state dict holds whole matrices under the same names and shapes as a masked-product
    model's; each loads the other's, and the round trip is exact."""
    model, oracle, _ = _pair(overrides, features, extra, kind)
    state, whole = model.state_dict(), oracle.state_dict()
    assert list(state) == list(whole)
    for name in state:
        assert torch.equal(state[name], whole[name]), name
    fresh = _build(overrides, features, extra)
    fresh.load_state_dict(whole)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), state.values(), strict=True))
    fresh_whole = _build(overrides, features, extra, None)
    fresh_whole.load_state_dict(state)
    assert all(
        torch.equal(a, b) for a, b in zip(fresh_whole.state_dict().values(), whole.values(), strict=True)
    )


def test_plans_cover_the_mask_and_train_only_inside_it() -> None:
    """For staircases (sorted degrees, natural or reverse order) and for a random ordering,
    with and without a context tail: covered >= mask >= trained, and the chosen plan splits
    a wide staircase into blocks that store far less than the whole matrix."""
    g = torch.Generator().manual_seed(0)
    features = 40
    for ranks in (
        torch.arange(1, features + 1),
        torch.arange(features, 0, -1),
        torch.randperm(features, generator=g) + 1,
    ):
        hidden = torch.randint(1, features, (300,), generator=g).sort().values
        for tail in (0, 3):
            inputs = torch.cat([ranks, torch.zeros(tail, dtype=torch.long)])
            for mask, segments, cut in ((deg.mask(inputs, hidden, strict=False), 1, tail),
                                        (deg.mask(hidden, ranks.repeat(2), strict=True), 2, 0)):  # fmt: skip
                for count in (None, 1, 3, 8):
                    p = blocks.plan(mask, segments=segments, tail=cut, count=count)
                    if p is None:  # the cost model keeps this one whole
                        continue
                    assert (p.covered() | ~mask).all()
                    assert (mask | ~p.trained(mask)).all()
                    assert sum(b.r1 - b.r0 for b in p.blocks) <= mask.shape[0]
    staircase = deg.mask(
        torch.arange(1, 785), torch.randint(1, 784, (2000,), generator=g).sort().values, strict=False
    )
    p = blocks.plan(staircase)
    assert p is not None and len(p.blocks) > 1 and p.covered().sum() < 0.7 * staircase.numel()
    small = deg.mask(
        torch.arange(1, 17), torch.randint(1, 16, (16,), generator=g).sort().values, strict=False
    )
    assert blocks.plan(small) is None  # the whole matrix times the mask: less overhead


def _old_forward(state: dict[str, torch.Tensor], x: torch.Tensor, hidden: int) -> torch.Tensor:
    """The masked product as code before degree blocks computed it: whole matrices from the
    state dict times masks from its degrees (the net's own degrees, unsorted or not)."""
    ranks = state["ranks"][0]
    degrees = [ranks, *(state[f"hidden_degrees_{i}"][0] for i in range(hidden))]
    h = x
    for i in range(hidden):
        mask = deg.mask(degrees[i], degrees[i + 1], strict=False)
        h = F.relu(F.linear(h, state[f"layers.{i}.weight"] * mask, state[f"layers.{i}.bias"]))
    out = F.linear(
        h, state["output.weight"] * deg.mask(degrees[-1], ranks, strict=True), state["output.bias"]
    )
    return out + F.linear(x, state["direct.weight"] * deg.mask(ranks, ranks, strict=True))


def _old_layout(net: MADE, g: torch.Generator) -> dict[str, torch.Tensor]:
    """``net``'s state as older code saved it: hidden units in no particular order (the same
    network, relabelled by random permutations), and nonzero weights wherever masks are zero."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    after = ["layers.1.weight", "output.weight"]
    for layer, nxt in enumerate(after):
        perm = torch.randperm(net.hidden[layer], generator=g)
        state[f"hidden_degrees_{layer}"] = state[f"hidden_degrees_{layer}"][:, perm]
        state[f"layers.{layer}.weight"] = state[f"layers.{layer}.weight"][perm]
        state[f"layers.{layer}.bias"] = state[f"layers.{layer}.bias"][perm]
        state[nxt] = state[nxt][:, perm]
    for name in ("layers.0.weight", "layers.1.weight", "output.weight", "direct.weight"):
        noise = torch.randn(state[name].shape, generator=g, dtype=torch.float64)
        state[name] = torch.where(state[name] == 0, noise, state[name])
    assert not torch.equal(state["hidden_degrees_0"], state["hidden_degrees_0"].sort(1).values)
    return state


def _loss(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out.reshape(x.shape), x)


def _net() -> MADE:
    net = MADE(9, [30, 30], seed=4).double()
    net.use_blocks(True, count=3)  # several blocks per layer, each with its own optimiser state
    return net


def test_an_older_run_resumes_here_as_it_would_have_there() -> None:
    """An older checkpoint (unsorted hidden units, whole-matrix Adam moments, weight decay, so
    moments off the masks too) resumed with degree blocks takes the same steps as older code."""
    g = torch.Generator().manual_seed(1)
    old = _old_layout(_net(), g)
    xs = [(torch.rand(16, 9, generator=g) < 0.5).double() for _ in range(6)]
    names = [n for n in old if n.endswith(("weight", "bias"))]
    params = {n: old[n].clone().requires_grad_(True) for n in names}
    adam = torch.optim.Adam(params.values(), lr=1e-2, weight_decay=0.1)
    for x in xs[:3]:  # older code trains three steps, then saves
        adam.zero_grad()
        _loss(_old_forward(params | {k: old[k] for k in old if k not in params}, x, 2), x).backward()
        adam.step()
    saved_state = {k: (params[k].detach().clone() if k in params else v) for k, v in old.items()}
    saved_adam = copy.deepcopy(adam.state_dict())
    for x in xs[3:]:  # ... and older code goes on
        adam.zero_grad()
        _loss(_old_forward(params | {k: old[k] for k in old if k not in params}, x, 2), x).backward()
        adam.step()
    net = _net()
    net.load_state_dict(saved_state)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=0.1)
    load_portable_optimizer_state(net, opt, saved_adam, saved_state)
    for x in xs[3:]:
        opt.zero_grad()
        _loss(net(x), x).backward()
        opt.step()
    final = {k: (params[k].detach() if k in params else v) for k, v in old.items()}
    probe = (torch.rand(50, 9, generator=g) < 0.5).double()
    torch.testing.assert_close(net(probe).reshape(50, 9), _old_forward(final, probe, 2), rtol=0, atol=1e-10)
    assert verify_made(net)[0].ok


def test_a_run_saved_here_resumes_in_older_code_as_it_would_here() -> None:
    """The checkpoint of a degree-block run (state dict and portable Adam state) resumed by a
    plain masked-product loop over whole matrices takes the same steps as resuming here."""
    g = torch.Generator().manual_seed(2)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=0.1)
    xs = [(torch.rand(16, 9, generator=g) < 0.5).double() for _ in range(6)]
    for x in xs[:3]:
        opt.zero_grad()
        _loss(net(x), x).backward()
        opt.step()
    saved_state = {k: v.clone() for k, v in net.state_dict().items()}
    saved_adam = copy.deepcopy(portable_optimizer_state(net, opt))
    for x in xs[3:]:
        opt.zero_grad()
        _loss(net(x), x).backward()
        opt.step()
    names = [n for n in saved_state if n.endswith(("weight", "bias"))]
    params = {n: saved_state[n].clone().requires_grad_(True) for n in names}
    adam = torch.optim.Adam(params.values(), lr=1e-2, weight_decay=0.1)
    adam.load_state_dict(saved_adam)
    for x in xs[3:]:
        adam.zero_grad()
        _loss(
            _old_forward(params | {k: saved_state[k] for k in saved_state if k not in params}, x, 2), x
        ).backward()
        adam.step()
    final = {k: (params[k].detach() if k in params else v) for k, v in saved_state.items()}
    probe = (torch.rand(50, 9, generator=g) < 0.5).double()
    torch.testing.assert_close(_old_forward(final, probe, 2), net(probe).reshape(50, 9), rtol=0, atol=1e-10)


@pytest.mark.parametrize("optimiser", ["adam-decay", "adamw", "sgd-momentum"])
def test_masked_weights_stay_exactly_zero_under_training(optimiser: str) -> None:
    """The masked gradient keeps every stored masked entry at exactly zero: verify-ar's
    structural and Jacobian checks pass after training, and the entries are zero."""
    net = MADE(12, [64, 64], ordering="reverse", seed=0)
    net.use_blocks(True, count=4)
    opt = {"adam-decay": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1),
           "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
           "sgd-momentum": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, weight_decay=0.1)}[optimiser](
        net.parameters())  # fmt: skip
    for _ in range(20):
        x = (torch.rand(32, 12) < 0.5).float()
        opt.zero_grad()
        _loss(net(x), x).backward()
        opt.step()
    for layer in net.masked_layers().values():
        assert (layer.full_weight()[layer.mask == 0] == 0).all()
    assert verify_made(net)[0].ok


def test_a_checkpoint_with_other_degrees_than_todays_draw_resumes_with_every_weight_training(
    tmp_path,
) -> None:
    """Its layers get other degree blocks, hence new parameters, when it loads: the trainer
    makes its optimiser for those (an optimiser made before would train stale copies)."""
    from made_cli.checkpoint import load_checkpoint
    from made_cli.config import config_from_dict
    from made_cli.train import Trainer, train, train_step

    overrides = ["data.name=synthetic", "data.features=128", "data.size=300", "model.hidden=[512]",
                 "model.direct=false", "train.batch_size=50", "train.epochs=1"]  # fmt: skip
    train(load_config(None, overrides), tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", map_location="cpu")
    state["model"]["net.hidden_degrees_0"] = MADE(128, [512], seed=1, direct=False).hidden_degrees_0.clone()
    trainer = Trainer(config_from_dict(state["config"], ["train.epochs=2"]), tmp_path / "run", "cpu", None)
    trainer.load_state_dict(state)
    net = trainer.model.net
    assert net.layers[0].plan is not None and net.output.plan is not None
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {
        id(p) for p in trainer.model.parameters()
    }
    before = {n: layer.full_weight().detach().clone() for n, layer in net.masked_layers().items()}
    for i in range(3):
        train_step(trainer.model, trainer.optimizer, trainer.dataset.train[:50], i, 4)
    for name, layer in net.masked_layers().items():
        assert (layer.full_weight().detach() - before[name]).abs().max() > 0, name
    stale = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="no longer has"):
        load_portable_optimizer_state(trainer.model, stale, state["optimizer"], state["model"])


def test_no_second_derivatives_and_a_wrong_shape_is_a_size_mismatch() -> None:
    """Double backward through blocks raises instead of giving the unmasked second-order terms;
    a checkpoint matrix of the wrong shape is reported as torch reports one for a whole weight."""
    net = MADE(8, [32], seed=0).double()
    net.use_blocks(True, count=2)
    x = torch.rand(4, 8, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()
    state = net.state_dict()
    state["layers.0.weight"] = torch.zeros(32, 7, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"size mismatch for layers\.0\.weight"):
        net.load_state_dict(state)


def test_a_random_ordering_is_reordered_into_staircases_on_its_input_and_output_side() -> None:
    """The input layer gathers its columns and the output and direct layers scatter their rows
    in generation order, where their masks are staircases: far less is stored than the whole
    matrix, the plan still covers the mask, and zeroing output rows hits the layer's own rows."""
    net = MADE(64, [256], ordering="random", params_per_dim=2, context=2, seed=0).double()
    net.use_blocks(True, count=4)
    layer0, output, direct = net.layers[0], net.output, net.direct
    assert layer0.plan.column_order is not None and layer0.plan.row_order is None
    assert output.plan.row_order is not None and direct.plan.row_order is not None
    for layer in (layer0, output, direct):
        mask = layer.mask.bool()
        assert (layer.plan.covered() | ~mask).all() and (mask | ~layer.plan.trained(mask)).all()
        assert (
            layer.plan.covered()[:, : layer.plan.staircase].sum()
            < 0.75 * mask[:, : layer.plan.staircase].numel()
        )
    assert verify_made(net)[0].ok
    before = output.full_weight().detach().clone()
    output.zero_rows(64)  # the second parameter of every dimension
    after = output.full_weight().detach()
    assert (after[64:] == 0).all() and torch.equal(after[:64], before[:64])


ENSEMBLES = [
    m for m in MODELS if "model.kind=maf" not in m.values[0] and "model.kind=iaf_vae" not in m.values[0]
]


def _ensemble_pair(overrides: list[str], features: int, extra: dict, kind: str):
    """A float64 ensemble of 3 masks computing its evaluation in each member's degree blocks
    (a fixed count: the cost model would multiply layers this small whole), its twin with
    the same weights computing whole masked products, and data."""
    model = build_model(load_config(None, [*overrides, "model.num_masks=3"]), features, **extra).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    x = _data(kind, 64, features, g)
    model.eval()
    oracle = copy.deepcopy(model)
    model.net.use_blocks(True, 2)
    oracle.net.use_blocks(False)
    return model, oracle, x


@pytest.mark.parametrize(("overrides", "features", "extra", "kind"), ENSEMBLES)
def test_an_ensembles_evaluation_in_degree_blocks_is_its_masked_products(
    overrides, features, extra, kind
) -> None:
    """float64: every member's log p(x) and the mixture, computed from each member's degree
    blocks copied out of the shared whole weights, agree with the whole weights times the
    masks; so do samples from the same noise, and the training loss and its gradients, which
    take the whole weights."""
    model, oracle, x = _ensemble_pair(overrides, features, extra, kind)
    given = _given(model, extra, len(x))
    with torch.no_grad():
        for k in range(3):
            torch.testing.assert_close(
                model.log_prob_member(x, k, given),
                oracle.log_prob_member(x, k, given),
                rtol=1e-12,
                atol=1e-10,
            )
        gathered = [layer for layer in model.net.masked_layers().values() if layer.gather is not None]
        assert gathered and all(len(layer.gather.plan.blocks) > 1 for layer in gathered)
        assert all(layer.gather is None for layer in oracle.net.masked_layers().values())
        torch.testing.assert_close(
            model.log_prob(x, given), oracle.log_prob(x, given), rtol=1e-12, atol=1e-10
        )
        given = given.rows(slice(0, 20))
        samples = model.draw(20, torch.Generator().manual_seed(9), given)
        torch.testing.assert_close(
            samples, oracle.draw(20, torch.Generator().manual_seed(9), given), rtol=1e-9, atol=1e-9
        )
    given = _given(model, extra, len(x))
    for m in (model, oracle):
        m(x, 4, 10, given).mean().backward()
    for (name, p), q in zip(model.named_parameters(), oracle.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name  # training: the same whole products, bit for bit


def test_an_ensembles_plans_follow_its_degrees_device_and_dtype() -> None:
    """The members' inference plans are kept between calls, and remade when the degrees are
    replaced (a checkpoint of another draw) or the model is cast; the state dict is the
    whole weights either way."""
    overrides = ["model.hidden=[24, 24]", "model.ordering=random", "model.num_masks=3"]
    model = build_model(load_config(None, overrides), 7)
    other = build_model(load_config(None, [*overrides, "seed=5"]), 7)
    model.net.use_blocks(True, 2)
    x = (torch.rand(50, 7, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    with torch.no_grad():
        model.log_prob(x)
        assert set(model.net._gathered) == {0, 1, 2}
        model.load_state_dict(other.state_dict())
        assert not model.net._gathered
        torch.testing.assert_close(model.log_prob(x), other.log_prob(x), rtol=1e-5, atol=1e-5)
        model.double()
        assert model.net.layers[0].gather is None  # remade for float64 at the next call
        oracle = copy.deepcopy(model)
        oracle.net.use_blocks(False)
        torch.testing.assert_close(
            model.log_prob(x.double()), oracle.log_prob(x.double()), rtol=1e-12, atol=1e-10
        )
        assert model.net.layers[0].gather is not None
    state = model.state_dict()
    assert all(f"net.{name}.weight" in state for name in ("layers.0", "layers.1", "output", "direct"))


def test_an_ensemble_gathers_only_for_products_of_many_rows(monkeypatch) -> None:
    """With the cost model's own plans, a wide ensemble's layers gather their blocks for an
    evaluation's products of many rows and multiply whole for a sampler's few rows; training
    always multiplies whole. (Copies cheaper than this CPU's, so that a 1x2000 pays.)"""
    monkeypatch.setattr(blocks, "COSTS", blocks.Costs(gather=100.0, gathered_block=4.0e7))
    model = build_model(
        load_config(None, ["model.hidden=[2000]", "model.ordering=random", "model.num_masks=2"]), 784
    )
    calls = []
    real = blocks.gathered_linear
    monkeypatch.setattr(blocks, "gathered_linear", lambda *a: calls.append(a[0].shape[0]) or real(*a))
    x = (torch.rand(1000, 784, generator=torch.Generator().manual_seed(4)) < 0.1).float()
    with torch.no_grad():
        model.log_prob(x[:3])
        assert not calls
        model.log_prob(x)
        assert calls and set(calls) == {1000}
    calls.clear()
    model(x[:100], 0, 10).mean().backward()
    assert not calls
    inputs = deg.input_ranks(784, "random", torch.Generator().manual_seed(2))
    hidden = torch.randint(1, 784, (2000,), generator=torch.Generator().manual_seed(3))
    staircase = deg.mask(inputs, hidden, strict=False)
    p = blocks.plan(
        staircase,
        row_order=tuple(hidden.argsort(stable=True).tolist()),
        column_order=tuple(inputs.argsort().tolist()),
        batch=blocks.INFERENCE_BATCH,
    )
    assert p is not None and 1 < len(p.blocks) <= max(blocks.INFERENCE_COUNTS)
    fewest = blocks.rows_to_gather(p)
    assert 1 < fewest < blocks.INFERENCE_BATCH
    assert blocks.plan(staircase[:16, :16], batch=blocks.INFERENCE_BATCH) is None


@pytest.mark.parametrize("ordering", ["natural", "reverse", "random"])
@pytest.mark.parametrize("count", [None, 3])
def test_an_ensembles_inference_plans_from_degrees_are_the_plans_of_its_masks(ordering, count) -> None:
    """A member's inference plans, cut from prefix lengths counted on its sorted degrees, are
    the plans ``blocks.plan`` cuts from the layers' masks in the same orders, and the lengths
    are the masks' rows in those orders."""
    for hidden, params, context in (([40, 30], 1, 0), ([], 2, 3), ([50], 3, 2)):
        net = MADE(9, hidden, context=context, params_per_dim=params, ordering=ordering, num_masks=3, seed=4)
        for member in range(3):
            net.set_member(member)
            for name, gather in net.inference_plans(count, batch=4000).items():
                layer = net.masked_layers()[name]
                p = None if gather is None else gather.plan
                expected = blocks.plan(
                    layer.mask,
                    segments=params if name in ("output", "direct") else 1,
                    tail=context
                    if name in ("layers.0", "direct") or (name == "output" and not hidden)
                    else 0,
                    count=count,
                    row_order=None if p is None else p.row_order,
                    column_order=None if p is None else p.column_order,
                    batch=4000,
                )
                assert p == expected, (hidden, member, name)
                if p is not None and count:
                    assert (p.covered() | ~layer.mask.bool()).all()  # the blocks hold the mask
                    stored = p.stored(layer.mask.bool())[:, : p.staircase]
                    assert torch.equal(gather.reads, stored.sum(1))  # each row reads a prefix
                    assert all(bool(row[: int(n)].all()) for row, n in zip(stored, gather.reads, strict=True))
