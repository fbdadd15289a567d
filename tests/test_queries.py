"""Questions to a trained table model (queries.py; `made score`, `complete RUN FILE`, `sample
--given`, `density`; Run.score/complete/sample/density): each answer against the model's own law
by enumeration or against a closed form, and files that keep what the user wrote."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from made_cli.cli import app
from made_cli.condition import Condition
from made_cli.queries import complete_table
from made_cli.runs import load_run

runner = CliRunner()


def _train(path: Path, run: Path, *overrides: str) -> Path:
    result = runner.invoke(app, ["train", str(path), "--run-dir", str(run), *overrides])
    assert result.exit_code == 0, result.output
    return run


def _letters(n: int, seed: int = 0) -> pd.DataFrame:
    """Three dependent text columns of 3, 2 and 3 values: small enough to enumerate."""
    rng = np.random.default_rng(seed)
    a = rng.choice(["x", "y", "z"], n)
    b = np.where(rng.random(n) < np.where(a == "x", 0.85, 0.3), "on", "off")
    c = np.where(b == "on", rng.choice(["p", "q", "r"], n, p=[0.7, 0.2, 0.1]), rng.choice(["p", "q", "r"], n))
    return pd.DataFrame({"a": a, "b": b, "c": c})


@pytest.fixture(scope="module")
def letters_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random orderings over three members: most observed sets are exact for some members only."""
    root = tmp_path_factory.mktemp("letters")
    _letters(600).to_csv(root / "letters.csv", index=False)
    return _train(
        root / "letters.csv", root / "run", "model.hidden=[16]", "model.num_masks=3", "train.epochs=3"
    )


def _enumerated(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row the letters model can give (18, 3) and its log-probability."""
    model = load_run(run_dir).model
    rows = torch.tensor(list(itertools.product(range(3), range(2), range(3))), dtype=torch.float32)
    with torch.no_grad():
        return rows, model.log_prob(rows).double()


def test_log_p_of_the_observed_cells_sums_out_the_rest(letters_run: Path) -> None:
    """log p(x_observed) against the sum over the enumerated rows: exact rows to rounding,
    importance-sampled rows within noise; a row of every member's first cells is exact."""
    run = load_run(letters_run)
    rows, log_p = _enumerated(letters_run)
    ranks = run.model.net.ranks
    for pattern in itertools.product([False, True], repeat=3):
        observed = torch.tensor(pattern)
        if not observed.any() or observed.all():
            continue
        x = rows.clone()
        lp, exact = run.model.observed_log_prob(
            x, observed.expand_as(x), draws=3000, generator=torch.Generator().manual_seed(0)
        )
        for i in range(len(rows)):
            same = (rows[:, observed] == rows[i, observed]).all(1)
            truth = float(torch.logsumexp(log_p[same], 0))
            assert float(lp[i]) == pytest.approx(truth, abs=1e-5 if exact[i] else 0.03)
        first = all(int(r[observed].max()) < int(r[~observed].min()) for r in ranks)
        assert bool(exact.all()) == first


def test_scores_count_missing_cells_and_name_the_estimator(letters_run: Path) -> None:
    data = pd.DataFrame(
        {"a": ["x", "y", None, "w"], "b": ["on", None, None, "on"], "c": ["p", "q", "r", "p"]}
    )
    scored = load_run(letters_run).score(data)
    assert scored["missing"].tolist() == [0, 1, 2, 0]
    assert scored["estimator"][0] == "exact" and scored["estimator"][3] == "unseen value"
    assert scored["log_prob"][3] == -math.inf and np.isfinite(scored["log_prob"][:3]).all()
    assert scored["log_prob"][2] > scored["log_prob"][0]  # fewer cells: a larger probability


def test_imputations_follow_the_models_conditional(letters_run: Path) -> None:
    """2000 imputations of (b, c) given a = y, and of a given c = r: frequencies within 0.05 total
    variation of the model's conditional, enumerated; discrete gaps of a few values are drawn
    exactly (by enumeration), with no chain."""
    run = load_run(letters_run)
    rows, log_p = _enumerated(letters_run)
    for given, blank in (({"a": "y"}, ["b", "c"]), ({"c": "r"}, ["a", "b"])):
        data = pd.DataFrame([{**{k: None for k in "abc"}, **given}])
        drawn = complete_table(run, pa.Table.from_pandas(data), Path("rows"), per_row=2000, seed=1)
        assert drawn.status == ["exact"] and np.isnan(drawn.acceptance).all()
        done = drawn.table.to_pandas()
        assert len(done) == 2000 and done["imputation"].tolist() == list(range(1, 2001))
        schema = run.table_schema
        codes = np.stack([done[c].map({v: i for i, v in enumerate(schema.columns[j].categories)}).to_numpy()
                          for j, c in enumerate("abc")], 1)  # fmt: skip
        column, value = next(iter(given.items()))
        j = "abc".index(column)
        v = schema.columns[j].categories.index(value)
        keep = rows[:, j] == v
        cond = torch.softmax(log_p[keep], 0).numpy()
        freq = np.array([np.all(codes == r.numpy(), 1).mean() for r in rows[keep]])
        assert (codes[:, j] == v).all()
        assert 0.5 * np.abs(freq - cond).sum() < 0.05, (given, freq, cond)
        assert blank  # the other columns were drawn


def test_a_columns_law_given_others_matches_enumeration(letters_run: Path) -> None:
    run = load_run(letters_run)
    rows, log_p = _enumerated(letters_run)
    law = run.density("c", given={"a": "x"}, draws=2000)
    keep = rows[:, 0] == 0
    truth = torch.logsumexp(torch.stack([log_p[keep & (rows[:, 2] == k)] for k in range(3)]), 1)
    truth = torch.softmax(truth, 0).numpy()
    assert law["c"].tolist() == ["p", "q", "r"]
    assert np.allclose(law["probability"].to_numpy(), truth, atol=0.02)


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A correlated 3-D Gaussian table with a tenth of its cells missing at random."""
    root = tmp_path_factory.mktemp("gauss")
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.8, 0.5], [0.8, 1.0, 0.3], [0.5, 0.3, 1.0]])
    x = rng.multivariate_normal(np.zeros(3), cov, 4000)
    gaps = rng.random(x.shape) < 0.1
    data = pd.DataFrame(np.where(gaps, np.nan, x), columns=["u", "v", "w"])
    data.to_csv(root / "g.csv", index=False)
    run = _train(
        root / "g.csv",
        root / "run",
        "model.hidden=[48]",
        "model.num_masks=2",
        "train.epochs=25",
        "train.lr=3e-3",
    )
    return run, cov


def test_imputations_of_a_real_column_match_the_closed_form_conditional(
    gaussian_run: tuple[Path, np.ndarray],
) -> None:
    """u given v and w: the mean and spread of 40 imputations per row agree with the Gaussian's
    closed-form conditional; and the rows' log p(v, w) with the closed-form marginal."""
    run_dir, cov = gaussian_run
    run = load_run(run_dir)
    rng = np.random.default_rng(5)
    vw = rng.multivariate_normal(np.zeros(2), cov[1:, 1:], 30)
    weights = cov[0, 1:] @ np.linalg.inv(cov[1:, 1:])
    mean = vw @ weights
    sd = math.sqrt(cov[0, 0] - weights @ cov[1:, 0])
    data = pd.DataFrame({"u": np.nan, "v": vw[:, 0], "w": vw[:, 1]})
    done = run.complete(data, per_row=40, steps=100, seed=0)
    draws = done["u"].to_numpy().reshape(30, 40)
    assert np.abs(draws.mean(1) - mean).mean() < 0.2 * sd
    assert 0.8 < draws.std(1).mean() / sd < 1.25
    assert (done["v"].to_numpy().reshape(30, 40) == vw[:, :1]).all()  # observed cells kept
    scored = run.score(data)
    inv = np.linalg.inv(cov[1:, 1:])
    truth = (
        -0.5 * np.einsum("ij,jk,ik->i", vw, inv, vw)
        - 0.5 * math.log(np.linalg.det(cov[1:, 1:]))
        - math.log(2 * math.pi)
    )
    assert abs(float(scored["log_prob"].mean()) - float(truth.mean())) < 0.12


# -- the command line: files as users have them ----------------------------------------------------
def _messy_csv(path: Path, n: int = 120, seed: int = 0) -> Path:
    """Text with commas and quotes, prices written with two decimals, dates, counts and empty cells."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["tea, green", 'say "hi"', "plain"], n)
    price = np.where(kind == "plain", 1.5, 4.25) + rng.integers(0, 40, n) * 0.05
    count = rng.integers(0, 40, n)
    day = np.datetime64("2021-03-01") + rng.integers(0, 90, n).astype("timedelta64[D]")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["shop", "kind", "price", "count", "day"])
        for i in range(n):
            cells = [f"shop-{i:03d}", kind[i], f"{price[i]:.2f}", str(count[i]), str(day[i])]
            if i % 7 == 3:
                cells[2] = ""
            if i % 11 == 5:
                cells[1] = ""
            if i % 13 == 6:
                cells[4] = ""
            w.writerow(cells)
    return path


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("messy")
    path = _messy_csv(root / "shops.csv")
    return path, _train(path, root / "run", "model.hidden=[16]", "train.epochs=2")


def test_complete_fills_every_gap_and_keeps_every_written_cell(
    messy: tuple[Path, Path], tmp_path: Path
) -> None:
    path, run = messy
    out = tmp_path / "filled.csv"
    result = runner.invoke(app, ["complete", str(run), str(path), "--out", str(out), "--steps", "20"])
    assert result.exit_code == 0, result.output
    assert "rows by Markov chains of 20 Metropolis-Hastings moves" in result.output
    before = list(csv.reader(path.open()))
    after = list(csv.reader(out.open()))
    assert after[0] == before[0] and len(after) == len(before)
    for old, new in zip(before[1:], after[1:], strict=True):
        for cell, got in zip(old, new, strict=True):
            assert got == cell if cell else got != ""
    filled = [row for row, old in zip(after[1:], before[1:], strict=True) if old[2] == ""]
    assert all(len(r[2].partition(".")[2]) == 2 for r in filled)  # the column's own digits
    assert all(r[1] in ("tea, green", 'say "hi"', "plain") for r in after[1:])
    assert all(np.datetime64(r[4]) for r in after[1:])
    assert "not completed" not in result.output


def test_complete_writes_several_imputations_and_redraws_named_columns(
    messy: tuple[Path, Path], tmp_path: Path
) -> None:
    path, run = messy
    out = tmp_path / "filled.parquet"
    result = runner.invoke(app, ["complete", str(run), str(path), "--out", str(out), "--per-row", "3",
                                 "--columns", "count", "--steps", "5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    original = pcsv.read_csv(path)
    assert (
        table.column_names == [*original.column_names, "imputation"]
        and table.num_rows == 3 * original.num_rows
    )
    assert table.schema.field("count").type == pa.int64() and table.schema.field("day").type == pa.date32()
    assert table.column("price").null_count == 0 and table.column("kind").null_count == 0
    counts = np.asarray(table.column("count")).reshape(-1, 3)
    assert (counts != np.asarray(original.column("count"))[:, None]).any()  # redrawn, not copied


def test_complete_refuses_what_it_cannot_do_in_one_line(messy: tuple[Path, Path], tmp_path: Path) -> None:
    path, run = messy
    full = tmp_path / "full.csv"
    pcsv.write_csv(pcsv.read_csv(path).filter(pa.array([i % 7 != 3 and i % 11 != 5 and i % 13 != 6
                                                         for i in range(120)])), full)  # fmt: skip
    for args, message in (
        ([str(full)], "has no missing cell in the modelled columns"),
        ([str(path), "--per-row", "0"], "--per-row must be at least 1"),
        ([str(path), "--columns", "shop"], "--columns names 'shop', which the model does not model"),
        ([str(path), "--out", str(tmp_path / "x.txt")], "--out must end in .csv, .tsv or .parquet"),
        ([str(path), "--mask", "top"], "are for test images, not a FILE"),
        ([str(tmp_path / "rows.txt")], "complete a table (.csv, .tsv or .parquet)"),
    ):
        result = runner.invoke(app, ["complete", str(run), *args])
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1


def test_sample_given_cells_fixes_them_and_writes_where_asked(
    messy: tuple[Path, Path], tmp_path: Path
) -> None:
    _, run = messy
    out = tmp_path / "tea.tsv"
    args = ["--given", "kind=tea, green", "--n", "30", "--out", str(out), "--steps", "10"]
    result = runner.invoke(app, ["sample", str(run), *args])
    assert result.exit_code == 0, result.output
    assert "30 samples given kind" in result.output
    table = pcsv.read_csv(out, parse_options=pcsv.ParseOptions(delimiter="\t"))
    assert set(table.column("kind").to_pylist()) == {"tea, green"} and table.num_rows == 30
    for given, message in (
        ("colour=red", "the model has no column 'colour'"),
        ("kind=coffee", "column 'kind' has no category 'coffee'"),
        ("price=cheap", "column 'price': 'cheap' is not a number"),
        ("price", "--given takes column=value"),
    ):
        bad = runner.invoke(app, ["sample", str(run), "--given", given])
        assert bad.exit_code == 2 and message in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr


def test_score_flags_unseen_values_and_compares_gaps_with_their_own_kind(
    messy: tuple[Path, Path], tmp_path: Path
) -> None:
    path, run = messy
    text = path.read_text().replace("plain", "fancy", 1)
    odd = tmp_path / "odd.csv"
    odd.write_text(text)
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(run), str(odd), "--out", str(out), "--flag-below", "0.05"])
    assert result.exit_code == 0, result.output
    assert "1 rows hold a category no training row had: log p = -inf, flagged" in result.output
    assert "rows with missing cells" in result.output and "rows lacking price:" in result.output
    scores = pd.read_csv(out)
    unseen = scores["kind"] == "fancy"
    assert (
        unseen.sum() == 1
        and scores["outlier"][unseen].all()
        and np.isneginf(scores["log_prob"][unseen]).all()
    )
    assert (scores["missing"] == scores[["kind", "price", "count", "day"]].isna().sum(axis=1)).all()
    assert set(scores["estimator"]) <= {"exact", "importance sampling", "unseen value"}


def test_density_prints_and_plots_a_columns_law(messy: tuple[Path, Path]) -> None:
    _, run = messy
    result = runner.invoke(
        app, ["density", str(run), "--column", "price", "--given", "kind=plain", "--points", "50"]
    )
    assert result.exit_code == 0, result.output
    assert "p(price | kind=plain)" in result.output and "median" in result.output
    assert (run / "densities" / "price-given-kind=plain.png").is_file()
    # a grid of 40 counts shown at 12: the cells each stands for weigh in, so the law sums to about 1
    grid = runner.invoke(app, ["density", str(run), "--column", "count", "--points", "12", "--draws", "300"])
    assert grid.exit_code == 0, grid.output
    total = float(grid.output.split("summed to ")[1].split(")")[0])
    assert 0.85 < total < 1.15, grid.output
    for args, message in (
        (["--column", "shop"], "'shop' is not a column the model models"),
        (["--column", "kind", "--given", "kind=plain"], "'kind' is also given"),
    ):
        bad = runner.invoke(app, ["density", str(run), *args])
        assert bad.exit_code == 2 and message in bad.stderr, bad.stderr


def test_a_flow_refuses_to_score_rows_with_gaps_in_one_line(tmp_path: Path) -> None:
    path = _messy_csv(tmp_path / "shops.csv")
    run = _train(path, tmp_path / "run", "model.kind=maf", "data.missing=drop", "train.epochs=1")
    result = runner.invoke(app, ["score", str(run), str(path)])
    assert result.exit_code == 2 and "needs a MADE" in result.stderr and result.stderr.count("\n") == 1


def test_a_row_with_an_unseen_value_is_left_as_it_is(messy: tuple[Path, Path]) -> None:
    path, run_dir = messy
    rows = pd.read_csv(path).head(8)
    rows.loc[3, "kind"] = "coffee"  # row 3 (0-based) also lacks its price
    drawn = complete_table(load_run(run_dir), pa.Table.from_pandas(rows), Path("rows"), steps=5)
    assert drawn.status[3] == "unseen value" and drawn.status[0] == "nothing missing"
    done = drawn.table.to_pandas()
    assert math.isnan(done["price"][3]) and done["kind"][3] == "coffee"
    assert done.drop(index=3).notna().all().all()


def test_a_blank_label_is_drawn_from_its_posterior(tmp_path: Path) -> None:
    """A class-conditional model completes a row without its label: each imputation's label
    from p(y | observed cells) = p(y) p(x | y) / p(x), 3000 draws within 0.04 of it."""
    rng = np.random.default_rng(0)
    kind = rng.choice(["food", "fuel", "toys"], 400)
    channel = np.where(rng.random(400) < np.where(kind == "toys", 0.8, 0.2), "online", "store")
    pd.DataFrame({"channel": channel, "kind": kind, "amount": rng.gamma(2.0, 10.0, 400).round(2)}).to_csv(
        tmp_path / "shop.csv", index=False
    )
    config = tmp_path / "shop.yaml"
    config.write_text(
        f"data: {{path: {tmp_path / 'shop.csv'}, columns: [kind, amount], label_column: channel}}\n"
        "model: {hidden: [16], condition_on: label}\ntrain: {epochs: 3}\n"
    )
    run = load_run(_train(config, tmp_path / "run"))
    row = pd.DataFrame({"channel": [None], "kind": ["toys"], "amount": [12.5]})
    drawn = complete_table(run, pa.Table.from_pandas(row), Path("row"), per_row=3000, seed=0)
    assert drawn.status == ["exact"]
    x = torch.tensor([[2.0, 12.5]])
    with torch.no_grad():
        joint = [run.model.log_prob(x, Condition(torch.tensor([y])))[0] for y in range(2)]
        joint = torch.stack(joint).double()
    posterior = torch.softmax(joint + run.model.label_log_prior.double(), 0)
    online = (drawn.table.column("channel").to_numpy(zero_copy_only=False) == "online").mean()
    assert abs(online - float(posterior[0])) < 0.04
    assert drawn.table.column("kind").to_pylist() == ["toys"] * 3000
    law = run.density("channel", given={"kind": "toys"})  # the label's law: a classifier
    assert law["channel"].tolist() == ["online", "store"] and law["probability"].sum() == pytest.approx(1.0)


def test_a_rows_score_does_not_depend_on_the_rows_before_it(messy: tuple[Path, Path]) -> None:
    path, run_dir = messy
    rows = pd.read_csv(path)
    gap = rows[rows["price"].isna()].head(1)
    other = rows[rows["price"].notna() & rows["kind"].notna()].head(1)
    odd = other.assign(kind="coffee")  # an unseen value: left out of the estimate, -inf
    run = load_run(run_dir)
    alone = run.score(pd.concat([other, gap]))["log_prob"].iloc[1]
    after_unseen = run.score(pd.concat([odd, gap]))["log_prob"].iloc[1]
    assert alone == after_unseen
