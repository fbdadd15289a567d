"""made's default table model against scikit-learn's GaussianMixture on public tables.

    python scripts/table_quality.py                       # every table, made with no settings
    python scripts/table_quality.py --tables wine -- model.hidden=[64]   # made with overrides

Needs scikit-learn (``pip install scikit-learn``). Each table is one that scikit-learn ships
(breast cancer, wine, diabetes), written to a CSV as a user would have it, then:

- density: ``made train FILE`` (plus any overrides) and the test NLL in nats per row, against a
  GaussianMixture (full covariances, 1-10 components chosen on the validation rows) and the
  independent per-column Gaussian, both fitted on the same training rows (the run's split.npy)
  of the same columns. A grid column's probability (made models values on a grid as such) is
  read as the density of its cell, log P - log step, so all three are densities on the file's
  scale.
- anomalies: trained on 60% of the normal rows (benign tumours; wine cultivars 0 and 1), each
  model ranks the other 40% and every anomaly by log p; ROC AUC of that ranking.

Prints one table of numbers; the runs stay in --out.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv


def tables() -> dict[str, tuple[np.ndarray, list[str], np.ndarray]]:
    """name -> (values (N, D), column names, normal (N,) bool)."""
    from sklearn import datasets

    cancer = datasets.load_breast_cancer()
    wine = datasets.load_wine()
    diabetes = datasets.load_diabetes(scaled=False)
    return {
        "breast_cancer": (cancer.data, list(cancer.feature_names), cancer.target == 1),  # 1: benign
        "wine": (wine.data, list(wine.feature_names), wine.target < 2),
        "diabetes": (diabetes.data, list(diabetes.feature_names), np.ones(len(diabetes.data), bool)),
    }


def write_csv(path: Path, x: np.ndarray, names: list[str]) -> None:
    columns = {}
    for j, name in enumerate(names):
        col = x[:, j]
        columns[name] = col.astype(np.int64) if np.all(col == np.round(col)) else col
    pcsv.write_csv(pa.table(columns), path)


def made(file: Path, run: Path, overrides: list[str]) -> float:
    """Train with the defaults (and ``overrides``); the seconds it took."""
    start = time.perf_counter()
    subprocess.run(["made", "train", str(file), "--run-dir", str(run), *overrides], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def made_scores(run: Path, file: Path, out: Path) -> np.ndarray:
    """log p of each row of ``file`` as a density (grid columns' cells read as densities)."""
    subprocess.run(["made", "score", str(run), str(file), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    scores = pcsv.read_csv(out).column("log_prob").to_numpy()
    return scores - grid_log_steps(run)


def grid_log_steps(run: Path) -> float:
    """sum of log step over the run's grid columns (0 without any)."""
    import torch

    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True, map_location="cpu")
    laws = state.get("column_laws") or []
    return float(sum(math.log(law["step"]) for law in laws if law.get("step")))


def gmm(train: np.ndarray, valid: np.ndarray, seed: int = 0):
    """The GaussianMixture (full covariances) of 1-10 components best on the validation rows,
    fitted to standardised columns; returns a function giving log densities on the file's scale."""
    from sklearn.mixture import GaussianMixture

    mean, sd = train.mean(0), train.std(0) + 1e-12
    z = lambda v: (v - mean) / sd  # noqa: E731
    best, best_score = None, -math.inf
    for k in range(1, 11):
        if k > len(train) // 5:
            break
        model = GaussianMixture(k, covariance_type="full", random_state=seed, reg_covar=1e-4).fit(z(train))
        score = model.score(z(valid))
        if score > best_score:
            best, best_score = model, score
    assert best is not None
    return lambda v: best.score_samples(z(v)) - np.log(sd).sum()


def independent(train: np.ndarray):
    mean, sd = train.mean(0), train.std(0) + 1e-12
    return lambda v: (-0.5 * ((v - mean) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi)).sum(1)


def auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(labels, -np.r_[normal, anomalous]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", nargs="*", default=None, help="names (default: all)")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for files and runs (default: a temp dir)"
    )
    parser.add_argument("overrides", nargs="*", help="made train overrides, after --")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="made-quality-"))
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, (x, names, normal) in tables().items():
        if args.tables and name not in args.tables:
            continue
        # density: every row
        file = out / f"{name}.csv"
        write_csv(file, x, names)
        run = out / f"{name}-run"
        seconds = made(file, run, args.overrides)
        split = np.load(run / "split.npy")
        test_file = out / f"{name}-test.csv"
        write_csv(test_file, x[split == 2], names)
        made_nll = -made_scores(run, test_file, out / f"{name}-test-scores.csv").mean()
        g = gmm(x[split == 0], x[split == 1])
        row = {"table": name, "rows": len(x), "columns": x.shape[1], "made_seconds": round(seconds, 1),
               "made_nll": round(float(made_nll), 2), "gmm_nll": round(float(-g(x[split == 2]).mean()), 2),
               "independent_nll": round(float(-independent(x[split == 0])(x[split == 2]).mean()), 2),
               }  # fmt: skip
        if not normal.all():  # anomalies: train on 60% of the normal rows, rank the rest and every anomaly
            order = np.random.default_rng(0).permutation(int(normal.sum()))
            cut = int(0.6 * len(order))
            fitted, held_normal = x[normal][order[:cut]], x[normal][order[cut:]]
            normal_file = out / f"{name}-normal.csv"
            write_csv(normal_file, fitted, names)
            normal_run = out / f"{name}-normal-run"
            made(normal_file, normal_run, args.overrides)
            nsplit = np.load(normal_run / "split.npy")
            held = np.r_[held_normal, x[~normal]]
            held_file = out / f"{name}-held.csv"
            write_csv(held_file, held, names)
            scores = made_scores(normal_run, held_file, out / f"{name}-held-scores.csv")
            n_normal = len(held_normal)
            g = gmm(fitted[nsplit == 0], fitted[nsplit == 1])(held)
            ind = independent(fitted[nsplit == 0])(held)
            row.update({
                "made_auc": round(auc(scores[:n_normal], scores[n_normal:]), 3),
                "gmm_auc": round(auc(g[:n_normal], g[n_normal:]), 3),
                "independent_auc": round(auc(ind[:n_normal], ind[n_normal:]), 3),
            })  # fmt: skip
        results.append(row)
        print(json.dumps(row), flush=True)
    print(f"runs in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
