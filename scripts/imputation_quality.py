"""made's imputations of a blanked column against scikit-learn's IterativeImputer and KNNImputer.

    pip install -e ".[examples]"                  # scikit-learn and the tables' packages
    python scripts/imputation_quality.py                          # penguins and wine, made's defaults
    python scripts/imputation_quality.py --tables diabetes --out runs/imputation -- train.lr=3e-3
    python scripts/imputation_quality.py --quick                  # a smoke run; its numbers mean nothing

Tables: Palmer penguins (palmerpenguins), scikit-learn's wine and diabetes (all real), and Seattle
weather and cars (vega_datasets); by default penguins and wine (about 6 minutes on 2 cores with
--threads 1; on a busy machine torch's default threads made the completions several times
slower). Protocol, the same for every imputer and on the same cells:

- Each table's rows are split 80/20 into train and test rows with a fixed seed (--seed).
- made: ``made train`` (no settings beyond the overrides after --) on a CSV of the train rows
  only, in --out, whose split column sends 10% of them to validation (early stopping) and one row
  to test (made needs one; it is not trained on). scikit-learn's imputers are fitted on all the
  train rows: they need no validation rows. Every imputer sees the columns made models.
- For each target column, the test rows where it is known have it blanked and are imputed from
  their other cells (missing ones included: each imputer handles those its own way):
  - made: ``run.complete(rows, per_row=K, columns=[target])``, K draws from the model's
    p(target | observed cells) (a Markov chain of --steps moves wherever the orderings do not
    give it exactly: with one blanked column, nearly every row). Point estimate: the draws'
    mean (real) or most frequent draw (categorical).
  - IterativeImputer (BayesianRidge, 10 rounds) on standardised numbers (dates as days) and
    text as indicators of every category but the first (a missing cell: all of them missing),
    fitted on the train rows: the default deterministic mode for the point estimate,
    ``sample_posterior=True`` with random_state 0..K-1 for the K draws. A category is the one
    with the largest indicator, the first's being 1 - the others' sum. (With an indicator for
    every category, each is fitted on its exact complement, 1 - its siblings, and the imputed
    indicators never leave their starting means: every row gets the most frequent category.)
  - KNNImputer (k = 5) on the same numbers and an indicator for every category: the
    neighbours' mean (largest indicator for a category); no spread, so no draws.
  - The train rows' mean or most frequent category, for scale.
- Scores: RMSE (real) or accuracy (categorical) of the point estimate; for the K draws,
  coverage: the share of rows whose truth lies in the draws' central 90% interval (quantiles
  at 5% and 95%, Weibull positions k/(K+1), so that draws from the true law cover it in 90% of
  rows), or, for a categorical column, p(truth): the mean over rows of the share of the draws
  that equal the truth (the imputer's probability of the truth, estimated from K draws).

made's times are the wall time of ``made train`` and of the target's ``run.complete`` call.
Prints each target's numbers as JSON, a few imputed test rows next to the truth, then a
Markdown table, the command and the CPU; each target's imputations are written to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_TABLES = ("penguins", "wine")
SPLIT = "made_split"  # the split column of made's training CSV


def penguins() -> pd.DataFrame:
    import palmerpenguins

    return palmerpenguins.load_penguins()


def wine() -> pd.DataFrame:
    from sklearn import datasets

    return datasets.load_wine(as_frame=True).data


def diabetes() -> pd.DataFrame:
    from sklearn import datasets

    return datasets.load_diabetes(as_frame=True, scaled=False).data


def seattle_weather() -> pd.DataFrame:
    from vega_datasets import data

    return data.seattle_weather()


def cars() -> pd.DataFrame:
    from vega_datasets import data

    return data.cars().drop(columns="Name")  # made leaves it out too (one name per car)


# name -> (the table, its target columns)
TABLES: dict[str, tuple[Callable[[], pd.DataFrame], tuple[str, ...]]] = {
    "penguins": (penguins, ("body_mass_g", "sex", "species")),
    "wine": (wine, ("alcohol", "flavanoids")),
    "diabetes": (diabetes, ("bmi", "s5")),
    "seattle-weather": (seattle_weather, ("temp_max", "weather")),
    "cars": (cars, ("Horsepower", "Origin")),
}


def as_written(frame: pd.DataFrame) -> pd.DataFrame:
    """Dates as dates (made reads a CSV's 2024-05-31 as one), every other column as it is."""
    out = frame.copy()
    for name in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[name]):
            out[name] = out[name].dt.date
    return out


def is_text(column: pd.Series) -> bool:
    """Whether a column holds categories: neither numbers, booleans nor dates."""
    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)) and not (
        column.dropna().map(lambda v: hasattr(v, "toordinal")).all()
    )


def split_rows(n: int, seed: int, test_share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices, each in order."""
    order = np.random.default_rng(seed).permutation(n)
    test = round(test_share * n)
    return np.sort(order[test:]), np.sort(order[:test])


def train_made(
    train: pd.DataFrame, folder: Path, name: str, seed: int, overrides: list[str], threads: int | None
) -> tuple[Path, float]:
    """``made train`` on ``train`` written to a CSV (10% validation, one test row); (run, seconds)."""
    rng = np.random.default_rng(seed + 1)
    split = np.where(rng.random(len(train)) < 0.1, "valid", "train").astype(object)
    split[rng.choice(np.flatnonzero(split == "train"))] = "test"
    file = folder / f"{name}-train.csv"
    train.assign(**{SPLIT: split}).to_csv(file, index=False)
    run = folder / f"{name}-run"
    if (run / "checkpoints").exists():  # this script's own run from an earlier call
        shutil.rmtree(run)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    start = time.perf_counter()
    subprocess.run(["made", "train", str(file), "--run-dir", str(run), f"data.split_column={SPLIT}",
                    *overrides], check=True, stdout=subprocess.DEVNULL, env=env)  # fmt: skip
    return run, time.perf_counter() - start


class Encoding:
    """Numbers standardised by the train rows, dates as standardised days, text as indicators of
    the train rows' categories (a missing cell: all its indicators NaN; an unseen one: all 0).
    ``drop_first``: no indicator for the first category (dummy coding), so that no indicator is
    the exact complement of its siblings."""

    def __init__(self, train: pd.DataFrame, columns: list[str], drop_first: bool = False) -> None:
        self.columns, self.drop_first = columns, drop_first
        self.text = {c: sorted(train[c].dropna().unique().tolist()) for c in columns if is_text(train[c])}
        self.stats: dict[str, tuple[float, float]] = {}
        for c in columns:
            if c not in self.text:
                v = self.numbers(train[c])
                self.stats[c] = (float(np.nanmean(v)), float(np.nanstd(v)) or 1.0)
        self.slices: dict[str, slice] = {}
        at = 0
        for c in columns:
            width = len(self.text[c]) - drop_first if c in self.text else 1
            self.slices[c] = slice(at, at + width)
            at += width

    @staticmethod
    def numbers(column: pd.Series) -> np.ndarray:
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            return column.to_numpy(dtype=float, na_value=np.nan)
        days = pd.to_datetime(column)
        return ((days - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy(dtype=float)

    def encode(self, frame: pd.DataFrame, blank: str | None = None) -> np.ndarray:
        """(N, width) floats; every cell of ``blank`` NaN."""
        parts = []
        for c in self.columns:
            if c in self.text:
                cells = frame[c]
                kept = self.text[c][1:] if self.drop_first else self.text[c]
                part = np.stack([(cells == v).to_numpy(dtype=float) for v in kept], 1)
                part[cells.isna().to_numpy()] = np.nan
            else:
                mean, sd = self.stats[c]
                part = ((self.numbers(frame[c]) - mean) / sd)[:, None]
            if c == blank:
                part = np.full_like(part, np.nan)
            parts.append(part)
        return np.concatenate(parts, 1)

    def decode(self, x: np.ndarray, column: str) -> np.ndarray:
        """A column's values from encoded rows: the largest indicator's category (the first
        category's, with ``drop_first``: 1 - the others' sum), or the number."""
        part = x[..., self.slices[column]]
        if column in self.text:
            if self.drop_first:
                part = np.concatenate([1 - part.sum(-1, keepdims=True), part], -1)
            return np.asarray(self.text[column], dtype=object)[part.argmax(-1)]
        mean, sd = self.stats[column]
        return part[..., 0] * sd + mean


def sklearn_imputations(
    train: pd.DataFrame, test: pd.DataFrame, columns: list[str], target: str, draws: int
) -> dict[str, np.ndarray]:
    """IterativeImputer's point estimate and ``draws`` posterior draws (N, K), KNNImputer's point."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer

    dummies = Encoding(train, columns, drop_first=True)  # see the module's docstring
    fit_x, test_x = dummies.encode(train), dummies.encode(test, blank=target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        point = IterativeImputer(random_state=0).fit(fit_x).transform(test_x)
        samples = [IterativeImputer(sample_posterior=True, random_state=k).fit(fit_x).transform(test_x)
                   for k in range(draws)]  # fmt: skip
    one_hot = Encoding(train, columns)  # every two categories equally far apart
    knn = KNNImputer(n_neighbors=5).fit(one_hot.encode(train)).transform(one_hot.encode(test, blank=target))
    return {
        "iterative": dummies.decode(point, target),
        "iterative_draws": np.stack([dummies.decode(s, target) for s in samples], 1),
        "knn": one_hot.decode(knn, target),
    }


def made_imputations(run: Any, test: pd.DataFrame, target: str, draws: int, seed: int,
                     steps: int | None) -> tuple[np.ndarray, float]:  # fmt: skip
    """made's ``draws`` imputations (N, K) of ``target`` in ``test`` (its cells blanked), and the
    seconds ``run.complete`` took."""
    blank = test.copy()
    blank[target] = None if is_text(test[target]) else np.nan
    start = time.perf_counter()
    done = run.complete(blank, per_row=draws, columns=[target], seed=seed, steps=steps)
    seconds = time.perf_counter() - start
    assert len(done) == len(test) * draws, (len(done), len(test), draws)
    assert (done["imputation"].to_numpy() == np.tile(np.arange(1, draws + 1), len(test))).all()
    values = done[target].to_numpy().reshape(len(test), draws)
    return (values if is_text(test[target]) else values.astype(float)), seconds


def point_of(draws: np.ndarray, text: bool) -> np.ndarray:
    """The draws' mean per row, or their most frequent value (ties: the first drawn)."""
    if not text:
        return draws.mean(1)
    return np.array([Counter(row.tolist()).most_common(1)[0][0] for row in draws], dtype=object)


def spread_score(draws: np.ndarray, truth: np.ndarray, text: bool) -> float:
    """Coverage of the truth by the draws' central 90% interval, or the mean share of draws that
    equal the truth."""
    if text:
        return float((draws == truth[:, None]).mean())
    low, high = np.quantile(draws, [0.05, 0.95], axis=1, method="weibull")
    return float(((truth >= low) & (truth <= high)).mean())


def point_score(point: np.ndarray, truth: np.ndarray, text: bool) -> float:
    """Accuracy, or RMSE (a point left missing counts as wrong / raises the RMSE to NaN)."""
    if text:
        return float((point == truth).mean())
    return float(np.sqrt(np.mean((point.astype(float) - truth) ** 2)))


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                platform.processor() or "unknown CPU")  # fmt: skip
    return f"{name}, {os.cpu_count()} cores"


def show(name: str, target: str, test: pd.DataFrame, truth: np.ndarray, made: np.ndarray,
         others: dict[str, np.ndarray], text: bool, rows: int = 5) -> None:  # fmt: skip
    """A few imputed test rows next to the truth, to read by eye."""
    view = test.drop(columns=[target]).iloc[:rows, :6].reset_index(drop=True)  # a few other cells
    view.insert(0, f"{target} (truth)", truth[:rows])
    if text:
        counts = [Counter(r.tolist()).most_common() for r in made[:rows]]
        view.insert(
            1, f"made: draws of {made.shape[1]}", [" ".join(f"{k}:{n}" for k, n in c) for c in counts]
        )
    else:
        low, high = np.quantile(made[:rows], [0.05, 0.95], axis=1, method="weibull")
        view.insert(1, "made: mean [90%]", [f"{m:.4g} [{lo:.4g}, {hi:.4g}]" for m, lo, hi in
                                            zip(made[:rows].mean(1), low, high, strict=True)])  # fmt: skip
        view.insert(2, "made: first 3 draws", [" ".join(f"{v:.4g}" for v in r[:3]) for r in made[:rows]])
    at = 3 if not text else 2
    for label, values in others.items():
        cells = values[:rows]
        view.insert(at, label, cells if text else [f"{v:.4g}" for v in cells])
        at += 1
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(f"\n{name}, {target}: the first {rows} test rows\n{view}", flush=True)


def markdown(results: list[dict[str, Any]], draws: int) -> str:
    """One row per target: the point estimates' scores (best in bold), the draws' scores, times."""
    lines = [
        f"| table (train / test rows) | column | score | made | IterativeImputer | KNNImputer (k=5) "
        f"| train mean / mode | draws' score (K={draws}) | made | IterativeImputer "
        f"| made: training | made: imputation |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        scores = {k: r[k] for k in ("made", "iterative", "knn")}
        best = (max if r["text"] else min)(scores.values())
        # accuracies to 3 decimals; RMSEs to 3 significant digits of the baseline's
        d = 3 if r["text"] else max(0, 2 - int(np.floor(np.log10(abs(r["baseline"]) or 1.0))))
        cells = [f"**{v:.{d}f}**" if v == best else f"{v:.{d}f}" for v in scores.values()]
        lines.append(
            f"| {r['table']} ({r['train_rows']} / {r['test_rows']}) | {r['column']} "
            f"| {'accuracy' if r['text'] else 'RMSE'} | {' | '.join(cells)} | {r['baseline']:.{d}f} "
            f"| {'p(truth)' if r['text'] else '90% coverage'} | {r['made_spread']:.3f} "
            f"| {r['iterative_spread']:.3f} | {r['made_train_seconds']:.0f} s | {r['made_seconds']:.1f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    choices = f"names among {', '.join(TABLES)} (default: {', '.join(DEFAULT_TABLES)})"
    parser.add_argument("--tables", nargs="*", default=None, help=choices)
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for files and runs (default: a temp dir)"
    )
    parser.add_argument("--draws", type=int, default=20, help="K imputations per row (default 20)")
    parser.add_argument("--steps", type=int, default=None,
                        help="made's Markov chain moves per completion (default: made's own)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="the train/test split's and made's seed")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for made (default: torch's; 1 on a busy machine)")  # fmt: skip
    quick = "a smoke run: 2 epochs, K=4, 12 test rows, 5 chain moves; its numbers mean nothing"
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("overrides", nargs="*", help="made train overrides, after --")
    args = parser.parse_args()
    unknown = set(args.tables or ()) - set(TABLES)
    if unknown:
        parser.error(f"unknown tables {sorted(unknown)}; choose among {', '.join(TABLES)}")
    overrides = list(args.overrides)
    draws, steps = args.draws, args.steps
    if args.quick:
        overrides, draws, steps = ["train.epochs=2", *overrides], 4, 5
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from made_cli import load_run

    out = args.out or Path(tempfile.mkdtemp(prefix="made-imputation-"))
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for name in args.tables or DEFAULT_TABLES:
        load, targets = TABLES[name]
        frame = as_written(load())
        train_idx, test_idx = split_rows(len(frame), args.seed)
        train, test = frame.iloc[train_idx], frame.iloc[test_idx]
        run_dir, train_seconds = train_made(train, out, name, args.seed, overrides, args.threads)
        run = load_run(run_dir)
        log = (run_dir / "logs" / "train.log").read_text()
        epochs = re.findall(r"best epoch (\d+ of \d+)", log)[-1]
        columns = list(run.table_schema.names)
        for target in targets:
            if target not in columns:
                raise SystemExit(f"{name}: made does not model {target!r} (it models {', '.join(columns)})")
            rows = test[test[target].notna()]
            if args.quick:
                rows = rows.head(12)
            text = is_text(rows[target])
            truth = rows[target].to_numpy(dtype=object if text else float)
            made, made_seconds = made_imputations(run, rows, target, draws, args.seed, steps)
            left = int(pd.isna(made).sum())
            theirs = sklearn_imputations(train, rows, columns, target, draws)
            base = train[target].mode().iloc[0] if text else float(train[target].mean())
            made_point = point_of(made, text)
            constant = np.full(len(rows), base, dtype=object if text else float)
            row = {
                "table": name, "column": target, "text": text, "train_rows": len(train),
                "test_rows": len(rows), "made": point_score(made_point, truth, text),
                "iterative": point_score(theirs["iterative"], truth, text),
                "knn": point_score(theirs["knn"], truth, text),
                "baseline": point_score(constant, truth, text),
                "made_spread": spread_score(made, truth, text),
                "iterative_spread": spread_score(theirs["iterative_draws"], truth, text),
                "made_train_seconds": round(train_seconds, 1), "made_seconds": round(made_seconds, 2),
                "made_epochs": epochs, "made_cells_left_missing": left,
            }  # fmt: skip
            results.append(row)
            print(json.dumps(row), flush=True)
            others = {"IterativeImputer": theirs["iterative"], "KNNImputer": theirs["knn"]}
            show(name, target, rows, truth, made, others, text)
            pd.DataFrame({"row": rows.index.to_numpy(), "truth": truth, "made": made_point,
                          **{f"made_{k + 1}": made[:, k] for k in range(draws)},
                          "iterative": theirs["iterative"], "knn": theirs["knn"]}
                         ).to_csv(out / f"{name}-{target}-imputations.csv", index=False)  # fmt: skip
    print("\n" + markdown(results, draws))
    for r in results:
        if r["made_cells_left_missing"]:
            print(f"made left {r['made_cells_left_missing']} of {r['test_rows']} x {draws} {r['column']} "
                  f"cells of {r['table']} missing")  # fmt: skip
    print(f"\ncommand: python {shlex.join(sys.argv)}\nCPU: {cpu_name()}")
    print(f"runs and imputations in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
