"""The masked autoregressive flow: inverses (fast against naive, and of the transform), log-
determinants against autograd, normalisation on a 2-D grid, samples against the density, batch
norm's saved statistics, exact completion, and verify-ar's per-layer checks."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from made_cli.cli import app
from made_cli.condition import Condition
from made_cli.kinds.maf.flow import MAF, BatchNormLayer, flow_verification
from made_cli.kinds.nsf.spline import RationalQuadraticSpline
from made_cli.runs import load_run

from .conftest import tamper


def _flow(features: int = 5, *, shake: float = 0.1, train_bn: bool = True, **kw) -> MAF:
    """A float64 flow whose weights, batch-norm parameters and statistics are all off their
    initial values (an untrained flow is the identity, which would hide mistakes). A shake of
    0.1 keeps the tails light enough for the grids the tests integrate over (some draws at 0.2
    put 1-4% of the mass beyond [-20, 20]^2)."""
    args = {"hidden": [12, 12], "layers": 3, "seed": 0}
    flow = MAF(features, **{**args, **kw}).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(shake * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for net in flow.made_nets():
            net.mask_weights()  # degree blocks read the masked entries as the zeros they must be
        flow.input_shift.copy_(torch.randn(features, generator=g, dtype=torch.float64))
        flow.input_scale.copy_(torch.rand(features, generator=g, dtype=torch.float64) + 0.5)
    if train_bn and len(flow.norms):  # running statistics from training batches (with a gradient)
        flow.train()
        for _ in range(60):
            x = 2 * torch.randn(64, features, generator=g, dtype=torch.float64)
            flow.transform_dims(x, _labels(flow, 64))
    return flow.eval()


def _labels(flow: MAF, n: int) -> Condition:
    return Condition(torch.arange(n) % flow.classes if flow.classes else None)


CASES = [
    pytest.param({}, id="reverse-bn-direct"),
    pytest.param({"flow_ordering": "random", "direct": False}, id="random-nodirect"),
    pytest.param({"flow_ordering": "same", "ordering": "random", "batch_norm": False}, id="same-nobn"),
    pytest.param({"classes": 3, "hidden_degrees": "even"}, id="label-context"),
    pytest.param({"base": "mog", "components": 3, "classes": 2}, id="mog-base-label"),
    pytest.param({"hidden": [], "layers": 2}, id="no-hidden-layer"),
    pytest.param({"transformer": RationalQuadraticSpline(4, 2.0)}, id="spline"),
    pytest.param(
        {"transformer": RationalQuadraticSpline(3, 1.0), "base": "mog", "classes": 2}, id="spline-mog"
    ),
]


@pytest.mark.parametrize("kw", CASES)
def test_fast_inverse_equals_the_naive_inverse_and_inverts_the_transform(kw) -> None:
    flow = _flow(**kw)
    x = 1.5 * torch.randn(40, 5, dtype=torch.float64)
    y = _labels(flow, 40)
    u, log_det = flow.transform(x, y)
    fast, naive = flow.inverse(u, y), flow.inverse(u, y, fast=False)
    assert torch.allclose(fast, naive, rtol=0, atol=1e-12)
    assert torch.allclose(fast, x, rtol=0, atol=1e-10)
    assert log_det.shape == (40,)


@pytest.mark.parametrize("kw", CASES)
def test_log_det_of_each_layer_and_of_the_flow_matches_autograd(kw) -> None:
    flow = _flow(**kw)
    checks = flow_verification(flow, points=3)
    assert all(checks.ok) and checks.rows[-1][0] == "whole flow"
    assert checks.records[-1]["log_det_error"] < 1e-9
    # and directly, at a point of our own
    x = torch.randn(5, dtype=torch.float64)
    y = Condition(None if not flow.classes else torch.tensor([1]))
    jac = torch.autograd.functional.jacobian(lambda v: flow.transform_dims(v[None], y)[0][0], x)
    with torch.no_grad():
        log_det = flow.transform_dims(x[None], y)[1].sum()
    assert abs(float(torch.linalg.slogdet(jac)[1] - log_det)) < 1e-10


def test_verify_ar_catches_a_tampered_layer() -> None:
    flow = _flow()
    assert all(flow_verification(flow).ok)
    made = flow.layers[1].made
    tamper(made.output, made.output.mask == 0, count=None)
    checks = flow_verification(flow)
    assert checks.failed == ["layer 1", "whole flow"]  # the layer, and the flow's log-det with it


def _grid(low: float, high: float, n: int) -> tuple[torch.Tensor, float]:
    side = torch.linspace(low, high, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(side, side, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), float(side[1] - side[0]) ** 2


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({}, id="normal-bn"),
        pytest.param({"batch_norm": False}, id="normal-nobn"),
        pytest.param({"base": "mog", "components": 3}, id="mog-bn"),
        pytest.param({"base": "mog", "components": 2, "batch_norm": False, "classes": 2}, id="mog-label"),
        pytest.param({"transformer": RationalQuadraticSpline(5, 1.5)}, id="spline-bn"),
        pytest.param({"transformer": RationalQuadraticSpline(3, 2.0), "base": "mog"}, id="spline-mog"),
    ],
)
def test_the_density_integrates_to_one_on_a_2d_grid(kw) -> None:
    flow = _flow(2, **kw)
    grid, cell = _grid(-20.0, 20.0, 800)
    for label in range(max(1, flow.classes)):
        y = Condition(label if flow.classes else None)
        mass = float(flow.log_prob(grid, y).detach().exp().sum()) * cell
        assert abs(mass - 1) < 5e-3, (label, mass)


def _total_variation(
    flow: MAF, x: torch.Tensor, low: float = -6.0, high: float = 6.0, bins: int = 24
) -> float:
    """Total variation between the rows ``x`` and the density, over square bins of [low, high)^2
    and the one bin outside it; each bin's mass from 10 x 10 cell centres."""
    k = 10
    side = low + (torch.arange(bins * k, dtype=torch.float64) + 0.5) * (high - low) / (bins * k)
    xx, yy = torch.meshgrid(side, side, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    with torch.no_grad():
        mass = (
            (flow.log_prob(grid).exp() * ((high - low) / (bins * k)) ** 2).view(bins, k, bins, k).sum((1, 3))
        )
    inside = ((x >= low) & (x < high)).all(1)
    idx = ((x[inside] - low) / (high - low) * bins).long().clamp(0, bins - 1)
    counts = torch.zeros(bins, bins, dtype=torch.float64)
    counts.index_put_((idx[:, 0], idx[:, 1]), torch.ones(len(idx), dtype=torch.float64), accumulate=True)
    outside = 1 - float(inside.double().mean()), 1 - float(mass.sum())
    return 0.5 * (float((counts / x.shape[0] - mass).abs().sum()) + abs(outside[0] - outside[1]))


@pytest.mark.parametrize(
    "kw", [{}, {"base": "mog", "components": 3}, {"transformer": RationalQuadraticSpline(5, 1.5)}]
)
def test_samples_follow_the_density(kw) -> None:
    """Total variation between 40000 samples and the density over 577 bins: about 0.03 from
    sampling noise alone; the same samples shifted by 0.3 give over 0.1."""
    flow = _flow(2, **kw)
    x = flow.sample(40000, generator=torch.Generator().manual_seed(3))
    assert _total_variation(flow, x) < 0.045
    assert _total_variation(flow, x + 0.3) > 0.08  # the check can tell


def test_batch_norm_uses_saved_statistics_that_do_not_depend_on_the_batch(tmp_path) -> None:
    flow = _flow(4)
    x = torch.randn(30, 4, dtype=torch.float64)
    alone = torch.cat([flow.log_prob(x[i : i + 1]) for i in range(30)])
    assert torch.allclose(flow.log_prob(x), alone, rtol=0, atol=1e-12)  # each row on its own
    stats = [(n.running_mean.clone(), n.running_var.clone()) for n in flow.norms]
    assert not torch.allclose(stats[0][0], torch.zeros(4, dtype=torch.float64))  # they were learned
    torch.save(flow.state_dict(), tmp_path / "flow.pt")
    again = MAF(4, hidden=[12, 12], layers=3, seed=0).double()
    again.load_state_dict(torch.load(tmp_path / "flow.pt", weights_only=True))
    again.eval()
    assert torch.equal(again.log_prob(x), flow.log_prob(x))
    for norm, (mean, var) in zip(again.norms, stats, strict=True):
        assert torch.equal(norm.running_mean, mean) and torch.equal(norm.running_var, var)


def test_batch_norm_trains_on_the_batch_and_inverts_with_its_statistics() -> None:
    norm = BatchNormLayer(3).double()
    x = 3 + 2 * torch.randn(500, 3, dtype=torch.float64)
    u, _ = norm(x)
    assert torch.allclose(u.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(norm.running_mean, norm.momentum * x.mean(0))
    norm.eval()
    u, log_det = norm(x)
    assert torch.allclose(norm.inverse(u), x, atol=1e-12)
    assert torch.allclose(log_det[0], -0.5 * torch.log(norm.running_var + norm.eps))


def test_an_untrained_flow_is_the_standardising_map() -> None:
    flow = MAF(3, hidden=[8], layers=2, seed=0).double().eval()
    train = 4 + 3 * torch.randn(1000, 3, dtype=torch.float64)
    flow.fit_inputs(train)
    u, log_det = flow.transform(train[:10])
    z = (train[:10] - train.mean(0)) / train.std()  # one scale for every dimension
    bn = (1 + 1e-5) ** -0.5
    assert torch.allclose(u, z * bn**2, atol=1e-12)
    assert torch.allclose(log_det, (3 * (-train.std().log() + 2 * math.log(bn))).expand(10), atol=1e-12)


@pytest.mark.parametrize("base", ["normal", "mog"])
def test_exact_completion_of_a_prefix_keeps_the_observed_part_and_follows_the_conditional(base) -> None:
    """With one ordering in every layer, the completion of x_2 given x_1 follows p(x_2 | x_1):
    its histogram against the conditional density on a fine grid, total variation < 0.05."""
    flow = _flow(2, flow_ordering="same", base=base, components=2)
    x1 = torch.tensor(0.7, dtype=torch.float64)
    n = 20000
    x = torch.stack([x1.expand(n), torch.zeros(n, dtype=torch.float64)], 1)
    observed = torch.tensor([[True, False]]).expand(n, 2)
    done = flow.complete(x, observed, generator=torch.Generator().manual_seed(0))
    assert torch.equal(done[:, 0], x[:, 0])
    side = torch.linspace(-12, 12, 4801, dtype=torch.float64)
    grid = torch.stack([x1.expand_as(side), side], 1)
    joint = flow.log_prob(grid).detach().exp()
    cond = joint / (joint.sum() * (side[1] - side[0]))
    bulk = torch.arange(2000, 2801, 100)  # x_2 from -2 to 2
    cond_log = flow.conditional_log_prob(grid[bulk], observed[: len(bulk)])
    assert torch.allclose(cond_log.exp(), cond[bulk], rtol=1e-4)  # against a Riemann sum
    edges = torch.linspace(-4, 4, 33, dtype=torch.float64)
    hist = torch.histogram(done[:, 1], edges).hist / n
    mass = torch.stack([cond[(side >= a) & (side < b)].sum() for a, b in itertools.pairwise(edges)]) * (
        side[1] - side[0]
    )
    assert 0.5 * float((hist - mass).abs().sum()) < 0.05


def test_completion_is_refused_where_the_layers_do_not_generate_the_observed_part_first() -> None:
    flow = _flow(4)  # orderings reverse between layers
    observed = torch.tensor([[True, True, False, False]])
    with pytest.raises(ValueError, match=r"flow\.ordering: reverse"):
        flow.complete(torch.zeros(1, 4, dtype=torch.float64), observed)
    assert torch.isnan(flow.conditional_log_prob(torch.zeros(1, 4, dtype=torch.float64), observed)).all()
    same = _flow(4, flow_ordering="same")
    with pytest.raises(ValueError, match="prefix"):
        same.complete(torch.zeros(1, 4, dtype=torch.float64), observed.flip(1))
    one = _flow(4, layers=1)  # one layer: the same advice as a flow of one ordering
    with pytest.raises(ValueError, match="prefix"):
        one.complete(torch.zeros(1, 4, dtype=torch.float64), observed.flip(1))


def test_orderings_across_layers() -> None:
    reverse = MAF(6, hidden=[8], layers=3, ordering="random", seed=0, base="mog")
    ranks = [net.ranks[0] for net in reverse.made_nets()]
    assert len(ranks) == 4 and not torch.equal(ranks[0], torch.arange(1, 7))
    assert all(torch.equal(b, 7 - a) for a, b in itertools.pairwise(ranks))
    same = MAF(6, hidden=[8], layers=3, ordering="random", flow_ordering="same", seed=0)
    assert all(torch.equal(net.ranks, same.layers[0].made.ranks) for net in same.made_nets())
    rand = MAF(6, hidden=[8], layers=3, flow_ordering="random", seed=0)
    assert len({tuple(net.ranks[0].tolist()) for net in rand.made_nets()}) == 3


def test_alpha_is_bounded_so_extreme_weights_stay_finite() -> None:
    flow = _flow(3, shake=0.0)
    with torch.no_grad():
        for layer in flow.layers:
            layer.made.output.bias[3:].fill_(1e4)  # raw alpha; alpha = 7 tanh(raw / 7) = 7
    x = torch.randn(8, 3, dtype=torch.float64)
    assert torch.isfinite(flow.log_prob(x)).all()
    u, _ = flow.transform(x)  # every layer contracts by e^-7: u holds x to about 1e-16 * e^21
    assert torch.allclose(flow.inverse(u), x, atol=1e-6)


def test_a_float32_flow_trains_to_a_lower_loss() -> None:
    flow = MAF(4, hidden=[16], layers=2, seed=0)
    x = torch.randn(256, 4) @ torch.tensor([[1.0, 0.5, 0, 0], [0, 1, 0.5, 0], [0, 0, 1, 0.5], [0, 0, 0, 1]])
    flow.fit_inputs(x)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    before = float(flow(x, 0, 1).mean().detach())
    for step in range(50):
        opt.zero_grad()
        flow(x, step, 1).mean().backward()
        opt.step()
    assert float(flow(x, 0, 1).mean().detach()) < before - 0.1


def test_batch_statistics_only_where_training_takes_a_gradient() -> None:
    """In training mode the loss normalises by the batch; log_prob, transform and inverse without
    a gradient read the saved statistics and leave them alone, so they agree and invert."""
    flow = _flow(3).train()
    x = 3 + torch.randn(50, 3, dtype=torch.float64)
    saved = [n.running_mean.clone() for n in flow.norms]
    with torch.no_grad():
        u, _ = flow.transform(x)
        assert torch.allclose(flow.inverse(u), x, atol=1e-10)
        flow.log_prob(x)
    assert all(torch.equal(n.running_mean, m) for n, m in zip(flow.norms, saved, strict=True))
    loss = flow(x, 0, 1)  # the training loss: the batch's statistics, which move the averages
    assert not torch.allclose(loss, -flow.eval().log_prob(x).detach())
    assert not torch.equal(flow.norms[0].running_mean, saved[0])


def test_a_one_dimensional_flow_integrates_to_one_and_inverts() -> None:
    flow = _flow(1, layers=2, hidden=[6])
    grid = torch.linspace(-30, 30, 60001, dtype=torch.float64)[:, None]
    assert abs(float(flow.log_prob(grid).detach().exp().sum()) * 1e-3 - 1) < 1e-4
    x = torch.randn(7, 1, dtype=torch.float64)
    assert torch.allclose(flow.inverse(flow.transform(x)[0]), x, atol=1e-12)


def test_a_class_conditional_mog_base_fits_without_labels_with_a_uniform_prior() -> None:
    flow = MAF(3, [8], layers=2, base="mog", components=2, classes=2).double()
    flow.fit_inputs(torch.randn(20, 3, dtype=torch.float64))
    assert torch.allclose(flow.base.label_log_prior.exp(), torch.full((2,), 0.5, dtype=torch.float64))


def test_labels_are_checked_where_they_enter() -> None:
    flow = _flow(2, classes=3)
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="pass labels"):
        flow.log_prob(x)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2"):
        flow.conditional_log_prob(x, torch.ones(4, 2, dtype=torch.bool), Condition(torch.full((4,), 5)))
    with pytest.raises(ValueError, match=r"one label or \(4,\)"):
        flow.log_prob(x, Condition(torch.zeros(3, dtype=torch.long)))
    ones = Condition(torch.ones(4, dtype=torch.long))
    assert torch.equal(flow.log_prob(x, Condition(1)), flow.log_prob(x, ones))


# -- the commands on a flow -----------------------------------------------------------------------
runner = CliRunner()
TINY_FLOW = (
    "name: tiny-maf\ndata: {name: toy, size: 600}\nmodel: {kind: maf, hidden: [16, 16]}\n"
    "flow: {layers: 2, ordering: %s}\ntrain: {epochs: 3, batch_size: 50, lr: 0.005}\n"
)


def _train_flow(tmp_path: Path, ordering: str = "reverse", *extra: str) -> Path:
    config = tmp_path / f"maf-{ordering}.yaml"
    config.write_text(TINY_FLOW % ordering)
    run = tmp_path / "runs" / f"maf-{ordering}"
    result = runner.invoke(app, ["train", str(config), "--run-dir", str(run), *extra])
    assert result.exit_code == 0, result.output
    assert "MAF 2 layers" in result.output and "exact, MAF of 2 layers" in result.output
    return run


def test_a_flow_through_every_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = _train_flow(tmp_path)
    report = json.loads(runner.invoke(app, ["evaluate", str(run), "--json"]).stdout)
    assert report["estimator"] == "exact, MAF of 2 layers" and report["bits_per_dim"] is None
    assert report["nll_nats"] < 2.4  # below the independent Gaussians' 2.5 nats on two moons
    loaded = load_run(run)
    result = runner.invoke(app, ["sample", str(run), "--n", "500"])
    assert result.exit_code == 0, result.output
    samples = np.load(run / "samples" / "seed0-n500.npy")
    assert samples.shape == (500, 2) and samples.dtype == np.float32
    with Image.open(run / "samples" / "seed0-n500.png") as picture:  # density beside samples
        assert picture.width > 2 * picture.height * 0.8
    again = loaded.model.sample(500, generator=torch.Generator().manual_seed(0))
    assert np.allclose(samples, again.numpy(), atol=1e-6)  # `made sample` draws what the API draws
    result = runner.invoke(app, ["verify-ar", str(run)])
    assert result.exit_code == 0 and "whole flow" in result.output, result.output
    saved = json.loads((run / "verify-ar.json").read_text())
    assert saved["ok"] and [r["step"] for r in saved["rows"]] == [0, 1, "whole flow"]
    result = runner.invoke(app, ["complete", str(run), "--n", "3"])
    assert result.exit_code == 2 and "flow.ordering: reverse" in result.stderr
    assert result.stderr.count("\n") == 1
    result = runner.invoke(app, ["runs", "--long"])
    assert result.exit_code == 0 and "MAF(2) [16, 16]" in result.output


def test_a_flow_with_one_ordering_completes_an_observed_prefix_exactly(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = _train_flow(tmp_path, "same")
    result = runner.invoke(app, ["complete", str(run), "--mask", "top", "--n", "5", "--per-image", "3"])
    assert result.exit_code == 0, result.output
    assert "exact" in result.output
    saved = np.load(run / "completions" / "top-seed0-n5.npz")
    assert saved["exact"].all() and saved["completions"].shape == (5, 3, 2)
    assert np.array_equal(saved["completions"][:, :, 0], np.repeat(saved["originals"][:, None, 0], 3, 1))
    result = runner.invoke(app, ["complete", str(run), "--mask", "bottom", "--n", "2"])
    assert result.exit_code == 2 and "prefix" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.kind=maf"], "model.kind: maf models real values, but data.values is binary"),
        (["data.name=toy", "model.kind=maf", "flow.layers=0"], "flow.layers must be at least 1"),
        (["data.name=toy", "flow.layers=3"], "the flow section is for model.kind: maf"),
        (["data.name=toy", "model.kind=maf", "model.head=mog"], "set flow.base: mog"),
        (["data.name=toy", "model.kind=maf", "model.num_masks=2", "model.ordering=random"], "needs 1"),
        (
            ["data.name=toy", "model.kind=maf", "data.values=binary"],
            "data.values: binary is not available for toy",
        ),
    ],
)
def test_bad_flow_configs_give_exit_2_and_one_line(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("name: bad\n")
    result = runner.invoke(app, ["train", str(config), *overrides, "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_class_conditional_flow_samples_a_named_class(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = _train_flow(tmp_path, "reverse", "model.condition_on=label", "flow.base=mog", "model.components=2")
    report = json.loads(runner.invoke(app, ["evaluate", str(run), "--json"]).stdout)
    assert (
        report["estimator"].endswith("given the label") and report["marginal_nll_nats"] > report["nll_nats"]
    )
    result = runner.invoke(app, ["sample", str(run), "--n", "200", "--label", "1"])
    assert result.exit_code == 0, result.output
    lower_moon = np.load(run / "samples" / "seed0-n200-label1.npy")
    assert lower_moon[:, 1].mean() < 0.25  # the lower moon (centre 0.5 - 2/pi); the upper's is +0.64
