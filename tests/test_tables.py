"""Tables in, scores out (tables.py, the table source of data.py, `made score`), on files the tests write."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from made_cli.cli import app
from made_cli.condition import Condition
from made_cli.config import load_config
from made_cli.data import load_dataset
from made_cli.errors import UsageError
from made_cli.heads import Categorical, ColumnHeads, ColumnLaw, Gaussian, MixtureOfGaussians
from made_cli.kinds import build_model
from made_cli.queries import run_data
from made_cli.runs import load_run
from made_cli.tables import read_table

runner = CliRunner()


def _shop(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A small mixed table: text and integer columns that depend on each other and a real one."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["food", "fuel", "toys"], n, p=[0.5, 0.3, 0.2])
    items = 1 + rng.poisson(np.where(kind == "food", 3.0, 0.5)).clip(max=6)
    amount = np.where(kind == "fuel", 40.0, 10.0) * items * np.exp(0.3 * rng.standard_normal(n))
    channel = np.where(rng.random(n) < np.where(kind == "toys", 0.8, 0.2), "online", "store")
    return {"id": np.arange(n), "channel": channel, "kind": kind, "items": items, "amount": amount.round(2)}


def _write(path: Path, data: dict[str, np.ndarray] | pa.Table) -> Path:
    table = data if isinstance(data, pa.Table) else pa.table(data)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pcsv.write_csv(
            table, path, write_options=pcsv.WriteOptions(delimiter="\t" if path.suffix == ".tsv" else ",")
        )
    return path


def _config(tmp_path: Path, path: Path, context: str = "") -> Path:
    """A config of the shop table: three columns given the channel (and ``context`` columns)."""
    config = tmp_path / f"{path.stem}-{path.suffix[1:]}.yaml"
    config.write_text(
        "name: shop\nseed: 0\n"
        f"data: {{name: table, path: {path}, columns: [kind, items, amount], label_column: channel, "
        f"context_columns: [{context}]}}\n"
        "model: {hidden: [24], condition_on: label, components: 3}\n"
        "train: {epochs: 2, batch_size: 50, lr: 0.01}\n"
    )
    return config


def _train(config: Path, run: Path, *overrides: str) -> Path:
    result = runner.invoke(app, ["train", str(config), *overrides, "--run-dir", str(run), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return run


def _score(*args: str) -> pa.Table:
    result = runner.invoke(app, ["score", *args])
    assert result.exit_code == 0, result.output
    out = next(a for a in reversed(result.output.split()) if a.endswith((".csv", ".parquet", ".tsv")))
    return read_table(Path(out))


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def shop_run(tmp_path: Path) -> Path:
    csv = _write(tmp_path / "shop.csv", _shop(600))
    return _train(_config(tmp_path, csv), tmp_path / "run")


# -- reading and typing ----------------------------------------------------------------------------
def test_columns_are_typed_from_the_file_and_the_schema_is_saved(shop_run: Path) -> None:
    run = load_run(shop_run)
    schema = run.table_schema
    assert schema is not None and schema.names == ("kind", "items", "amount")
    kinds = {c.name: (c.kind, c.categories) for c in schema.columns}
    assert kinds["kind"] == ("text", ("food", "fuel", "toys"))  # sorted: the codes' order
    assert (
        kinds["items"][0] == "integer" and kinds["items"][1] == tuple(range(1, 8))[: len(kinds["items"][1])]
    )
    assert kinds["amount"] == ("real", ())
    assert schema.class_names == ("online", "store")
    assert run.model.classes == 2 and isinstance(run.model.head, ColumnHeads)


def test_an_integer_column_with_more_values_than_max_levels_is_real(tmp_path: Path) -> None:
    csv = _write(tmp_path / "t.csv", _shop(300))
    cfg = load_config(_config(tmp_path, csv), ["data.max_levels=3"])
    dataset = load_dataset(cfg.data)
    assert dataset.table_schema is not None
    assert [c.kind for c in dataset.table_schema.columns] == ["text", "integer", "real"]
    assert dataset.column_levels == (3, 0, 0)
    items = dataset.table_schema.columns[1].law  # a law over the integers, not categories
    assert items is not None and items.step == 1 and items.lower == 0


def test_default_columns_are_the_numeric_ones_not_given_a_role(tmp_path: Path) -> None:
    csv = _write(tmp_path / "t.csv", _shop(300))
    cfg = load_config(None, ["data.name=table", f"data.path={csv}", "data.context_columns=[items]"])
    dataset = load_dataset(cfg.data)
    schema = dataset.table_schema
    assert schema is not None and schema.names == ("channel", "kind", "amount")  # text too
    assert schema.left_out == (("id", "one value per row, counting up: an identifier"),)
    assert dataset.context_features == 1 and cfg.model.head == "auto"


def test_the_seeded_split_is_80_10_10_and_a_split_column_is_obeyed(tmp_path: Path) -> None:
    data = _shop(1000)
    csv = _write(tmp_path / "t.csv", data)
    cfg = load_config(_config(tmp_path, csv))
    d = load_dataset(cfg.data)
    assert (d.train.shape[0], d.valid.shape[0], d.test.shape[0]) == (800, 100, 100)
    other = load_dataset(load_config(_config(tmp_path, csv), ["data.seed=1"]).data)
    assert not np.array_equal(d.split_codes, other.split_codes)
    data["part"] = np.array(["train"] * 700 + ["valid"] * 100 + ["test"] * 200)
    csv2 = _write(tmp_path / "t2.csv", data)
    d2 = load_dataset(load_config(_config(tmp_path, csv2), ["data.split_column=part"]).data)
    assert (d2.train.shape[0], d2.valid.shape[0], d2.test.shape[0]) == (700, 100, 200)
    assert torch.equal(d2.test, torch.from_numpy(_codes(data, 800)))  # the last 200 rows, in order


def _codes(data: dict[str, np.ndarray], start: int) -> np.ndarray:
    kinds = {"food": 0, "fuel": 1, "toys": 2}
    rows = slice(start, None)
    return np.stack(
        [[kinds[k] for k in data["kind"][rows]], data["items"][rows] - 1, data["amount"][rows]], 1
    ).astype(np.float32)


# -- the same table in every format ----------------------------------------------------------------
def test_a_csv_and_a_parquet_of_one_table_train_the_same_model_and_scores(tmp_path: Path) -> None:
    data = _shop(500)
    runs = {}
    for suffix in (".csv", ".parquet", ".tsv"):
        path = _write(tmp_path / f"shop{suffix}", data)
        runs[suffix] = _train(_config(tmp_path, path), tmp_path / f"run{suffix}")
    new = _write(tmp_path / "new.parquet", _shop(40, seed=5))
    scores = {s: np.asarray(_score(str(r), str(new))["log_prob"]) for s, r in runs.items()}
    assert np.array_equal(scores[".csv"], scores[".parquet"]) and np.array_equal(
        scores[".csv"], scores[".tsv"]
    )
    states = [torch.load(r / "checkpoints" / "best.pt", weights_only=True)["model"] for r in runs.values()]
    assert all(torch.equal(states[0][k], s[k]) for s in states[1:] for k in states[0])


# -- made score ------------------------------------------------------------------------------------
def test_score_equals_log_prob_row_by_row_whatever_the_column_order(shop_run: Path, tmp_path: Path) -> None:
    new = _shop(50, seed=3)
    shuffled = {k: new[k] for k in ("amount", "id", "items", "channel", "kind")}  # another order
    path = _write(tmp_path / "new.csv", shuffled)
    scored = _score(str(shop_run), str(path), "--out", str(tmp_path / "scored.parquet"))
    assert scored.column_names == [*shuffled, "log_prob", "missing"]  # every column copied through, in place
    assert np.array_equal(np.asarray(scored["id"]), new["id"])
    run = load_run(shop_run)
    rows = run.table_schema.encode(read_table(path), path)
    with torch.no_grad():
        expected = run.model.log_prob(rows.x, rows.given).double().numpy()
    np.testing.assert_allclose(np.asarray(scored["log_prob"]), expected, rtol=0, atol=1e-9)


def test_score_without_the_label_column_sums_the_label_out(shop_run: Path, tmp_path: Path) -> None:
    new = {k: v for k, v in _shop(30, seed=3).items() if k != "channel"}
    path = _write(tmp_path / "nolabel.csv", new)
    result = runner.invoke(app, ["score", str(shop_run), str(path)])
    assert result.exit_code == 0 and "label summed out over 2 classes" in result.output
    scored = read_table(shop_run / "scores" / "nolabel.csv")
    run = load_run(shop_run)
    x = run.table_schema.encode(read_table(path), path, labels=False).x
    with torch.no_grad():
        expected = run.model.marginal_log_prob(x).double().numpy()
    np.testing.assert_allclose(np.asarray(scored["log_prob"]), expected, atol=1e-9)


def test_flag_below_marks_rows_under_the_validation_quantile(shop_run: Path, tmp_path: Path) -> None:
    new = _shop(200, seed=4)
    new["amount"][:5] = 5000.0  # far outside anything seen
    path = _write(tmp_path / "new.csv", new)
    result = runner.invoke(app, ["score", str(shop_run), str(path), "--flag-below", "0.05"])
    assert result.exit_code == 0, result.output
    scored = read_table(shop_run / "scores" / "new.csv")
    run = load_run(shop_run)
    d = run_data(run)
    with torch.no_grad():
        valid = run.model.log_prob(d.valid, d.split_condition("valid")).double()
    threshold = float(torch.quantile(valid, 0.05))
    log_p = np.asarray(scored["log_prob"])
    assert np.array_equal(np.asarray(scored["outlier"]), log_p < threshold)
    assert np.asarray(scored["outlier"])[:5].all() and f"below {threshold:.2f} nats" in result.output


def test_an_npz_run_is_scored_from_an_npz_and_a_vae_names_its_k(tmp_path: Path) -> None:
    tiny = ["data.name=synthetic", "data.features=8", "data.size=300", "model.hidden=[16]", "train.epochs=1"]
    vae = [*tiny, "model.kind=iaf_vae", "iaf.latent=2", "iaf.encoder=[8]", "iaf.decoder=[8]", "iaf.context=2",
           "iaf.importance_samples=7"]  # fmt: skip
    for name, overrides in (("made", tiny), ("vae", vae)):
        config = tmp_path / "c.yaml"
        config.write_text("name: t\n")
        run = _train(config, tmp_path / name, *overrides)
        x = torch.bernoulli(torch.full((12, 8), 0.5))
        np.savez(tmp_path / "rows.npz", x=x.numpy())
        scored = _score(str(run), str(tmp_path / "rows.npz"))
        model = load_run(run).model
        with torch.no_grad():
            expected = model.log_prob(x, rows=torch.arange(12)).double().numpy()
        np.testing.assert_allclose(np.asarray(scored["log_prob"]), expected, atol=1e-9)
        assert np.array_equal(np.asarray(scored["row"]), np.arange(12))
        if name == "vae":
            assert set(np.asarray(scored["importance_samples"])) == {7}


def test_an_npz_without_labels_scores_with_the_label_summed_out(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("name: t\n")
    run = _train(config, tmp_path / "labelled", "data.name=synthetic", "data.features=8", "data.size=300",
                 "model.hidden=[16]", "train.epochs=1", "model.condition_on=label")  # fmt: skip
    x = torch.bernoulli(torch.full((6, 8), 0.5))
    np.savez(tmp_path / "rows.npz", x=x.numpy())
    scored = _score(str(run), str(tmp_path / "rows.npz"))
    with torch.no_grad():
        expected = load_run(run).model.marginal_log_prob(x, rows=torch.arange(6)).double().numpy()
    np.testing.assert_allclose(np.asarray(scored["log_prob"]), expected, atol=1e-9)


# -- the mixed head: exact, normalised, sampled by its law -------------------------------------------
def test_column_heads_are_each_columns_own_law() -> None:
    torch.manual_seed(1)
    head = ColumnHeads([3, 0, 2], MixtureOfGaussians(2))
    assert head.params_per_dim == 6 and head.noise_per_dim == 2 and not head.discrete
    params = torch.randn(5, 6, 3)
    x = torch.tensor([[0, 0.3, 1], [2, -1.0, 0], [1, 2.0, 1], [0, 0.0, 0], [2, 5.0, 1]])
    got = head.log_prob(params, x)
    assert torch.allclose(got[:, 0], Categorical(3).log_prob(params[:, :3, :1], x[:, :1])[:, 0])
    assert torch.allclose(got[:, 1], MixtureOfGaussians(2).log_prob(params[:, :, 1:2], x[:, 1:2])[:, 0])
    assert torch.allclose(got[:, 2], Categorical(2).log_prob(params[:, :2, 2:], x[:, 2:])[:, 0])
    assert head.invalid_values(x) is None
    assert "codes" in head.invalid_values(x + torch.tensor([0, 0, 1.0]))
    assert isinstance(head.baseline().real, Gaussian)


_REAL = ColumnLaw(shift=0.5, scale=2.0, low=-3.0, high=3.0)  # a real column, standardised


def _table_model(levels: tuple[int, ...], *overrides: str, context: int = 0, legacy: bool = False):
    """A float64 table MADE with random weights: ``levels`` per column (0: real, under ``_REAL``,
    or under the unbounded law of runs saved before laws were kept, with ``legacy``)."""
    cfg = load_config(None, ["data.name=table", "data.path=unused.csv", "model.hidden=[16, 16]", *overrides])
    real = ColumnLaw(legacy=True) if legacy else _REAL
    columns = tuple(ColumnLaw(levels=v, legacy=legacy) if v else real for v in levels)
    model = build_model(cfg, len(levels), 0, columns=columns, context=context).double()
    with torch.no_grad():  # random conditionals that depend on the earlier columns
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
        model.net.mask_weights()
    return model.eval()


@pytest.mark.parametrize(("masks", "legacy"), [(1, False), (3, False), (3, True)])
def test_the_mixed_model_sums_to_one_over_codes_and_integrates_to_one_over_a_real_column(
    masks: int, legacy: bool
) -> None:
    levels = (3, 0, 2)  # the real column in the middle: later columns depend on it
    model = _table_model(
        levels, f"model.num_masks={masks}", "model.ordering=random", "model.components=2", legacy=legacy
    )
    grid = torch.linspace(-100, 100, 100001, dtype=torch.float64)
    total = 0.0
    with torch.no_grad():
        for a, b in itertools.product(range(3), range(2)):
            x = torch.stack([torch.full_like(grid, a), grid, torch.full_like(grid, b)], 1)
            total += float(torch.trapezoid(model.log_prob(x).exp(), grid))
    assert abs(total - 1.0) < 1e-6


def test_parts_sum_to_the_log_likelihood_for_one_mask_and_for_an_ensemble() -> None:
    for masks in (1, 4):
        model = _table_model((3, 0, 2, 0), f"model.num_masks={masks}", "model.ordering=random")
        x = torch.tensor([[0, 0.5, 1, -0.2], [2, -1.0, 0, 3.0]], dtype=torch.float64)
        with torch.no_grad():
            parts = model.log_prob_parts(x)
            assert torch.allclose(sum(parts.values()), model.log_prob(x), atol=1e-12)
        assert ("mixture" in parts) == (masks > 1)
        if masks > 1:
            assert bool((parts["mixture"] <= 1e-12).all())  # H(p(k | x)) - log K


def test_samples_of_a_discrete_table_with_context_follow_the_model() -> None:
    """Fast sampler = naive sampler, and frequencies match exp(log p(x | c)) (TV < 0.02)."""
    levels = (2, 3, 4)
    model = _table_model(levels, "model.ordering=random", context=1)
    codes = torch.tensor(list(itertools.product(*(range(v) for v in levels))), dtype=torch.float64)
    c = torch.tensor([[0.7]], dtype=torch.float64)
    with torch.no_grad():
        p = model.log_prob(codes, Condition(context=c.expand(len(codes), 1))).exp()
        assert abs(float(p.sum()) - 1) < 1e-12
        n = 30000
        u = model.noise(n, torch.Generator().manual_seed(0))
        fast = model.sample(n, uniforms=u, given=Condition(context=c.expand(n, 1)))
        naive = model.sample(200, uniforms=u[:200], fast=False, given=Condition(context=c.expand(200, 1)))
    assert torch.equal(fast[:200], naive)
    index = (fast * torch.tensor([12.0, 4.0, 1.0], dtype=torch.float64)).sum(1).long()
    freq = torch.bincount(index, minlength=len(codes)).double() / n
    assert 0.5 * float((freq - p).abs().sum()) < 0.02


# -- context columns -------------------------------------------------------------------------------
def test_context_columns_condition_made_and_the_flow(tmp_path: Path) -> None:
    data = _shop(600)
    data["hour"] = np.random.default_rng(1).integers(0, 24, 600)
    csv = _write(tmp_path / "ctx.csv", data)
    for kind, extra in (("made", []), ("maf", ["model.kind=maf", "model.direct=false"])):
        config = _config(tmp_path, csv)
        run_dir = _train(config, tmp_path / kind, "data.context_columns=[hour]", *extra)
        run = load_run(run_dir)
        assert run.model.context_features == 1 and "given 1 context column" in run.model.estimator
        sampled = runner.invoke(app, ["sample", str(run_dir), "--n", "20", "--label", "online"])
        assert sampled.exit_code == 0, sampled.output
        table = read_table(run_dir / "samples" / "seed0-n20-labelonline.csv")
        assert table.column_names == ["kind", "items", "amount", "channel", "hour"]
        assert set(np.asarray(table["channel"])) == {"online"}
        assert set(np.asarray(table["kind"])) <= {"food", "fuel", "toys"}
        test_hours = run_data(run).split_context("test")
        assert set(np.asarray(table["hour"]).tolist()) <= set(test_hours[:, 0].tolist())
        missing = _write(tmp_path / "noctx.csv", {k: v for k, v in data.items() if k != "hour"})
        refused = runner.invoke(app, ["score", str(run_dir), str(missing)])
        assert refused.exit_code == 2 and "no column 'hour'" in refused.stderr


def test_a_flow_dequantises_discrete_columns_and_says_so(shop_run: Path, tmp_path: Path) -> None:
    csv = tmp_path / "shop.csv"
    run_dir = _train(_config(tmp_path, csv), tmp_path / "flow", "model.kind=maf", "model.direct=false")
    run = load_run(run_dir)
    assert "dequantised by uniform noise" in run.model.estimator
    assert len(run.model.estimator) < 120  # was 172 characters here
    assert "dequantised" not in run.model.sampler_name() and "floored" in run.model.sampler_name()
    x = run_data(run).test[:30]
    y = run_data(run).split_condition("test").rows(slice(0, 30))
    with torch.no_grad():
        whole = run.model.log_prob(x, y, rows=torch.arange(30))
        first, second = y.rows(slice(0, 15)), y.rows(slice(15, 30))
        halves = torch.cat([run.model.log_prob(x[:15], first, rows=torch.arange(15)),
                            run.model.log_prob(x[15:], second, rows=torch.arange(15, 30))])  # fmt: skip
        samples = run.model.sample(200, torch.Generator().manual_seed(0), given=Condition(0))
    assert torch.equal(whole, halves)  # a row's noise is its own, whatever the batch
    levels = torch.tensor(run.table_schema.column_levels, dtype=torch.float32)
    discrete = samples[:, levels > 0]
    assert bool(
        (discrete == discrete.round()).all()
        and (discrete >= 0).all()
        and (discrete < levels[levels > 0]).all()
    )
    completed = runner.invoke(app, ["complete", str(run_dir), "--mask", "top"])
    assert completed.exit_code == 2 and "dequantises" in completed.stderr


# -- the saved split and standardisation -------------------------------------------------------------
def test_split_and_standardisation_come_from_the_training_rows_and_are_reused(
    shop_run: Path, tmp_path: Path
) -> None:
    run = load_run(shop_run)
    saved = np.load(shop_run / "split.npy")
    assert np.array_equal(saved, run.checkpoint["table"]["split"].numpy())
    d = run_data(run)
    assert bool(run.model.input_log[2]) and not bool(run.model.input_log[:2].any())  # amount: log scale
    seen = d.train.clone()
    seen[:, 2] = seen[:, 2].log()  # the network sees a log-scale column on its log scale
    assert torch.allclose(run.model.input_shift, seen.mean(0))
    assert torch.allclose(run.model.input_scale, seen.std(0))  # per column, from train alone
    everything = torch.cat([d.train, d.valid, d.test])
    everything[:, 2] = everything[:, 2].log()
    assert not torch.allclose(run.model.input_shift, everything.mean(0))
    result = runner.invoke(app, ["train", "--resume", str(shop_run), "train.epochs=3"])
    assert result.exit_code == 0, result.output
    resumed = load_run(shop_run, which="last")
    assert np.array_equal(resumed.checkpoint["table"]["split"].numpy(), saved)
    csv = tmp_path / "shop.csv"
    csv.write_text(csv.read_text() + "600,store,food,2,20.5\n")  # the file changes
    before = _snapshot(shop_run)
    for command in (["evaluate", str(shop_run)], ["train", "--resume", str(shop_run), "train.epochs=4"]):
        refused = runner.invoke(app, command)
        assert refused.exit_code == 2 and "has changed since the run was trained" in refused.stderr, command
    assert _snapshot(shop_run) == before  # the refused resumption is not even in the run's log


def test_evaluate_reports_the_discrete_and_real_parts(shop_run: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(shop_run), "--json"])
    report = json.loads(result.output)
    assert report["values"] == "mixed" and report["bits_per_dim"] is None
    parts = report["discrete_nll_nats"] + report["continuous_nll_nats"]
    assert abs(parts - report["nll_nats"]) < 1e-4 and report["discrete_nll_nats"] > 0


# -- bad input: exit 2, one line naming the file, the column and the first offending row ---------------
BAD_TABLES = [
    ("ragged.csv", "id,channel,kind,items,amount\n1,store,food,2,3.5\n2,store,food\n", "line 3 has 3 fields"),
    ("empty.csv", "", "is empty"),
    ("header.csv", "id,channel,kind,items,amount\n", "has a header but no rows"),
    ("text.csv", "id,channel,kind,items,amount\n1,store,food,2,3.5\n2,online,fuel,1,oops\n3,store,food,1,2\n",
     "column 'amount', row 2: 'oops' is not a number"),
    ("nan.csv", "id,channel,kind,items,amount\n1,store,food,2,3.5\n2,,fuel,1,2\n3,online,food,1,2\n",
     "label column 'channel', row 2: the value is missing; a model is given its label"),
    ("inf.csv", "id,channel,kind,items,amount\n1,store,food,2,3.5\n2,online,fuel,1,2\n3,store,toys,1,-inf\n",
     "column 'amount', row 3: -inf is not finite"),
    ("oneclass.csv", "id,channel,kind,items,amount\n1,store,food,2,3.5\n2,store,fuel,1,2\n3,store,toys,1,2\n",
     "label column 'channel' has one class ('store')"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "message"), BAD_TABLES)
def test_a_bad_table_is_exit_2_with_one_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = runner.invoke(app, ["train", str(_config(tmp_path, path)), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.stderr and str(path) in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_file_whose_extension_lies_is_refused(tmp_path: Path) -> None:
    parquet = _write(tmp_path / "real.parquet", _shop(20))
    lying_csv = tmp_path / "lies.csv"
    lying_csv.write_bytes(parquet.read_bytes())
    lying_parquet = _write(tmp_path / "lies.parquet.csv", _shop(20)).rename(tmp_path / "lies.parquet")
    for path, message in ((lying_csv, "is a Parquet file, but its extension says CSV"),
                          (lying_parquet, "is not a Parquet file")):  # fmt: skip
        with pytest.raises(UsageError, match=message):
            read_table(path)


def test_score_refuses_bad_rows_and_changes_nothing_in_the_run(shop_run: Path, tmp_path: Path) -> None:
    good = _shop(10, seed=9)
    cases = {
        "missing.csv": ({k: v for k, v in good.items() if k != "items"}, "has no column 'items'"),
        "fraction.csv": ({**good, "items": np.array([1.5] + [1.0] * 9)},
                         "column 'items', row 1: 1.5 is not an integer"),
    }  # fmt: skip
    before = _snapshot(shop_run)
    for name, (data, message) in cases.items():
        path = _write(tmp_path / name, data)
        result = runner.invoke(app, ["score", str(shop_run), str(path)])
        assert result.exit_code == 2 and message in result.stderr and name in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    for args, message in (
        (["--flag-below", "1.5"], "--flag-below must be between 0 and 1"),
        (["--out", str(tmp_path / "x.json")], "--out must end in .csv, .tsv or .parquet"),
    ):
        result = runner.invoke(app, ["score", str(shop_run), str(_write(tmp_path / "ok.csv", good)), *args])
        assert result.exit_code == 2 and message in result.stderr, result.stderr
    np.savez(tmp_path / "rows.npz", x=np.zeros((3, 3)))
    result = runner.invoke(app, ["score", str(shop_run), str(tmp_path / "rows.npz")])
    assert result.exit_code == 2 and "trained on a table" in result.stderr
    assert _snapshot(shop_run) == before


def test_sample_takes_a_class_by_name_and_refuses_an_unknown_one(shop_run: Path) -> None:
    ok = runner.invoke(app, ["sample", str(shop_run), "--n", "6", "--label", "store"])
    assert ok.exit_code == 0, ok.output
    table = read_table(shop_run / "samples" / "seed0-n6-labelstore.csv")
    assert set(np.asarray(table["channel"])) == {"store"}
    bad = runner.invoke(app, ["sample", str(shop_run), "--label", "phone"])
    assert bad.exit_code == 2 and "--label must be one of online, store (got phone)" in bad.stderr


def test_complete_writes_a_tables_completions_in_its_own_values(shop_run: Path) -> None:
    result = runner.invoke(app, ["complete", str(shop_run), "--mask", "top", "--n", "4", "--per-image", "2"])
    assert result.exit_code == 0 and "completed 4 test rows x 2" in result.output, result.output
    assert "exact: the ordering generates the observed cells first" in result.output
    table = read_table(shop_run / "completions" / "top-seed0-n4.csv")
    assert table.column_names == ["test_row", "version", "kind", "items", "amount", "channel"]
    versions = np.asarray(table["version"]).reshape(4, 3)
    assert (versions == ["original", "completion 1", "completion 2"]).all()
    kinds = np.asarray(table["kind"]).reshape(4, 3)  # the observed first column is kept
    assert (kinds == kinds[:, :1]).all() and set(kinds.ravel()) <= {"food", "fuel", "toys"}


def test_verify_ar_checks_a_table_model_with_its_context(tmp_path: Path) -> None:
    data = _shop(300)
    data["hour"] = np.random.default_rng(1).integers(0, 24, 300)
    config = _config(tmp_path, _write(tmp_path / "v.csv", data), context="hour")
    for target in (config, _train(config, tmp_path / "run")):
        result = runner.invoke(app, ["verify-ar", str(target)])
        assert result.exit_code == 0 and "all 1 mask(s) satisfy the autoregressive property" in result.output


# -- what the review found ---------------------------------------------------------------------------
def test_a_flows_evaluation_noise_is_a_function_of_the_row(shop_run: Path, tmp_path: Path) -> None:
    """Noise is added (log p differs from the density at the codes themselves), and equal rows
    score the same wherever they stand, in whatever batch."""
    run_dir = _train(_config(tmp_path, tmp_path / "shop.csv"), tmp_path / "flow", "model.kind=maf")
    model = load_run(run_dir).model
    x = run_data(load_run(run_dir)).test[:6]
    y = Condition(torch.zeros(6, dtype=torch.long))
    with torch.no_grad():
        scored = model.log_prob(x, y)
        at_codes = model.log_prob_dims(x, y).sum(-1)
        assert not torch.allclose(scored, at_codes)
        seven = Condition(torch.zeros(7, dtype=torch.long))
        repeated = model.log_prob(torch.cat([x[3:], x[:3], x[:1]]), seven)
    assert torch.equal(repeated[3:6], scored[:3]) and repeated[6] == scored[0]


def test_context_columns_are_standardised_from_training_rows_and_matter(tmp_path: Path) -> None:
    data = _shop(600)
    data["hour"] = np.where(data["kind"] == "fuel", 7, 19) + np.random.default_rng(1).integers(-2, 3, 600)
    run_dir = _train(_config(tmp_path, _write(tmp_path / "c.csv", data), context="hour"), tmp_path / "run")
    run = load_run(run_dir)
    d = run_data(run)
    train_hours = d.split_context("train")
    assert torch.allclose(run.model.context_shift, train_hours.mean(0))
    assert torch.allclose(run.model.context_scale, train_hours.std(0))
    x, y = d.test[:50], d.split_labels("test")[:50]
    with torch.no_grad():
        morning = run.model.log_prob(x, Condition(y, torch.full((50, 1), 7.0)))
        evening = run.model.log_prob(x, Condition(y, torch.full((50, 1), 19.0)))
    fuel = x[:, 0] == 1  # fuel at 7, the rest at 19: the context says which kind is likely
    assert (morning[fuel] > evening[fuel]).float().mean() > 0.8
    assert (evening[~fuel] > morning[~fuel]).float().mean() > 0.8


def test_a_vae_score_prints_its_k(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("name: t\n")
    overrides = ["data.name=synthetic", "data.features=8", "data.size=300", "model.hidden=[16]",
                 "train.epochs=1", "model.kind=iaf_vae", "iaf.latent=2", "iaf.encoder=[8]", "iaf.decoder=[8]",
                 "iaf.context=2", "iaf.importance_samples=7"]  # fmt: skip
    run = _train(config, tmp_path / "vae", *overrides)
    np.savez(tmp_path / "rows.npz", torch.bernoulli(torch.full((5, 8), 0.5)).numpy())  # one array, unnamed
    result = runner.invoke(app, ["score", str(run), str(tmp_path / "rows.npz")])
    assert result.exit_code == 0 and "[importance-weighted, K=7 samples per row" in result.output, (
        result.output
    )


def test_a_two_column_table_with_a_discrete_column_samples_with_a_pair_plot(tmp_path: Path) -> None:
    """No density grid over a discrete column: the picture is the pair plot of data and samples."""
    data = {k: v for k, v in _shop(300).items() if k in ("kind", "amount")}
    path = _write(tmp_path / "two.csv", data)
    config = tmp_path / "two.yaml"
    config.write_text(f"name: two\ndata: {{name: table, path: {path}, columns: [kind, amount]}}\n"
                      "model: {hidden: [8]}\ntrain: {epochs: 1}\n")  # fmt: skip
    run_dir = _train(config, tmp_path / "run")
    result = runner.invoke(app, ["sample", str(run_dir), "--n", "10"])
    assert result.exit_code == 0, result.output
    assert sorted(p.suffix for p in (run_dir / "samples").iterdir()) == [".csv", ".npy", ".png"]


def test_types_from_other_writers_are_read(tmp_path: Path) -> None:
    """Parquet dictionaries (pandas categories), decimals and big integers; text columns that are
    categories with numbers among them; a score file whose text codes look like numbers."""
    import decimal

    n = 40
    rng = np.random.default_rng(0)
    size = rng.choice(["S", "M", "L", "8", "10"], n)
    table = pa.table({
        "size": pa.array(size).dictionary_encode(),
        "price": pa.array([decimal.Decimal(f"{v:.2f}") for v in rng.uniform(1, 9, n)], pa.decimal128(6, 2)),
        "code": pa.array(2**60 + rng.integers(0, 3, n) * 2, pa.int64()),
        "zone": pa.array(rng.choice(["01", "02", "A"], n)),
        "member": pa.array(rng.random(n) < 0.5),
    })  # fmt: skip
    path = _write(tmp_path / "types.parquet", table)
    config = tmp_path / "t.yaml"
    config.write_text(
        f"name: t\ndata: {{name: table, path: {path}, columns: [size, price, code, zone, member]}}\n"
        "model: {hidden: [8]}\ntrain: {epochs: 1, batch_size: 10}\n"
    )
    run_dir = _train(config, tmp_path / "run")
    schema = load_run(run_dir).table_schema
    kinds = {c.name: (c.kind, c.levels) for c in schema.columns}
    assert kinds == {"size": ("text", 5), "price": ("real", 0), "code": ("integer", 3), "zone": ("text", 3),
                     "member": ("boolean", 2)}  # fmt: skip
    new = _write(tmp_path / "new.csv", {"zone": np.array(["01", "02"]), "size": np.array(["8", "S"]),
                                        "price": np.array([2.5, 3.0]), "code": np.array([2**60, 2**60 + 4]),
                                        "member": np.array([True, False])})  # fmt: skip
    assert len(_score(str(run_dir), str(new))) == 2  # "01" stays text, 2**60 + 4 stays exact
    sampled = runner.invoke(app, ["sample", str(run_dir), "--n", "20"])
    assert sampled.exit_code == 0, sampled.output
    samples = read_table(run_dir / "samples" / "seed0-n20.csv")
    assert samples.column("member").type == pa.bool_() and set(np.asarray(samples["code"])) <= {
        2**60,
        2**60 + 2,
        2**60 + 4,
    }


def test_blank_text_cells_are_missing_and_out_must_be_a_file(shop_run: Path, tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("id,channel,kind,items,amount\n1,store,,2,3.5\n2,online,fuel,1,2\n3,store,food,1,2\n")
    config = _config(tmp_path, path)
    result = runner.invoke(
        app, ["train", str(config), "data.missing=refuse", "--run-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "column 'kind', row 1: the value is missing" in result.stderr
    assert "data.missing: drop" in result.stderr  # says what to do
    (tmp_path / "dir.csv").mkdir()
    new = _write(tmp_path / "new.csv", _shop(5))
    result = runner.invoke(app, ["score", str(shop_run), str(new), "--out", str(tmp_path / "dir.csv")])
    assert result.exit_code == 2 and "--out is a folder" in result.stderr
