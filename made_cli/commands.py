"""The work behind each command after `train`: it computes and writes the run's files; cli.py prints."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import check_data, load_checkpoint
from .condition import Condition
from .config import check_seed, load_config
from .data import data_shape, display_values, read_npz
from .errors import BadArgument, UsageError
from .evaluation import condition_for
from .heads import check_rows
from .interface import EXACT, MARKOV_CHAIN, SUB_ENSEMBLE, DensityModel, Progress, Verification
from .kinds import KINDS, build_model, kind_of
from .models import OBSERVED_DRAWS
from .pictures import rows_by_class, save_png
from .queries import draw_rows, run_data
from .runs import SCHEMA_FILE, Run, atomic_write_bytes, atomic_write_text, find_runs, read_record
from .tables import read_table, table_bytes, table_format, text_table_bytes

log = logging.getLogger(__name__)  # what a command says besides its results; the CLI prints it

__all__ = [
    "OBSERVED_MASKS",
    "CompletionResult",
    "ScoreResult",
    "complete_run",
    "density_panels",
    "density_run",
    "evaluate_run",
    "impute_file",
    "list_runs",
    "observed_mask",
    "plot_runs",
    "sample_run",
    "score_run",
    "verify_target",
]


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def evaluate_run(
    run: Run,
    split: str,
    batch_size: int | None = None,
    samples: int | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """NLL on a split of the run's dataset; also recorded in <run>/evaluate.json by split.

    A VAE's NLL is the importance-weighted estimate with ``samples`` draws per image (default:
    the config's iaf.importance_samples), its ELBO from the same draws; ``seed`` fixes them.
    ``batch_size``: rows a pass (default: the config's train.eval_batch_size).
    """
    batch_size = run.config.train.eval_batch_size if batch_size is None else batch_size
    dataset = run_data(run)
    x = dataset.split(split)
    report: dict[str, Any] = {"run": str(run.dir), "split": split, "examples": int(x.shape[0])}
    report.update(run.model.evaluate(x, dataset.split_condition(split), batch_size, samples, seed, progress))
    report["bits_per_dim"] = dataset.bits_per_dim(report["nll_nats"], split)
    report["values"] = dataset.values
    if "marginal_nll_nats" in report:  # a class-conditional model's NLL of x alone
        report["marginal_bits_per_dim"] = dataset.bits_per_dim(report["marginal_nll_nats"], split)
    path = run.dir / "evaluate.json"
    try:
        previous = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        previous = {}
    atomic_write_text(path, json.dumps({**previous, split: report}, indent=2) + "\n")
    return report


def _as_array(x: torch.Tensor, values: str) -> np.ndarray:
    """Samples as saved: small integers for discrete values, float32 for reals."""
    return x.cpu().numpy().astype(np.uint8 if values in ("binary", "levels") else np.float32)


def sample_run(
    run: Run,
    n: int,
    seed: int,
    label: int | str | None = None,
    means: bool = False,
    given: list[str] | None = None,
    table_out: Path | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Draw ``n`` samples; write samples/seed<S>-n<N>[-label<L>|-given-...|-means].npy, a PNG grid
    for images, the labels of a class-conditional model's samples beside them, and for a table the
    samples as a table of its columns' values (class names, the context columns they were drawn
    given: those of random test rows) at ``table_out`` (default: the .csv beside the .npy).

    ``given`` (a table's ``col=value`` items: modelled, label or context columns) fixes cells:
    the rows are drawn from the model's law given them (``queries.sample_given``: exact where the
    orderings allow, else by Markov chains of ``steps`` moves); the result's "given" says how.
    A VAE draws z from the prior and decodes in one pass; ``means`` keeps p(x_d = 1 | z)."""
    if n < 1:
        raise BadArgument("n", f"must be at least 1 (got {n})")
    check_seed(seed)
    table = run.table_schema
    if table_out is not None:
        if table is None:
            raise BadArgument(
                "out", f"writes a table's samples; the model in {run.dir} was not trained on a table"
            )
        if table_format(table_out) is None or table_out.is_dir():
            raise BadArgument("out", f"must be a .csv, .tsv or .parquet file (got {table_out})")
    x, drawn_given, sampled = draw_rows(run, n, seed, label, means, given, steps)
    labels, context = drawn_given.labels, drawn_given.context
    named = "" if label is None else "-label" + re.sub(r"[^A-Za-z0-9_.-]", "_", str(label))
    if given:
        named += "-given-" + re.sub(r"[^A-Za-z0-9_.=-]+", "_", ",".join(given))[:80]
    stem = f"seed{seed}-n{n}{named}" + ("-means" if means else "")
    out: dict[str, Any] = {"npy": run.dir / "samples" / f"{stem}.npy"}
    # everything is computed before anything is written: a failure leaves the run as it was
    csv_path = out["npy"].with_suffix(".csv") if table_out is None else table_out
    csv = None if table is None else table_bytes(table.decode(x, labels, context), csv_path)
    title = f"class {label}" if label is not None else None
    picture: tuple[torch.Tensor, int, dict[str, Any]] | None = None  # save_png's cells, columns, options
    pairs = False  # a table's pair plot: data against samples
    flat = table is None or not any(table.column_levels)  # no discrete column: a density on a grid
    if run.model.features == 2 and not run.model.head.discrete and context is None and flat:
        panels = density_panels(run.model, x, None if labels is None else sorted(set(labels.tolist())))
        picture = (panels, 2, {"headings": ["model density", f"{n} samples"], "title": title})
    elif table is not None:  # the pair plot: data against samples, when the run's file is there
        try:
            dataset = run_data(run)
        except UsageError as e:
            log.info(f"no pair plot: the run's test rows cannot be read ({e})")
        else:
            test, weights = dataset.test, None
            test_labels = dataset.split_labels("test")
            if labels is not None and test_labels is not None:  # the data in the samples' mix of classes
                share = torch.bincount(labels, minlength=run.model.classes).double() / len(labels)
                present = torch.bincount(test_labels, minlength=run.model.classes).double()
                if bool((present[share > 0] > 0).all()):  # else every test row counts alike
                    weights = (share / present.clamp_min(1))[test_labels].numpy()
            pairs = True
    elif run.image_shape:
        shown = display_values(x, run.config.data).view(n, *run.image_shape)
        if labels is not None and label is None:  # the classes in turn: a row per class, labelled
            cells, ncol, names = rows_by_class(shown, labels)
            picture = (cells, ncol, {"row_labels": names})
        else:
            picture = (shown, math.ceil(math.sqrt(n)), {"title": title})
    _save_npy(out["npy"], x.numpy().astype(np.float32) if means else _as_array(x, run.config.data.values))
    if labels is not None:
        out["labels"] = run.dir / "samples" / f"{stem}-labels.npy"
        _save_npy(out["labels"], labels.numpy())
    if csv is not None:
        out["csv"] = csv_path
        atomic_write_bytes(csv_path, csv)
    if picture is not None:
        out["png"] = out["npy"].with_suffix(".png")
        save_png(out["png"], picture[0], picture[1], **picture[2])
    elif pairs and table is not None:
        from .plots import pair_plot

        out["png"] = out["npy"].with_suffix(".png")
        pair_plot(test.numpy(), x.numpy(), table.columns, out["png"], weights)
    if sampled is not None:
        out["given"] = sampled
    return out


DENSITY_PIXELS = 160  # a 2-D picture's side: the density and the samples on the same grid
_HISTOGRAM_CELL = 4  # density pixels per side of one histogram bin


@torch.no_grad()
def density_panels(model: DensityModel, x: torch.Tensor, classes: list[int] | None) -> torch.Tensor:
    """Two grey panels (2, P, P) over the square that holds the samples ``x`` (n, 2): the model's
    density on a P x P grid (the mean over ``classes`` for a class-conditional model, as the
    samples were drawn), and a histogram of the samples over the same square in bins of 4 x 4
    pixels; each scaled to its peak.
    Rows run from high y at the top to low y at the bottom, as in a plot."""
    p = DENSITY_PIXELS
    low = torch.quantile(x, 0.005, dim=0)
    high = torch.quantile(x, 0.995, dim=0)
    centre, half = (low + high) / 2, float((high - low).max()) * 0.6 + 1e-6
    side = (torch.arange(p, dtype=torch.float64) + 0.5) / p * 2 * half - half
    xs, ys = centre[0] + side, centre[1] + side.flip(0)  # image rows: y from high to low
    grid = torch.stack([xs.repeat(p), ys.repeat_interleave(p)], 1)  # (P * P, 2), row-major
    device = next(model.parameters()).device
    grid = grid.to(device, next(model.parameters()).dtype)
    if classes is None:
        log_p = model.log_prob(grid)
    else:
        per = [model.log_prob(grid, Condition(torch.full((p * p,), y, device=device))) for y in classes]
        log_p = torch.logsumexp(torch.stack(per), 0) - math.log(len(classes))
    density = (log_p - log_p.max()).exp().view(p, p).cpu().float()
    bins = p // _HISTOGRAM_CELL  # coarser than the density: a few thousand samples fill them
    col = ((x[:, 0].double() - (centre[0] - half)) / (2 * half) * bins).floor().long()
    row = (((centre[1] + half) - x[:, 1].double()) / (2 * half) * bins).floor().long()
    inside = (col >= 0) & (col < bins) & (row >= 0) & (row < bins)
    counts = torch.zeros(bins * bins).index_add_(0, (row * bins + col)[inside], torch.ones(int(inside.sum())))
    cell = _HISTOGRAM_CELL
    counts = counts.view(bins, bins).repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    return torch.stack([density, counts / counts.max().clamp_min(1)])


OBSERVED_MASKS = ("top", "bottom", "left", "right", "centre", "random")


def observed_mask(
    which: str,
    features: int,
    image_shape: tuple[int, int] | None,
    rows: int,
    generator: torch.Generator,
    fraction: float = 0.5,
) -> torch.Tensor:
    """Which dimensions are observed (rows, D) bool.

    top, bottom, left, right: that half of each image is observed; centre: all but a centre
    square of half the side; random: each dimension with probability ``fraction``. Data that
    are not images have a first (top) and last (bottom) half of their dimensions.
    """
    if which not in OBSERVED_MASKS:
        raise BadArgument("mask", f"must be one of {', '.join(OBSERVED_MASKS)} (got {which!r})")
    if which == "random":
        if not 0.0 < fraction < 1.0:
            raise BadArgument("fraction", f"must be between 0 and 1 (got {fraction})")
        return torch.rand(rows, features, generator=generator) < fraction
    if image_shape is None:
        if which not in ("top", "bottom"):
            raise BadArgument("mask", f"{which} needs image data; for these data use top, bottom or random")
        image_shape = (features, 1)
    h, w = image_shape
    grid = torch.zeros(h, w, dtype=torch.bool)
    if which == "top":
        grid[: h // 2] = True
    elif which == "bottom":
        grid[h - h // 2 :] = True
    elif which == "left":
        grid[:, : w // 2] = True
    elif which == "right":
        grid[:, w - w // 2 :] = True
    else:  # centre: the square of half the side in the middle is missing
        grid[:] = True
        grid[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = False
    return grid.reshape(1, -1).expand(rows, -1).clone()


@dataclass(frozen=True)
class CompletionResult:
    paths: dict[str, Path]
    indices: list[int]
    mask: str  # which observed set, in words
    conditional_nll: float  # mean -log p(missing | observed) in nats over the exact images; NaN if none
    conditional_bpd: float | None  # the same per missing dimension in bits, for discrete data
    missing: float  # dimensions sampled per image, on average
    exact_images: int  # images completed exactly from the model (every member generates observed first)
    sub_ensemble_images: int  # images completed exactly from the members that do, not from all
    approximate_by: str | None = None  # how a model with no exact conditional completed (a VAE)
    chain_images: int = 0  # images completed by Markov chains (the rows that are not exact)
    steps: int = 0  # Metropolis-Hastings moves of each chain
    acceptance: float = math.nan  # share of moves accepted, over the chains
    acceptance_range: tuple[float, float] = (math.nan, math.nan)  # the lowest and highest image's
    ess: float = math.nan  # effective sample size per image, mean over the chained images (per_image > 1)
    seconds_per_image: float = math.nan  # wall time of the completion, per image


_MISSING_RGB = (0.15, 0.25, 0.6)  # missing pixels in the pictures: a colour no image has


def complete_run(
    run: Run,
    n: int,
    per_image: int,
    seed: int,
    mask: str = "top",
    fraction: float = 0.5,
    rounds: int | None = None,
    steps: int | None = None,
) -> CompletionResult:
    """Complete ``n`` random test images from an observed part (``observed_mask``), ``per_image``
    times each, as the model completes: a MADE exactly where its ordering generates the observed
    dimensions first, else by Markov chains of ``steps`` moves that target p(missing | observed)
    (0: the approximate first draw); a VAE by ``rounds`` of iterative imputation, approximately.
    Writes the arrays (.npz), what each row got (.json) and a picture (.png) for images."""
    if n < 1 or per_image < 1:
        raise BadArgument(("n", "per_image"), "must be at least 1")
    check_seed(seed)
    dataset = run_data(run)
    test = dataset.test
    generator = torch.Generator().manual_seed(seed)
    # The test file is sorted by digit: pick at random, never the first n.
    indices = torch.randperm(test.shape[0], generator=generator)[: min(n, test.shape[0])]
    k, d = len(indices), run.model.features
    device = next(run.model.parameters()).device
    originals = test[indices].to(device)  # (n, D)
    observed = observed_mask(mask, d, run.image_shape, k, generator, fraction).to(device)
    given = condition_for(run.model, dataset.split_condition("test")).rows(indices).to(device)
    labels, context = given.labels, given.context  # given to a conditional model
    observed &= ~torch.isnan(originals)  # a table's missing test cell is drawn, not observed
    start = time.perf_counter()
    done = run.model.complete_rows(
        given.with_cells(torch.where(observed, originals, torch.nan)), per_image, generator, rounds, steps,
        truth=originals,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    cond = done.conditional
    exact_rows = torch.tensor([s == EXACT for s in done.status], dtype=torch.bool, device=cond.device)
    missing = (~observed).sum(1).float()
    cond_nll = float(-cond[exact_rows].mean()) if exact_rows.any() else math.nan
    bpd = None
    if run.model.head.discrete and exact_rows.any():
        bpd = float((-cond[exact_rows] / missing[exact_rows]).mean() / math.log(2))
    completions = done.values.view(k, per_image, d).cpu()
    chained = [s == MARKOV_CHAIN for s in done.status]
    acceptance = torch.full((k,), math.nan) if done.acceptance is None else done.acceptance.float()
    ess = torch.full((k,), math.nan) if done.ess is None else done.ess.float()
    # runs of another length (0: the first draw alone) get files of their own
    steps_suffix = f"-steps{done.steps}" if done.method is None and not all(exact_rows.tolist()) else ""
    stem = run.dir / "completions" / f"{mask}-seed{seed}-n{k}{steps_suffix}"
    paths = {"npz": stem.with_suffix(".npz"), "json": stem.with_suffix(".json")}
    buffer = io.BytesIO()
    values = run.config.data.values
    np.savez(
        buffer,
        indices=indices.numpy(),
        originals=_as_array(originals, values),
        observed=observed.cpu().numpy(),
        completions=_as_array(completions, values),
        exact=exact_rows.cpu()[:, None].expand(k, per_image).numpy(),
        status=np.array(done.status),
        steps=np.array(done.steps),
        acceptance=acceptance.numpy(),
        ess=ess.numpy(),
    )
    rows_json = [
        {
            "index": int(i), "status": s, "steps": done.steps if c else 0,
            "acceptance": None if math.isnan(a) else round(float(a), 4),
            "effective_sample_size": None if math.isnan(e) else round(float(e), 2),
            "conditional_nll_nats": None if math.isnan(v) else round(-float(v), 4),
        }
        for i, s, c, a, e, v in zip(
            indices.tolist(), done.status, chained, acceptance.tolist(), ess.tolist(), cond.cpu().tolist(),
            strict=True,
        )
    ]  # fmt: skip
    record = {"mask": mask, "seed": seed, "per_image": per_image, "seconds": round(seconds, 3)}
    record["rows"] = rows_json
    if done.method is not None:
        record["method"] = done.method
    atomic_write_bytes(paths["npz"], buffer.getvalue())
    atomic_write_text(paths["json"], json.dumps(record, indent=2) + "\n")
    table = run.table_schema
    if table is not None:  # each test row, then its completions, in the columns' own values
        rows = torch.cat([originals.cpu()[:, None], completions], 1).reshape(-1, d)
        y = None if labels is None else labels.cpu().repeat_interleave(1 + per_image)
        c = None if context is None else context.cpu().repeat_interleave(1 + per_image, 0)
        decoded = table.decode(rows, y, c)
        drawn = ["original", *(f"completion {j + 1}" for j in range(per_image))]
        decoded = decoded.add_column(0, "test_row", _arrow(indices.repeat_interleave(1 + per_image).numpy()))
        decoded = decoded.add_column(1, "version", _arrow(np.array(drawn * k)))
        paths["csv"] = stem.with_suffix(".csv")
        atomic_write_bytes(paths["csv"], table_bytes(decoded, paths["csv"]))
    if run.image_shape:
        shown = display_values(torch.cat([originals.cpu()[:, None], completions], 1), run.config.data)
        rgb = shown[:, :, None].expand(-1, -1, 3, -1).clone()  # (n, 1 + per_image, 3, D)
        hidden = torch.tensor(_MISSING_RGB)[:, None].expand(3, d)
        partial = torch.where(observed.cpu()[:, None], rgb[:, 0], hidden)  # observed part only
        rows = torch.cat([rgb[:, :1], partial[:, None], rgb[:, 1:]], 1)
        paths["png"] = stem.with_suffix(".png")
        spanned = ("completions", per_image) if per_image > 1 else "completion"
        names = None if labels is None else [f"class {int(c)}" for c in labels.tolist()]
        save_png(
            paths["png"],
            rows.view(-1, 3, *run.image_shape),
            2 + per_image,
            headings=["original", "observed", spanned],
            row_labels=names,
        )
    described = f"{mask} ({fraction:.0%} observed at random)" if mask == "random" else mask
    in_chain = torch.tensor(chained, dtype=torch.bool)
    return CompletionResult(
        paths=paths,
        indices=indices.tolist(),
        mask=described,
        conditional_nll=cond_nll,
        conditional_bpd=bpd,
        missing=float(missing.mean()),
        exact_images=int(exact_rows.sum()),
        sub_ensemble_images=done.status.count(SUB_ENSEMBLE),
        approximate_by=done.method,
        chain_images=sum(chained),
        steps=done.steps,
        acceptance=float(acceptance[in_chain].mean()) if any(chained) else math.nan,
        acceptance_range=(float(acceptance[in_chain].min()), float(acceptance[in_chain].max()))
        if any(chained)
        else (math.nan, math.nan),
        ess=float(ess[in_chain].nanmean()) if any(chained) and per_image > 1 else math.nan,
        seconds_per_image=seconds / k,
    )


@dataclass(frozen=True)
class ImputeResult:
    path: Path  # the completed table
    report: Path  # what each row got (.json)
    rows: int
    completed: int  # rows with cells drawn
    cells: int  # cells drawn per imputation
    per_row: int
    exact: int  # rows drawn exactly
    chain: int  # rows drawn by Markov chains
    steps: int
    acceptance: float  # mean over the chained rows
    ess: float  # mean effective sample size over the chained rows (per_row > 1)
    skipped: dict[str, int]  # rows not completed, by why
    others: dict[str, int]  # rows completed neither exactly nor by a chain, by how
    seconds: float


def _finite_mean(values: np.ndarray) -> float:
    """The mean of the finite values (NaN marks a row without them), NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def impute_file(
    run: Run,
    path: Path,
    out: Path | None = None,
    per_row: int = 1,
    steps: int | None = None,
    columns: list[str] | None = None,
    seed: int = 0,
) -> ImputeResult:
    """Fill every missing cell of the table ``path`` (and every cell of ``columns``) with a draw
    from the model's p(missing | observed) (``queries.complete_table``), keeping every observed
    cell as written; write it in ``out``'s format (default <run>/completions/<stem>-seed<S> in
    FILE's format) and what each row got beside it in the run (.json)."""
    from .queries import CONTEXT_MISSING, NOT_NEEDED, UNSEEN, complete_table, read_text_cells

    check_seed(seed)
    if per_row < 1:
        raise BadArgument("per_row", f"must be at least 1 (got {per_row})")
    schema = run.table_schema
    if schema is None:
        raise UsageError(
            f"the model in {run.dir} was not trained on a table: `made complete RUN` completes its test "
            "images"
        )
    if table_format(path) is None:
        raise UsageError(f"{path}: complete a table (.csv, .tsv or .parquet)")
    stem = f"{path.stem}-seed{seed}" + (f"-x{per_row}" if per_row > 1 else "")
    out = run.dir / "completions" / f"{stem}{path.suffix.lower()}" if out is None else out
    _check_out(out, path)
    table = read_table(path, schema.text_columns)
    text = (
        read_text_cells(path) if table_format(path) != "Parquet" and table_format(out) != "Parquet" else None
    )
    start = time.perf_counter()
    done = complete_table(run, table, path, per_row, steps, columns or (), seed, text)
    seconds = time.perf_counter() - start
    chained = [s == MARKOV_CHAIN for s in done.status]
    skipped: dict[str, int] = {}  # rows left as they are, by why
    others: dict[str, int] = {}  # rows completed neither exactly nor by a chain, by how
    for s in done.status:
        if s in (UNSEEN, CONTEXT_MISSING):
            skipped[s] = skipped.get(s, 0) + 1
        elif s not in (EXACT, MARKOV_CHAIN, NOT_NEEDED):
            others[s] = others.get(s, 0) + 1
    report = run.dir / "completions" / f"{out.stem}.json"
    rows_json = [
        {
            "row": i + 1, "status": s,
            "acceptance": None if math.isnan(a) else round(float(a), 4),
            "effective_sample_size": None if math.isnan(e) else round(float(e), 2),
        }
        for i, (s, a, e) in enumerate(
            zip(done.status, done.acceptance.tolist(), done.ess.tolist(), strict=True)
        )
    ]  # fmt: skip
    record = {"file": str(path), "out": str(out), "per_row": per_row, "steps": done.steps, "seed": seed,
              "columns": list(columns or []), "seconds": round(seconds, 3), "rows": rows_json}  # fmt: skip
    written = text_table_bytes(done.table, out) if text is not None else table_bytes(done.table, out)
    atomic_write_bytes(out, written)
    atomic_write_text(report, json.dumps(record, indent=2) + "\n")
    acc = done.acceptance[np.array(chained, dtype=bool)] if any(chained) else np.array([math.nan])
    ess = done.ess[np.array(chained, dtype=bool)] if any(chained) else np.array([math.nan])
    return ImputeResult(
        path=out, report=report, rows=len(done.status),
        completed=sum(s not in (NOT_NEEDED, UNSEEN) and s not in skipped for s in done.status),
        cells=done.cells,
        per_row=per_row, exact=done.status.count(EXACT), chain=sum(chained), steps=done.steps,
        acceptance=_finite_mean(acc), ess=_finite_mean(ess) if per_row > 1 else math.nan,
        skipped=skipped, others=others, seconds=seconds,
    )  # fmt: skip


@dataclass(frozen=True)
class DensityResult:
    paths: dict[str, Path]
    density: Any  # queries.ColumnDensity
    given: str
    lines: list[str]  # the law in a few lines: the likeliest values, or a real column's quantiles


def density_run(
    run: Run,
    column: str,
    given: list[str] | None,
    points: int = 200,
    draws: int = OBSERVED_DRAWS,
    seed: int = 0,
    out: Path | None = None,
) -> DensityResult:
    """p(column | given) on a grid (``queries.column_density``): written as a table (``out``, default
    <run>/densities/<column>[-given-...].csv) and a plot beside it (.png)."""
    from .queries import column_density, parse_given, safe_name

    check_seed(seed)
    if run.table_schema is None:
        raise UsageError(
            f"the model in {run.dir} was not trained on a table: a column's law needs named columns"
        )
    parsed = parse_given(run, given)
    result = column_density(run, column, parsed, points, draws, seed)
    given_text = ", ".join(f"{item}" for item in given or [])
    stem = safe_name(column) + (f"-given-{safe_name(given_text)}" if given_text else "")
    out = run.dir / "densities" / f"{stem}.csv" if out is None else out
    if table_format(out) is None:
        raise BadArgument("out", f"must end in .csv, .tsv or .parquet (got {out})")
    table = result.table
    values = table.column(column).to_pylist()
    key = "probability" if result.discrete else "density"
    p = np.asarray(table.column(key).to_numpy(zero_copy_only=False), dtype=np.float64)
    masses = np.array(table.column("measure").to_pylist()) == "probability"
    schema = run.table_schema
    shown_column = schema.label if schema.label is not None and column == schema.label.name else (
        schema.columns[schema.names.index(column)])  # fmt: skip
    categorical = bool(shown_column.categories)  # else numbers (a grid's probabilities, a density)
    lines = []
    if categorical:
        order = np.argsort(-p)[:8]
        lines = [f"  {values[i]}: {p[i]:.4f}" for i in order]
        if len(p) > 8:
            lines.append(f"  ... {len(p) - 8} more values, {p[np.argsort(-p)[8:]].sum():.4f} in all")
    else:  # numbers (dates as days): the mode, the median and a 90% interval
        grid = np.asarray(result.grid, dtype=np.float64)
        weights = p * result.weights
        cdf = np.cumsum(weights) / max(float(weights.sum()), 1e-300)
        at = [min(int(np.searchsorted(cdf, f)), len(grid) - 1) for f in (0.05, 0.5, 0.95)]
        top = int(np.argmax(np.where(masses & ~bool(result.discrete), 0.0, p)))
        lines = (
            [f"  P({column} = {values[i]}) = {p[i]:.4f}" for i in np.flatnonzero(masses)]
            if not result.discrete
            else []
        )
        shown = [
            f"{v:.5g}" if isinstance(v, float) else str(v) for v in (values[top], *(values[i] for i in at))
        ]
        lines.append(f"  mode {shown[0]}, median {shown[2]}, 90% between {shown[1]} and {shown[3]}")
    paths = {"table": out}
    png = out.with_suffix(".png")
    atomic_write_bytes(out, table_bytes(table, out))
    from .plots import density_plot

    density_plot(values, p, result.discrete, column, given_text, png, None if categorical else masses)
    paths["png"] = png
    return DensityResult(paths, result, given_text, lines)


@dataclass(frozen=True)
class ScoreResult:
    path: Path  # the scores written
    rows: int
    estimator: str  # how log p(x) was computed
    mean: float  # of log p(x) over the rows that score above -inf, in nats
    low: float
    high: float
    threshold: float | None = (
        None  # --flag-below: the validation split's Q-quantile of log p(x) (complete rows)
    )
    flagged: int | None = None  # rows scoring below their threshold
    gaps: int = 0  # rows with missing cells (scored by log p of their observed cells)
    sampled: int = 0  # of them, rows whose log p was estimated by importance sampling
    gaps_estimator: str | None = None  # how the rows with missing cells were scored
    unseen: int = 0  # rows with a category no training row had: -inf, flagged
    pattern_thresholds: list[tuple[str, float]] | None = None  # --flag-below: per set of missing columns


SCORE_COLUMN, FLAG_COLUMN, SAMPLES_COLUMN = "log_prob", "outlier", "importance_samples"
MISSING_COLUMN, ESTIMATOR_COLUMN = "missing", "estimator"


def _npz_rows(run: Run, path: Path) -> tuple[Any, torch.Tensor, torch.Tensor | None]:
    """(a table of row numbers to copy through, x (N, D), labels) of an npz (array ``x``, or its
    one array; optional ``labels``) for a run not trained on a table."""
    import pyarrow as pa

    if table_format(path) is not None:
        raise UsageError(f"the model in {run.dir} was not trained on a table: score an .npz of its rows")
    if path.suffix.lower() != ".npz":
        raise UsageError(f"{path}: score a table (.csv, .tsv, .parquet) or an .npz (got '{path.suffix}')")
    arrays = read_npz(path)
    data = [k for k in arrays if k != "labels"]
    key = "x" if "x" in arrays else (data[0] if len(data) == 1 else None)
    if key is None:
        raise UsageError(f"{path}: name the rows 'x' (it holds {', '.join(sorted(arrays)) or 'no arrays'})")
    x = arrays[key]
    if x.ndim != 2 or x.shape[0] == 0 or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise UsageError(f"{path}: '{key}' must be a non-empty numeric (N, D) array, got {x.dtype} {x.shape}")
    labels = None
    if "labels" in arrays:
        y = arrays["labels"]
        if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise UsageError(f"{path}: 'labels' must be ({x.shape[0]},) integers")
        labels = torch.from_numpy(y.astype(np.int64))
    return pa.table({"row": np.arange(x.shape[0])}), torch.from_numpy(x.astype(np.float32)), labels


@torch.no_grad()
def _log_probs(run: Run, x: torch.Tensor, given: Condition, batch_size: int) -> torch.Tensor:
    """log p(x) (N,) in batches, row r's noise (if the estimate draws any) seeded by r; a
    class-conditional model given no labels sums the label out."""
    model: Any = run.model
    device = next(model.parameters()).device
    out = []
    for i in range(0, x.shape[0], batch_size):
        rows = torch.arange(i, min(i + batch_size, x.shape[0]))
        b, g = x[rows].to(device), given.rows(rows).to(device)
        if model.classes and given.labels is None:
            out.append(model.marginal_log_prob(b, g, rows=rows).double().cpu())
        else:
            out.append(model.log_prob(b, g, rows=rows).double().cpu())
    return torch.cat(out)


def _check_out(out: Path, path: Path) -> None:
    """``out`` is a table file that may be written (not a folder, not the input)."""
    if table_format(out) is None:
        raise BadArgument("out", f"must end in .csv, .tsv or .parquet (got {out})")
    if out.is_dir():
        raise BadArgument("out", f"is a folder ({out}); name the file to write")
    if out.exists() and out.resolve() == path.resolve():
        raise BadArgument("out", f"is the file being read ({path}); write elsewhere")


def _missing_names(schema: Any, pattern: torch.Tensor, blank_label: bool = False) -> str:
    names = [n for n, gap in zip(schema.names, pattern.tolist(), strict=True) if gap]
    names += [f"the label {schema.label.name}"] if blank_label else []
    return "complete rows" if not names else "rows lacking " + ", ".join(names)


def score_run(
    run: Run,
    path: Path,
    out: Path | None = None,
    flag_below: float | None = None,
    batch_size: int | None = None,
    draws: int = OBSERVED_DRAWS,
    seed: int = 0,
) -> ScoreResult:
    """log p(x) in nats of every row of ``path``, written with the file's own columns (copied
    through) as CSV, TSV or Parquet by ``out``'s extension (default <run>/scores/<stem>.csv).

    A table's row with missing cells scores log p(observed cells) (``queries.score_table``:
    exact where the orderings allow, else importance sampling with ``draws`` completions per
    member), with a ``missing`` column (cells it lacked) and an ``estimator`` column where rows
    differ; a row with a category no training row had scores -inf and is flagged.

    ``flag_below`` Q adds a boolean ``outlier`` column: rows below the Q-quantile of the
    validation split's log p, computed the same way with the same cells blanked (a row lacking
    cells is compared with validation rows lacking the same cells). A class-conditional model is
    scored given the file's labels when it has them, with the label summed out otherwise.
    """
    if flag_below is not None and not 0.0 < flag_below < 1.0:
        raise BadArgument("flag_below", f"must be between 0 and 1 (got {flag_below})")
    check_seed(seed)
    out = run.dir / "scores" / f"{path.stem}.csv" if out is None else out
    _check_out(out, path)
    batch_size = run.config.train.eval_batch_size if batch_size is None else batch_size
    schema = run.table_schema
    model: Any = run.model
    k = getattr(model, "importance_samples", None)  # a VAE's score is an estimate: K goes with each row
    added = [SCORE_COLUMN, *([SAMPLES_COLUMN] if k is not None else [])]
    added += [FLAG_COLUMN] if flag_below is not None else []
    labels: torch.Tensor | None
    scored = None
    if schema is not None:
        if table_format(path) is None:
            raise UsageError(f"the model in {run.dir} was trained on a table: score a table with its columns")
        from .queries import score_table

        table = read_table(path, schema.text_columns)
        added += [MISSING_COLUMN, ESTIMATOR_COLUMN]
        _check_free(table, path, added)
        scored, rows = score_table(run, table, path, draws, seed, batch_size)
        x, labels = rows.x, rows.labels
        scores = torch.from_numpy(scored.log_prob)
    else:
        table, x, labels = _npz_rows(run, path)
        _check_free(table, path, added)
        check_data(x.shape[1], model.classes, model.features, 0, f"the model in {run.dir}")
        if labels is not None and not model.classes:
            labels = None  # an npz's labels, for a model that takes none
        try:
            check_rows(x, model.features, model.head)
            if labels is not None:  # none: a class-conditional model sums the label out
                Condition(labels).check(model.classes, model.context_features, x.shape[0])
        except ValueError as e:
            raise UsageError(f"{path}: {e}") from None
        scores = _log_probs(run, x, Condition(labels), batch_size)
    table = table.append_column(SCORE_COLUMN, _arrow(scores.numpy()))
    conditional = labels is not None or not model.classes
    estimator = model.log_prob_estimator if conditional else model.marginal_estimator
    if k is not None:
        table = table.append_column(SAMPLES_COLUMN, _arrow(np.full(x.shape[0], k)))
    gaps = torch.isnan(x).any(1) if scored is not None else torch.zeros(x.shape[0], dtype=torch.bool)
    if scored is not None:
        gaps &= ~torch.from_numpy(scored.unseen)
        table = table.append_column(MISSING_COLUMN, _arrow(scored.missing))
        kinds = scored.estimators()
        if len(set(kinds)) > 1:
            table = table.append_column(ESTIMATOR_COLUMN, _arrow(np.array(kinds)))
    threshold = flagged = None
    per_pattern: list[tuple[str, float]] | None = None
    if flag_below is not None:
        try:
            dataset = run_data(run)
        except UsageError as e:
            why = f"compares with the run's validation rows, which cannot be read: {e}"
            raise BadArgument("flag_below", why) from None
        valid = dataset.split_condition("valid")  # the labels only if the scored rows have theirs
        valid = Condition(valid.labels if labels is not None else None, valid.context)
        if scored is None:
            reference = _log_probs(run, dataset.valid, valid, batch_size)
            threshold = float(torch.quantile(reference, flag_below))
            below = (scores < threshold).numpy()
        else:
            from .queries import pattern_thresholds

            seen = ~torch.from_numpy(scored.unseen)
            blank = torch.zeros(x.shape[0], 1, dtype=torch.bool)  # a blank label: summed out, its own kind
            if labels is not None:
                blank = ((labels < 0) & seen)[:, None]
            pattern = torch.cat([torch.isnan(x) & gaps[:, None], blank], 1)
            patterns, which = torch.unique(pattern, dim=0, return_inverse=True)
            limits = pattern_thresholds(
                run, patterns[:, :-1], dataset.valid, valid, flag_below, draws, seed, patterns[:, -1],
            )  # fmt: skip
            below = ((scores < limits[which]) | ~seen).numpy()
            complete = ~patterns.any(1)
            threshold = float(limits[complete][0]) if bool(complete.any()) else None
            per_pattern = [
                (_missing_names(schema, p[:-1], bool(p[-1])), float(v))
                for p, v in zip(patterns, limits, strict=True)
            ]
        flagged = int(below.sum())
        table = table.append_column(FLAG_COLUMN, _arrow(below))
    atomic_write_bytes(out, table_bytes(table, out))
    finite = scores[torch.isfinite(scores)]
    finite = finite if len(finite) else scores
    return ScoreResult(
        path=out, rows=x.shape[0], estimator=estimator, mean=float(finite.mean()), low=float(finite.min()),
        high=float(finite.max()), threshold=threshold, flagged=flagged, gaps=int(gaps.sum()),
        sampled=int((gaps & ~torch.from_numpy(scored.exact)).sum()) if scored is not None else 0,
        gaps_estimator=None if scored is None or not bool(gaps.any()) else _gaps_estimator(draws),
        unseen=int(scored.unseen.sum()) if scored is not None else 0, pattern_thresholds=per_pattern,
    )  # fmt: skip


def _gaps_estimator(draws: int) -> str:
    return (
        "log p of the observed cells: exact where the orderings allow, else importance sampling, "
        f"{draws} draws per member"
    )


def _check_free(table: Any, path: Path, names: list[str]) -> None:
    for name in names:
        if name in table.column_names:
            raise UsageError(f"{path} already has a column {name!r}; rename it to keep it apart from scores")


def _arrow(values: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.array(values)


def plot_runs(runs: list[Path], out: Path | None = None) -> Path:
    """Training curves of runs (their run directories; none: the newest) in one PNG: ``out``,
    else <run>/plots/curves.png for one run and curves.png here for several."""
    from .plots import plot_curves, read_curves
    from .runs import resolve_run

    dirs = [resolve_run(r) for r in runs] if runs else [resolve_run(None)]
    if out is None:
        out = dirs[0] / "plots" / "curves.png" if len(dirs) == 1 else Path("curves.png")
    if out.suffix.lower() != ".png":
        raise BadArgument("out", f"must end in .png (got {out})")
    if out.is_dir():
        raise BadArgument("out", f"is a folder ({out}); name the file to write")
    return plot_curves([read_curves(d) for d in dirs], out)


def verify_target(target: Path | None, points: int) -> tuple[str, Verification, Path | None]:
    """Verify a run's model, or a freshly built model for a config file; returns (what, the
    checks as table rows, the run directory or None for a config)."""
    from .runs import load_run

    if target is not None and target.suffix in (".yaml", ".yml"):
        cfg = load_config(target)
        shape = data_shape(cfg.data)
        classes = shape.classes if cfg.model.condition_on == "label" else 0
        model = build_model(cfg, shape.features, classes, columns=shape.columns, context=shape.context)
        what = f"config {target} (untrained)"
        run_dir = None
    else:
        run = load_run(target)
        cfg, model, what, run_dir = run.config, run.model, f"run {run.dir}", run.dir
    checks = kind_of(cfg.model.kind).verify(model, points)
    if run_dir is not None:
        payload = {"ok": all(checks.ok), "unit": checks.unit, "rows": checks.records}
        atomic_write_text(run_dir / "verify-ar.json", json.dumps(payload, indent=2) + "\n")
    return what, checks, run_dir


def _checkpoint_status(run_dir: Path) -> str:
    """Whether the checkpoint the commands use (best, else last) loads: "ok", "none", or why not."""
    checkpoints = run_dir / "checkpoints"
    path = next((checkpoints / f for f in ("best.pt", "last.pt") if (checkpoints / f).is_file()), None)
    if path is None:
        return "none"
    try:
        load_checkpoint(path, mmap=True)
    except UsageError as e:
        return f"does not load: {e}"
    return "ok"


def list_runs(parent: Path) -> list[dict[str, Any]]:
    """One summary per run under ``parent``: dataset, model, epochs, best valid and test NLL
    (or what the kind's ``measure`` is), whether its checkpoint loads, and its run.json record."""
    import yaml

    rows = []
    for run_dir in find_runs(parent):
        try:
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        except yaml.YAMLError:
            cfg = {}
        # a hand-edited file may hold anything: keep only sections that are mappings
        cfg = {k: v for k, v in cfg.items() if isinstance(v, dict)} if isinstance(cfg, dict) else {}
        valid, test, epochs = math.inf, None, 0
        metrics = run_dir / "metrics.jsonl"
        try:
            records = [json.loads(line) for line in metrics.read_text().splitlines()]
        except (OSError, json.JSONDecodeError):  # none yet, or unreadable: show the run without
            records = []
        for m in records:
            if isinstance(m, dict):
                if m.get("split") == "valid":
                    valid, epochs = min(valid, m["nll"]), max(epochs, m["epoch"])
                elif m.get("split") == "test":
                    test = m["nll"]
        name = str((cfg.get("model") or {}).get("kind", "made"))
        kind = KINDS.get(name)
        rows.append({
            "run": str(run_dir),
            "checkpoint": _checkpoint_status(run_dir),
            "record": read_record(run_dir),
            "data": (cfg.get("data") or {}).get("name", "?"),
            "values": (cfg.get("data") or {}).get("values", "binary"),
            "kind": name,
            "model": kind.summary(cfg) if kind else f"unknown kind {name!r}",
            "measure": kind.measure if kind else "NLL",
            "note": kind.note if kind else None,
            "epochs": epochs,
            "best_valid_nll": None if math.isinf(valid) else valid,
            "test_nll": test,
            "columns": _column_lines(run_dir),
        })  # fmt: skip
    return rows


def _column_lines(run_dir: Path) -> list[str]:
    """A table run's modelled columns with their laws, and those left out (from schema.json)."""
    from .tables import TableSchema

    try:
        return TableSchema.from_dict(json.loads((run_dir / SCHEMA_FILE).read_text())).column_lines()
    except (OSError, ValueError, KeyError, TypeError):
        return []
