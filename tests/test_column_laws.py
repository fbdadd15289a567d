"""A table's real-column laws (heads.RealColumns): normalised, sampled by their law, bounded; and
the MADE that reads categories and missing cells by its embedding (made.MADE.embedded)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from made_cli import degrees as deg
from made_cli import sampling, verify
from made_cli.config import load_config
from made_cli.heads import ColumnHeads, ColumnLaw, MixtureOfGaussians, RealColumns
from made_cli.kinds import build_model

# y = (g(x) - shift) / scale; low, high: the training range of y
LAWS = {
    "standardised": ColumnLaw(shift=1.0, scale=2.0, low=-2.0, high=3.0),
    "truncated at 0": ColumnLaw(shift=1.0, scale=2.0, lower=0.0, low=-0.5, high=3.0),
    "log scale": ColumnLaw(shift=0.5, scale=0.8, log=True, low=-2.5, high=2.5),
    "point mass at 0, truncated": ColumnLaw(shift=1.0, scale=1.5, lower=0.0, mass=0.0, low=-0.6, high=3.0),
    "point mass at 2, log": ColumnLaw(shift=0.5, scale=0.8, log=True, mass=2.0, low=-2.0, high=2.0),
    "grid of 0.5 from 0": ColumnLaw(
        shift=2.0, scale=1.5, step=0.5, origin=0.0, lower=0.0, low=-1.3, high=3.0
    ),
    "grid of 0.25, unbounded": ColumnLaw(shift=0.0, scale=1.0, step=0.25, origin=-0.75, low=-3.0, high=3.0),
}


def _law_params(law: ColumnLaw, rows: int = 1, seed: int = 0) -> tuple[RealColumns, torch.Tensor]:
    head = RealColumns([law], components=3)
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(1, head.params_per_dim, 1, generator=g, dtype=torch.float64) * 1.5
    return head, params.expand(rows, -1, -1)


def _support(law: ColumnLaw) -> torch.Tensor:
    """Points to integrate over (a fine grid), or the grid's values."""
    if law.step is not None:
        first = law.lower if law.lower is not None else law.origin - 200 * law.step
        return first + law.step * torch.arange(1200, dtype=torch.float64)
    if law.log:
        return torch.logspace(-12, 6, 400001, dtype=torch.float64)
    low = law.lower if law.lower is not None else -80.0
    return torch.linspace(low, 80.0, 400001, dtype=torch.float64)


@pytest.mark.parametrize("name", LAWS)
def test_each_law_sums_or_integrates_to_one(name: str) -> None:
    law = LAWS[name]
    for seed in range(3):
        points = _support(law)
        head, params = _law_params(law, len(points), seed)
        with torch.no_grad():
            logp = head.log_prob(params, points[:, None])[:, 0]
        if law.step is not None:
            total = float(logp.exp().sum())
        else:
            off = points != law.mass if law.mass is not None else torch.ones_like(points, dtype=torch.bool)
            total = float(torch.trapezoid(logp[off].exp(), points[off]))
            if law.mass is not None:
                at = torch.tensor([[law.mass]], dtype=torch.float64)
                total += float(head.log_prob(params[:1], at).exp())
        assert total == pytest.approx(1.0, abs=2e-3), (name, seed)


@pytest.mark.parametrize("name", LAWS)
def test_draws_follow_the_law_and_respect_its_support(name: str) -> None:
    law = LAWS[name]
    n = 40000
    head, params = _law_params(law, n, seed=1)
    u = torch.rand(n, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        x = head.draw(params[:, :, 0], u)
    assert torch.isfinite(x).all()
    if law.lower is not None:
        assert bool((x >= law.lower).all())
    if law.log:
        assert bool((x > 0).all())
    if law.step is not None:  # on the grid, and each value as often as its probability
        k = (x - law.origin) / law.step
        assert torch.allclose(k, k.round(), atol=1e-9)
        values, counts = torch.unique(x, return_counts=True)
        with torch.no_grad():
            p = head.log_prob(params[: len(values)], values[:, None])[:, 0].exp()
        assert 0.5 * float((counts / n - p).abs().sum() + (1 - p.sum())) < 0.02
        return
    if law.mass is not None:
        with torch.no_grad():
            p_mass = float(head.log_prob(params[:1], torch.tensor([[law.mass]], dtype=torch.float64)).exp())
        assert float((x == law.mass).double().mean()) == pytest.approx(p_mass, abs=0.01)
        x = x[x != law.mass]
    # the rest: bin probabilities from the density's integral (its CDF on a fine grid,
    # interpolated at the edges) against the draws' histogram
    points = _support(law)
    points = points[points != law.mass] if law.mass is not None else points
    with torch.no_grad():
        density = head.log_prob(params[:1].expand(len(points), -1, -1), points[:, None])[:, 0].exp()
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(density, points)])
    edges = torch.quantile(x, torch.linspace(0, 1, 21, dtype=torch.float64))
    at_edges = torch.from_numpy(np.interp(edges.numpy(), points.numpy(), cdf.numpy()))
    expected = at_edges.diff() / cdf[-1]
    observed = torch.histogram(x, edges).hist / len(x)
    assert 0.5 * float((observed - expected).abs().sum()) < 0.02


@pytest.mark.parametrize(
    "law",
    [
        ColumnLaw(shift=10.0, scale=3.0, low=-2.0, high=2.0),
        ColumnLaw(shift=1.0, scale=1.2, log=True, low=-2.0, high=2.5),
    ],
    ids=["standardised", "log scale"],
)
def test_bounds_keep_draws_near_the_training_range(law: ColumnLaw) -> None:
    """Means inside [low, high] and scales at most a third of the margin to the range widened by
    its width (in the file's units): with any parameters, even far past trained ones, at most
    0.14% of draws land beyond the widened range on either side."""
    head = RealColumns([law], components=4)
    n = 200000
    g = torch.Generator().manual_seed(0)
    params = torch.randn(n, head.params_per_dim, dtype=torch.float64, generator=g) * 50
    x = head.draw(params, torch.rand(n, 3, dtype=torch.float64, generator=g))
    g_of = (lambda v: math.exp(v)) if law.log else (lambda v: v)
    lowest, highest = g_of(law.shift + law.scale * law.low), g_of(law.shift + law.scale * law.high)
    width = highest - lowest
    for beyond in (x < lowest - width, x > highest + width):
        assert float(beyond.double().mean()) < 0.0014 + 0.0005  # sampling noise of 200,000 draws


def test_a_value_below_the_support_has_probability_zero() -> None:
    head, params = _law_params(LAWS["truncated at 0"], 2)
    logp = head.log_prob(params, torch.tensor([[-0.1], [0.2]], dtype=torch.float64))[:, 0]
    assert logp[0] == -math.inf and math.isfinite(float(logp[1]))
    head, params = _law_params(LAWS["log scale"], 1)
    assert head.log_prob(params, torch.tensor([[0.0]], dtype=torch.float64))[0, 0] == -math.inf


# -- the table MADE: embedding, missing cells, samplers -------------------------------------------
_MIXED = (
    ColumnLaw(levels=3),
    LAWS["point mass at 0, truncated"],
    ColumnLaw(levels=2),
    LAWS["grid of 0.5 from 0"],
    LAWS["standardised"],
    LAWS["log scale"],
)


def _model(*overrides: str, columns: tuple[ColumnLaw, ...] = _MIXED):
    cfg = load_config(None, ["data.name=table", "data.path=unused.csv", "model.hidden=[16, 16]",
                             "model.components=2", *overrides])  # fmt: skip
    model = build_model(cfg, len(columns), 0, columns=columns).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        model.net.mask_weights()
    return model.eval()


def _rows(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    wet = torch.rand(n, generator=g, dtype=torch.float64) * 4
    return torch.stack([
        torch.randint(0, 3, (n,), generator=g).double(),
        torch.where(torch.rand(n, generator=g) < 0.3, 0.0, wet),
        torch.randint(0, 2, (n,), generator=g).double(),
        0.5 * torch.randint(0, 8, (n,), generator=g).double(),
        torch.randn(n, generator=g, dtype=torch.float64),
        torch.rand(n, generator=g, dtype=torch.float64) * 5 + 0.1,
    ], 1)  # fmt: skip


def test_the_head_reads_the_laws_and_no_column_is_padded() -> None:
    """Each column has its own number of outputs (3 and 2 logits, a real column's mixture), not
    the widest column's: the output layer holds their sum, and the padding reads as zeros."""
    model = _model()
    assert isinstance(model.head, ColumnHeads) and isinstance(model.head.real, RealColumns)
    counts = model.head.column_params
    assert counts == (3, 7, 2, 7, 7, 7)  # 2 components: 6 numbers, and a point mass's logit
    assert model.net.output.out_features == sum(counts) and model.net.direct.out_features == sum(counts)
    params = model.params(_rows(4), 0)  # (B, P, D), P the widest
    padding = torch.arange(params.shape[1])[:, None] >= torch.tensor(counts)
    assert bool((params[:, padding] == 0).all()) and bool((params[:, ~padding] != 0).any())
    assert (
        model.net.embedding is not None and model.net.embedding.shape[0] == (3 + 1) + 1 + (2 + 1) + 1 + 1 + 1
    )


@pytest.mark.parametrize("ordering", ["natural", "random"])
def test_a_column_reaches_only_the_columns_generated_after_it(ordering: str) -> None:
    """Changing one cell (its category, its value, or blanking it) moves only the parameters of
    columns later in the ordering: the embedding keeps the autoregressive property."""
    model = _model(f"model.ordering={ordering}", "seed=3")
    ranks = model.net.ranks[0]
    x = _rows(6)
    base = model.params(x, 0)
    for j in range(x.shape[1]):
        for change in ("value", "missing"):
            y = x.clone()
            y[:, j] = (
                math.nan if change == "missing" else (y[:, j] + 1) % (3 if j == 0 else 2 if j == 2 else 5)
            )
            moved = (model.params(y, 0) - base).abs().amax((0, 1)) > 0  # per column
            assert not bool(moved[ranks <= ranks[j]].any()), (j, change)
            assert bool(moved[ranks > ranks[j]].any()) or int(ranks[j]) == len(ranks)


@pytest.mark.parametrize("masks", [1, 3])
def test_fast_and_naive_samplers_agree_on_a_table(masks: int) -> None:
    model = _model("model.ordering=random", f"model.num_masks={masks}")
    n = 64
    uniforms = torch.rand(n, 6, model.head.noise_per_dim, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(4))  # fmt: skip
    x = torch.zeros(n, 6, dtype=torch.float64)
    fill = torch.ones_like(x, dtype=torch.bool)
    for member in range(masks):
        args = (model.net, model.head, model.encoding, x, fill, member, uniforms)
        fast, naive = sampling.ancestral_fast(*args), sampling.ancestral_naive(*args)
        assert torch.allclose(fast, naive, atol=1e-9)
        assert bool((fast[:, 1] >= 0).all()) and bool((fast[:, 3] >= 0).all())


@pytest.mark.parametrize("masks", [1, 3])
def test_rows_with_missing_cells_score_their_observed_cells_normalised(masks: int) -> None:
    """With a cell missing, exp(log p) summed over the observed cells' values is 1: a law of the
    observed cells (given which are missing), for one mask and for the mixture."""
    columns = (ColumnLaw(levels=3), ColumnLaw(levels=2), ColumnLaw(levels=2), ColumnLaw(levels=3))
    model = _model("model.ordering=random", f"model.num_masks={masks}", columns=columns)
    for missing in ([1], [0, 3], [2]):
        grids = [torch.arange(c.levels, dtype=torch.float64) for c in columns]
        for d in missing:
            grids[d] = torch.tensor([math.nan], dtype=torch.float64)
        x = torch.cartesian_prod(*grids)
        with torch.no_grad():
            total = float(model.log_prob(x).exp().sum())
        assert total == pytest.approx(1.0, abs=1e-9), missing


def test_a_model_built_without_laws_keeps_its_old_parameters() -> None:
    """A run saved before laws were kept (legacy) has no embedding and the raw-scale mixture."""
    columns = (ColumnLaw(levels=3, legacy=True), ColumnLaw(legacy=True))
    model = _model(columns=columns)
    assert model.net.embedding is None and isinstance(model.head.real, MixtureOfGaussians)
    assert "embedding" not in model.state_dict()


@pytest.mark.parametrize("masks", [1, 3])
def test_a_tables_parts_sum_to_its_log_likelihood_with_missing_cells(masks: int) -> None:
    model = _model("model.ordering=random", f"model.num_masks={masks}")
    x = _rows(40, seed=5)
    x[::3, 0] = math.nan  # a category missing, a real value missing
    x[1::4, 3] = math.nan
    with torch.no_grad():
        parts = model.log_prob_parts(x)
        total = model.log_prob(x)
    assert torch.isfinite(total).all()
    assert torch.allclose(sum(parts.values()), total, atol=1e-9)


def test_verify_ar_checks_the_embedding_and_a_leak_through_it_fails() -> None:
    """verify-ar counts outputs that move when a category changes or a cell goes missing; a
    first-layer mask that lets a hidden unit read a later column (and so its vectors) fails."""
    model = _model("model.ordering=random", "seed=2")
    net = model.net
    (report,) = verify.verify_made(net, points=2)
    assert report.jacobian_violations == 0 and report.forbidden_paths == 0
    ranks = net.ranks[0]
    column = int(ranks.argmax())  # generated last: no unit may read it
    with torch.no_grad():  # every unit reads it (some unit is active at any point)
        net.layers[0].mask[:, column] = 1.0
        net.layers[0].sync_plan()
    allowed = deg.allowed(ranks).repeat(net.params_per_dim, 1)
    x = torch.rand(net.features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert verify.embedding_violations(net, x, None, allowed) > 0


def test_an_ensemble_samples_a_table_whose_placeholders_are_off_a_support() -> None:
    """Sampling starts from placeholders (0) that a log-scale column gives log p = -inf; an
    ensemble's choice of member must not turn them into NaN."""
    model = _model("model.ordering=random", "model.num_masks=3")
    x = model.sample(200, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all() and bool((x[:, 5] > 0).all())


def test_the_independent_baseline_spreads_as_the_column_does() -> None:
    """The baseline's one Gaussian per column starts at the column's own spread (a model's
    components are narrower on a log scale, to keep samples in range; the baseline's are not)."""
    law = ColumnLaw(shift=3.0, scale=1.0, log=True, low=-3.0, high=3.0)
    head = ColumnHeads([0], MixtureOfGaussians(5), [law])
    baseline = head.baseline()
    assert isinstance(baseline.real, RealColumns) and baseline.real.components == 1
    y = torch.randn(5000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).clamp(-3, 3)
    x = torch.exp(law.shift + law.scale * y)[:, None]
    bias = baseline.init_bias(x)
    _, _, log_scales = baseline.real._mixture(bias[None, : baseline.real.params_per_dim])
    assert float(log_scales.exp()) == pytest.approx(float(y.std()), rel=0.02)


@pytest.mark.parametrize("components", [1, 5])
def test_a_log_scale_column_can_spread_as_wide_as_it_is(components: int) -> None:
    """The bound on a component's scale is its own mean's distance to the widened range, so a
    central component may be as wide as the column: a log-normal column is fitted to its true
    entropy by one component as by five (not only by a comb of narrow ones)."""
    y = torch.randn(4000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    law = ColumnLaw(shift=2.0, scale=1.0, log=True, low=float(y.min()), high=float(y.max()))
    x = torch.exp(law.shift + law.scale * y)[:, None]
    head = RealColumns([law], components)
    params = head.init_bias(x)[None].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([params], lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = -head.log_prob(params.expand(len(x), -1, -1), x).mean()
        loss.backward()
        optimizer.step()
    truth = float((0.5 * y**2 + 0.5 * math.log(2 * math.pi) + law.shift + law.scale * y).mean())
    assert float(loss.detach()) == pytest.approx(truth, abs=0.02)
