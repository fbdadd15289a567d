"""Plots with matplotlib: training curves of runs (`made plot`), and a table's pair plot of data
against samples (`made sample`)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import UsageError
from .runs import atomic_write_bytes

__all__ = ["Curves", "pair_plot", "plot_curves", "read_curves", "y_limits"]

_PAIR_COLUMNS = 4  # columns a pair plot shows at most: beyond that the panels are too small to read


@dataclass(frozen=True)
class Curves:
    """One run's training curves from its metrics.jsonl: per epoch, the training loss and the
    validation NLL (or the kind's measure, -ELBO for a VAE); the test number of its best epoch."""

    name: str
    measure: str
    epochs: list[int]
    train: list[float]
    valid: list[float]
    test: float | None = None
    best_epoch: int | None = None


def read_curves(run_dir: Path) -> Curves:
    """The curves of a run directory; a usage error if it has no metrics to draw."""
    from .kinds import KINDS

    path = run_dir / "metrics.jsonl"
    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"{run_dir} is not a run directory (no config.yaml)")
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise UsageError(f"{run_dir} has no metrics.jsonl: no epoch has finished yet") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}, line {number}: not JSON ({e.msg})") from None
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    kind = KINDS.get(str((config.get("model") or {}).get("kind", "made")))
    loss = kind.loss_name if kind else "train_nll"
    epochs: list[int] = []
    train: list[float] = []
    valid: list[float] = []
    test = best = None
    for record in records:
        if not isinstance(record, dict):
            continue
        if not isinstance(record.get("epoch"), int) or not isinstance(record.get("nll"), (int, float)):
            continue  # not a record of an epoch's numbers
        if record.get("split") == "valid":
            epochs.append(int(record["epoch"]))
            valid.append(float(record["nll"]))
            train.append(float(record.get(loss, math.nan)))
        elif record.get("split") == "test":
            test, best = float(record["nll"]), int(record["epoch"])
    if not epochs:
        raise UsageError(f"{path} holds no finished epoch yet")
    return Curves(run_dir.name, kind.measure if kind else "NLL", epochs, train, valid, test, best)


def y_limits(curves: Sequence[Curves]) -> tuple[float, float] | None:
    """The y-axis of ``plot_curves``: the first epochs' losses dwarf the rest, so each run is shown
    from its lowest number to its 90% quantile, and with its last epoch: no run falls off the chart.
    None when no run has a finite number."""
    lows, highs = [], []
    for c in curves:
        values = np.array([v for v in (*c.valid, *c.train) if math.isfinite(v)])
        if values.size:
            lows.append(float(values.min()))
            highs.append(max(float(np.quantile(values, 0.9)), *(v for v in c.valid[-1:] if math.isfinite(v))))
    if not lows:
        return None
    low, high = min(lows), max(highs)
    return low - 0.05 * (high - low + 1e-9), high + 0.25 * (high - low + 1e-9)


def _figure(width: float, height: float) -> Any:
    """A matplotlib figure drawn by Agg, without pyplot: no global backend or figure list to change."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_curves(curves: Sequence[Curves], out: Path) -> Path:
    """Training (dashed) and validation (solid) curves of runs, one colour each, the best epoch
    marked, in one PNG at ``out`` (written atomically)."""
    import matplotlib

    figure = _figure(8, 5)
    axes = figure.subplots()
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    measures = sorted({c.measure for c in curves})
    for i, c in enumerate(curves):
        colour = colours[i % len(colours)]
        dot = "." if len(c.epochs) < 2 else None  # a single epoch is a point, not a line
        axes.plot(c.epochs, c.valid, color=colour, marker=dot, label=f"{c.name}: valid {c.measure}")
        axes.plot(c.epochs, c.train, color=colour, marker=dot, linestyle="--", label=f"{c.name}: train loss")
        if c.best_epoch is not None and c.best_epoch in c.epochs:
            best = c.valid[c.epochs.index(c.best_epoch)]
            test = "" if c.test is None else f", test {c.test:.2f}"
            axes.plot([c.best_epoch], [best], marker="*", markersize=12, color=colour, linestyle="none",
                      label=f"{c.name}: best epoch {c.best_epoch} ({best:.2f}{test})")  # fmt: skip
    limits = y_limits(curves)
    if limits is not None:
        axes.set_ylim(*limits)
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"nats per example ({' / '.join(measures)})")
    axes.set_title("training curves" if len(curves) > 1 else f"training curves of {curves[0].name}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    atomic_write_bytes(out, _png(figure))
    return out


def pair_plot(
    data: np.ndarray,
    samples: np.ndarray,
    columns: Sequence[Any],
    out: Path,
    weights: np.ndarray | None = None,
) -> Path:
    """A pair plot of a table's first few columns (``tables.Column``s; rows as codes and reals):
    the data (grey) and the samples (orange) in each pair's scatter below the diagonal, their
    histograms on it (the data's rows weighted by ``weights``, such as the samples' mix of
    classes). Integer columns show their values, text columns their categories; a discrete
    column is jittered by up to 0.3 so that equal values show as a patch."""
    k = min(len(columns), _PAIR_COLUMNS)
    rng = np.random.default_rng(0)
    if weights is not None:  # rows of no weight (another class than the samples') are not drawn
        kept = weights > 0
        data, weights = data[kept], weights[kept]
    # integer columns show their values where floats hold them plainly, else their codes like text
    numeric = [
        bool(c.categories) and c.kind in ("integer", "boolean", "real")
        and max(abs(float(v)) for v in c.categories) < 2**24
        for c in columns[:k]
    ]  # fmt: skip

    def values(rows: np.ndarray, j: int) -> np.ndarray:  # what the axis shows
        codes = rows[:, j]
        if not columns[j].levels:
            return codes
        index = np.clip(np.round(np.nan_to_num(codes)), 0, columns[j].levels - 1).astype(int)
        shown = np.asarray(columns[j].categories, dtype=float)[index] if numeric[j] else index.astype(float)
        return np.where(np.isnan(codes), np.nan, shown)  # a missing cell stays missing

    def jittered(rows: np.ndarray, j: int) -> np.ndarray:
        v = values(rows, j)
        return v + rng.uniform(-0.3, 0.3, len(v)) if columns[j].levels else v

    figure = _figure(2.4 * k, 2.4 * k)
    axes = figure.subplots(k, k, squeeze=False)
    for row in range(k):
        for col in range(k):
            ax = axes[row][col]
            if col > row:
                ax.axis("off")
                continue
            if row == col:  # missing cells (NaN) are left out of each picture
                both = np.concatenate([values(data, col), values(samples, col)])
                both = both[~np.isnan(both)]
                bins: Any = 30
                if columns[col].levels and len(np.unique(both)) < 40:  # a bin per value
                    shown = np.unique(both)
                    bins = np.concatenate([shown - 0.5, [shown[-1] + 0.5]])
                present = ~np.isnan(values(data, col))
                kept = None if weights is None else weights[present]
                ax.hist(values(data, col)[present], bins=bins, weights=kept, density=True, color="0.5",
                        alpha=0.6, label="data")  # fmt: skip
                ax.hist(values(samples, col), bins=bins, density=True, color="tab:orange", alpha=0.6,
                        label="samples")  # fmt: skip
            else:
                ax.scatter(
                    jittered(data, col), jittered(data, row), s=3, color="0.5", alpha=0.4, linewidths=0
                )
                ax.scatter(jittered(samples, col), jittered(samples, row), s=3, color="tab:orange", alpha=0.4,
                           linewidths=0)  # fmt: skip
            for axis, j in ((ax.xaxis, col), *(((ax.yaxis, row),) if row != col else ())):
                if columns[j].levels and not numeric[j]:  # at most 15 ticks, else they overlap
                    ticks = range(0, columns[j].levels, max(1, math.ceil(columns[j].levels / 15)))
                    names = [str(columns[j].categories[t]) for t in ticks]
                    axis.set_ticks(ticks, names, fontsize=7, rotation=45 if axis is ax.xaxis else 0)
            if row == k - 1:
                ax.set_xlabel(columns[col].name)
            if col == 0 and row != 0:
                ax.set_ylabel(columns[row].name)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"data (grey) against samples (orange): {len(samples)} samples, {len(data)} test rows")
    atomic_write_bytes(out, _png(figure))
    return out


def density_plot(
    values: Sequence[Any],
    p: np.ndarray,
    discrete: bool,
    column: str,
    given: str,
    out: Path,
    masses: np.ndarray | None = None,
) -> Path:
    """One column's law given others (``made density``): bars of the probabilities for a discrete
    column or a grid, a line of the density otherwise; ``masses`` (bool per value) marks point
    masses of a real column, drawn as stems on an axis of their own (a probability, not a
    density)."""
    figure = _figure(6.4, 3.6)
    ax = figure.add_subplot(1, 1, 1)
    title = f"p({column} | {given})" if given else f"p({column})"
    if discrete:
        labels = [str(v) for v in values]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric and len(values) > 12:  # a grid: bars at their values
            xs = np.asarray(values, dtype=np.float64)
            width = float(np.min(np.diff(xs))) if len(xs) > 1 else 1.0
            ax.bar(xs, p, width=width * 0.9, color="#4c72b0")
        else:
            ax.bar(range(len(values)), p, color="#4c72b0")
            ax.set_xticks(range(len(values)), labels, rotation=30 if len(labels) > 5 else 0, ha="right")
        ax.set_ylabel("probability")
    else:
        xs = np.asarray([np.datetime64(v, "s") if hasattr(v, "toordinal") else v for v in values])
        dens = p if masses is None else np.where(masses, np.nan, p)
        ax.plot(xs, dens, color="#4c72b0")
        ax.fill_between(xs, np.nan_to_num(dens), alpha=0.25, color="#4c72b0")
        ax.set_ylabel("density")
        if masses is not None and masses.any():
            twin = ax.twinx()
            twin.vlines(xs[masses], 0, p[masses], color="#c44e52", linewidth=3)
            twin.set_ylim(0, 1)
            twin.set_ylabel("point mass (probability)", color="#c44e52")
    ax.set_xlabel(column)
    ax.set_title(title)
    atomic_write_bytes(out, _png(figure))
    return out
