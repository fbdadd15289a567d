"""What a trained table model answers about rows with gaps and about named columns: log p of the
observed cells, imputations of the missing ones, samples given some cells, and one column's law
given others. Each works on pyarrow tables; commands.py writes files and runs.Run wraps them for
pandas.

A MADE answers all four from its own conditionals: exactly where every member generates the
given cells first, else by importance sampling (scores, densities) or by the Metropolis-Hastings
chains of ``MADEModel.complete_chain`` (imputations, samples). A flow completes and samples given
cells where its orderings allow (``MAF.incomplete_reason``) and refuses the rest in one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from .checkpoint import check_data, recorded_root, recorded_table
from .condition import Condition
from .data import Dataset, load_dataset
from .errors import BadArgument, UsageError
from .interface import EXACT, MARKOV_CHAIN, Completion
from .models import OBSERVED_DRAWS, MADEModel
from .tables import Column, TableSchema, table_format

if TYPE_CHECKING:
    import pyarrow as pa

    from .config import Config
    from .interface import DensityModel


class Run(Protocol):
    """What the questions need of a run (runs.Run), named here so that runs.Run can ask them."""

    dir: Path
    config: Config
    model: DensityModel
    checkpoint: dict[str, Any]

    @property
    def table_schema(self) -> TableSchema | None: ...


__all__ = [
    "ColumnDensity",
    "Given",
    "GivenSampling",
    "Imputation",
    "ScoredRows",
    "class_index",
    "column_density",
    "complete_table",
    "draw_rows",
    "parse_given",
    "run_data",
    "sample_context",
    "sample_given",
    "sample_labels",
    "score_table",
]

UNSEEN = "unseen value"  # a row with a category no training row had: it scores -inf
CONTEXT_MISSING = "context missing"  # a row without a context column's value: not completed


def _schema(run: Run) -> TableSchema:
    schema = run.table_schema
    if schema is None:
        raise UsageError(f"the model in {run.dir} was not trained on a table")
    return schema


def _made(run: Run, what: str) -> MADEModel:
    """The run's MADE, or a usage error saying that ``what`` needs one."""
    model = run.model
    if not isinstance(model, MADEModel):
        raise UsageError(
            f"{what} needs a MADE; the model in {run.dir} is model.kind: {run.config.model.kind}"
        )
    return model


def _device(run: Run) -> torch.device:
    return next(run.model.parameters()).device


# -- the run's data, labels and context ------------------------------------------------------------
def run_data(run: Run) -> Dataset:
    """The run's dataset, checked against what the model was trained on."""
    dataset = load_dataset(run.config.data, recorded_root(run.checkpoint), recorded_table(run.checkpoint))
    model = run.model
    check_data(dataset.features, dataset.classes, model.features, model.classes, f"the model in {run.dir}")
    return dataset


def class_index(run: Run, label: int | str) -> int:
    """A class as the user names it: a table's by its name in the label column (an integer label
    column's classes are named by their values, not their places), any other run's by its index
    0..C-1; a usage error otherwise."""
    classes = run.model.classes
    schema = run.table_schema
    if schema is not None:
        names = schema.class_names
        if str(label) not in names:
            raise BadArgument("label", f"must be one of {', '.join(names)} (got {label})")
        return names.index(str(label))
    try:
        index = int(label)
    except ValueError:
        index = -1
    if not 0 <= index < classes:
        raise BadArgument("label", f"must be between 0 and {classes - 1} (got {label})")
    return index


def sample_labels(run: Run, n: int, label: int | str | None) -> torch.Tensor | None:
    """Labels for ``n`` samples: ``label`` (an index, or a table's class name) for all, or the
    classes in turn; None if unconditional."""
    classes = run.model.classes
    if not classes:
        if label is not None:
            raise BadArgument("label", f"given, but the model in {run.dir} is not conditioned on labels")
        return None
    if label is None:
        return torch.arange(n) % classes
    return torch.full((n,), class_index(run, label))


def sample_context(run: Run, n: int, generator: torch.Generator) -> torch.Tensor | None:
    """Context columns for ``n`` samples: those of test rows drawn at random (with replacement),
    so that the samples follow the data's own mix of contexts; None without context columns."""
    if not run.model.context_features:
        return None
    try:
        test = run_data(run).split_context("test")
    except UsageError as e:
        raise UsageError(f"a model of context columns samples given its test rows' context: {e}") from None
    assert test is not None  # the dataset has the model's context columns (run_data checked)
    return test[torch.randint(test.shape[0], (n,), generator=generator)]


@dataclass(frozen=True)
class GivenSampling:
    """How samples given cells were drawn (``sample_run`` with ``given``)."""

    given: str  # the cells, as given
    status: str  # exact, or Markov chain
    steps: int = 0
    acceptance: float = math.nan
    ess: float = math.nan  # over the n chains' second halves


def draw_rows(
    run: Run,
    n: int,
    seed: int,
    label: int | str | None = None,
    means: bool = False,
    given: list[str] | Mapping[str, Any] | None = None,
    steps: int | None = None,
) -> tuple[torch.Tensor, Condition, GivenSampling | None]:
    """``n`` rows (n, D) as ``sample_run`` draws them, what they were drawn given (their labels
    and context, where the model takes them) and, given cells, how they were drawn."""
    if n < 1:
        raise BadArgument("n", f"must be at least 1 (got {n})")
    table = run.table_schema
    parsed = None
    if given:
        if table is None:
            raise BadArgument(
                "given", f"names a table's columns; the model in {run.dir} was not trained on a table"
            )
        parsed = parse_given(run, given)
        if parsed.condition.labels is not None:
            if label is not None:
                raise BadArgument("label", "and --given both name the class; give it once")
            label = table.class_names[int(parsed.condition.labels[0])]
    labels = sample_labels(run, n, label)
    generator = torch.Generator().manual_seed(seed)
    fixed = None if parsed is None else parsed.condition.context
    context = fixed.expand(n, -1).float() if fixed is not None else sample_context(run, n, generator)
    rows = Condition(labels, context)
    sampled: GivenSampling | None = None
    if parsed is not None and bool(parsed.condition.observed.any()):
        values, done = sample_given(run, n, parsed, rows, generator, steps)
        x = values.cpu()
        acceptance = math.nan if done.acceptance is None else float(done.acceptance.nanmean())
        ess = math.nan if done.ess is None or len(done.ess) > 1 else float(done.ess[0])
        status = MARKOV_CHAIN if MARKOV_CHAIN in done.status else done.status[0]
        sampled = GivenSampling(parsed.describe(), status, done.steps, acceptance, ess)
    else:
        x = run.model.draw(n, generator, rows.to(_device(run)), means=means).cpu()
    return x, rows, sampled


# -- given cells -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Given:
    """Cells fixed by name, as the model takes them: ``condition`` holds one row's given
    modelled cells (1, D) (NaN elsewhere), its class (1,) if given and its context columns
    (1, C) if every one is given."""

    condition: Condition
    names: tuple[str, ...]  # the columns given, in the order given

    def describe(self) -> str:
        return ", ".join(self.names)


def parse_given(run: Run, given: Mapping[str, Any] | Sequence[str] | None) -> Given:
    """``given`` as a mapping {column: value} or as the command line's ``col=value[,col=value]``
    items: modelled columns, the label column and the context columns (all or none). A usage
    error names a column the model does not have or a value its column cannot take."""
    schema = _schema(run)
    items: dict[str, Any] = {}
    if given is not None and not isinstance(given, Mapping):
        for item in given:
            for part in re.split(r",(?=[^,=]+=)", item):  # a comma inside a value stays
                name, eq, value = part.partition("=")
                if not eq or not name.strip():
                    raise BadArgument("given", f"takes column=value, not {part!r}")
                items[name.strip()] = value.strip()
    elif given is not None:
        items = dict(given)
    d = run.model.features
    x = torch.full((1, d), math.nan, dtype=torch.float64)
    label = None
    context: dict[str, float] = {}
    names = schema.names
    for name, value in items.items():
        try:
            if name in names:
                x[0, names.index(name)] = schema.columns[names.index(name)].encode_value(value)
            elif schema.label is not None and name == schema.label.name:
                label = int(schema.label.encode_value(value))
            elif name in schema.context:
                context[name] = Column(name, "real").encode_value(value)
            else:
                known = ", ".join([*names, *([schema.label.name] if schema.label else []), *schema.context])
                raise ValueError(f"the model has no column {name!r} (it has: {known})")
        except ValueError as e:
            raise BadArgument("given", str(e)) from None
    c = None
    if context:
        absent = [n for n in schema.context if n not in context]
        if absent:
            raise BadArgument(
                "given", f"gives some context columns; give every one (also {', '.join(absent)})"
            )
        c = torch.tensor([[context[n] for n in schema.context]], dtype=torch.float64)
    return Given(Condition(None if label is None else torch.tensor([label]), c, x), tuple(items))


# -- scores ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoredRows:
    """log p of each row's observed cells, and how it was computed."""

    log_prob: np.ndarray  # (N,) float64 nats; -inf for a row with an unseen value
    missing: np.ndarray  # (N,) int: modelled cells the row lacks
    exact: np.ndarray  # (N,) bool: computed exactly (else importance sampling)
    unseen: np.ndarray  # (N,) bool: a category no training row had
    draws: int  # importance-sampling completions per member, for the rows that needed them

    def estimators(self) -> list[str]:
        """Per row: "exact", "importance sampling" or "unseen value"."""
        return [
            UNSEEN if u else "exact" if e else "importance sampling"
            for u, e in zip(self.unseen.tolist(), self.exact.tolist(), strict=True)
        ]


def _labels_of(model: Any, labels: torch.Tensor | None, rows: torch.Tensor) -> list[int | None]:
    """Each row's class as scoring takes it: None for a model without labels, -1 where blank."""
    if not model.classes:
        return [None] * len(rows)
    if labels is None:
        return [-1] * len(rows)
    return [int(v) for v in labels[rows].tolist()]


@torch.no_grad()
def observed_log_probs(
    run: Run,
    x: torch.Tensor,
    given: Condition,
    draws: int = OBSERVED_DRAWS,
    seed: int = 0,
    batch_size: int = 1024,
    places: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(x_observed) (N,) float64, exact (N,) bool) for rows x with NaN in missing cells,
    ``given`` their labels and context; a class-conditional model's label -1 (or no labels) is
    summed out with its prior. Complete rows
    take the model's own ``log_prob``; rows with gaps need a MADE (``observed_log_prob``), whose
    importance sampling is seeded per row by (``seed``, its place in the file: ``places``, default
    its index), so a row scores the same whatever is scored with it."""
    model: Any = run.model
    device = _device(run)
    n = x.shape[0]
    out = torch.empty(n, dtype=torch.float64)
    exact = torch.ones(n, dtype=torch.bool)
    gaps = torch.isnan(x).any(1)
    if bool(gaps.any()):
        _made(run, "scoring rows with missing cells")
    places = torch.arange(n) if places is None else places
    dtype = next(model.parameters()).dtype
    y_all = _labels_of(model, given.labels, torch.arange(n))
    for has_gaps in (False, True):
        rows = (gaps == has_gaps).nonzero()[:, 0]
        step = max(1, batch_size // (draws * (model.classes or 1)) if has_gaps else batch_size)
        for i in range(0, len(rows), step):
            r = rows[i : i + step]
            b = x[r].to(device, dtype)
            g = Condition(context=given.rows(r).context).to(device, dtype)
            ys = [y_all[j] for j in r.tolist()]
            known = torch.tensor([y is not None and y >= 0 for y in ys])
            classes = [None] if not model.classes else list(range(model.classes))
            per_class = []
            for y in classes:  # each class given, then the label summed out where it is unknown
                if y is not None:
                    g = g.with_labels(torch.tensor(
                        [yy if k else y for yy, k in zip(ys, known.tolist(), strict=True)], device=device
                    ))  # fmt: skip
                if has_gaps:  # each row's importance sampling seeded by (seed, its place)
                    lp, ex = model.observed_log_prob(
                        b, ~torch.isnan(b), g, draws, seeds=_row_seeds(seed, places[r])
                    )
                    exact[r] &= ex.cpu()
                else:
                    lp = model.log_prob(b, g)
                per_class.append(lp.double().cpu())
            if not model.classes:
                out[r] = per_class[0]
                continue
            stacked = torch.stack(per_class)  # (classes, B)
            prior = model.label_log_prior.double().cpu()[:, None]
            summed = torch.logsumexp(stacked + prior, 0)
            own = stacked.gather(0, torch.tensor([max(y, 0) for y in ys])[None])[0]  # type: ignore[type-var]
            out[r] = torch.where(known, own, summed)
    return out, exact


def _row_seeds(seed: int, places: torch.Tensor) -> torch.Tensor:
    """Each row's own seed from (``seed``, its place in the file), whatever is scored with it."""
    return torch.tensor([hash((seed, int(place))) % 2**62 for place in places.tolist()], dtype=torch.long)


def score_table(
    run: Run, table: pa.Table, path: Path, draws: int = OBSERVED_DRAWS, seed: int = 0, batch_size: int = 1024
) -> tuple[ScoredRows, Any]:
    """Every row's log p(observed cells) (see ``observed_log_probs``) and the encoded rows; a row
    with a category no training row had scores -inf (the model gives it probability 0)."""
    if draws < 1:
        raise BadArgument("draws", f"must be at least 1 (got {draws})")
    schema = _schema(run)
    labels_given = schema.label is not None and schema.label.name in table.column_names
    rows = schema.encode(table, path, labels=labels_given, unseen=True)
    unseen = rows.unseen if rows.unseen is not None else np.zeros(table.num_rows, dtype=bool)
    if rows.context is not None and bool(torch.isnan(rows.context).any()):
        first = int(torch.isnan(rows.context).any(1).nonzero()[0, 0])
        raise UsageError(
            f"{path}: row {first + 1} lacks a context column, which the model is given, not models"
        )
    keep = torch.from_numpy(~unseen)
    log_p = np.full(table.num_rows, -math.inf)
    exact = np.ones(table.num_rows, dtype=bool)
    if bool(keep.any()):
        places = torch.from_numpy(np.flatnonzero(~unseen))
        lp, ex = observed_log_probs(run, rows.x[keep], rows.given.rows(keep), draws, seed, batch_size, places)
        log_p[~unseen] = lp.numpy()
        exact[~unseen] = ex.numpy()
    missing = schema.missing_cells(table).sum(1).astype(np.int64)  # not the unseen values' NaN
    return ScoredRows(log_p, missing, exact, unseen, draws), rows


def pattern_thresholds(
    run: Run,
    patterns: torch.Tensor,
    valid: torch.Tensor,
    given: Condition,
    quantile: float,
    draws: int,
    seed: int,
    blank_label: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per missing pattern (P, D) bool: the ``quantile`` of the validation rows' log p(observed
    cells) with the same cells blanked (``given`` their labels and context), so that a row with
    gaps is compared with rows of its own kind (log p of fewer cells is higher); where
    ``blank_label`` (P,) says so, with the label summed out, as a row without its label is scored."""
    out = []
    for i, pattern in enumerate(patterns):
        blanked = torch.where(pattern[None], torch.nan, valid)
        rows = given
        if given.labels is not None and blank_label is not None and bool(blank_label[i]):
            rows = given.with_labels(torch.full_like(given.labels, -1))
        lp, _ = observed_log_probs(run, blanked, rows, draws, seed)
        out.append(
            torch.quantile(lp[torch.isfinite(lp)], quantile) if bool(torch.isfinite(lp).any()) else -math.inf
        )
    return torch.tensor([float(v) for v in out], dtype=torch.float64)


# -- imputation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Imputation:
    """A table with its missing cells drawn, and what each row got."""

    table: pa.Table  # FILE's columns in its order; per_row > 1: each row per_row times, then ``imputation``
    status: list[str]  # per input row: exact, Markov chain, not needed (nothing missing), or why not
    acceptance: np.ndarray  # (N,) NaN where no chain ran
    ess: np.ndarray  # (N,) NaN where no chain ran or per_row is 1
    steps: int  # Metropolis-Hastings moves of each chain
    cells: int  # cells drawn per imputation


NOT_NEEDED = "nothing missing"
LABEL_SAMPLED = (
    "label from importance-sampled p(label | observed)"  # a blank label, its row's gaps drawn given it
)


def _decimals(texts: Sequence[str]) -> int:
    """The most digits after the point among number texts (at most 6): imputed numbers are
    written as finely as the column's own."""
    most = 0
    for t in texts:
        mantissa = t.strip().lower().partition("e")[0]
        if "." in mantissa:
            most = max(most, len(mantissa.partition(".")[2]))
    return min(most, 6)


def _spell(
    column: Column, values: np.ndarray, observed_text: Sequence[str], observed_codes: np.ndarray
) -> list[str]:
    """Model values of one column as the file writes them: a category as the file spells it, a
    number with the column's digits, a date as ISO text of the file's form."""
    decoded = column.decode(values)
    if column.categories:
        spelled: dict[int, str] = {}
        for text, code in zip(observed_text, observed_codes.tolist(), strict=True):
            if not math.isnan(code):
                spelled.setdefault(int(code), text)
        codes = np.clip(np.round(values), 0, column.levels - 1).astype(int)
        digits = _decimals(observed_text) if column.kind in ("integer", "real") else None

        def fresh(v: Any) -> str:  # a category no observed cell spells: numbers with the column's digits
            return "" if v is None else f"{float(v):.{digits}f}" if digits is not None else str(v)

        return [spelled.get(int(k), fresh(v)) for k, v in zip(codes, decoded, strict=True)]
    if column.kind in ("date", "timestamp"):
        texts = [str(v) for v in decoded.to_pylist()]
        if column.kind == "timestamp" and any("T" in t for t in observed_text):
            texts = [t.replace(" ", "T", 1) for t in texts]
        return texts
    if column.kind == "integer":  # 181, or 181.0 where the file writes whole numbers so
        return [f"{v:.{_decimals(observed_text)}f}" for v in np.round(values)]
    law = column.column_law()
    digits = _decimals(observed_text)
    if law.step is not None:  # at least the step's digits
        digits = max(digits, len(f"{law.step:.6g}".partition(".")[2]))
    return [f"{float(v):.{digits}f}" for v in np.asarray(decoded, dtype=np.float64)]


def read_text_cells(path: Path) -> pa.Table:
    """A CSV's or TSV's cells as the text written in it (an empty cell as ""), for output that
    keeps every observed cell as written."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    delimiter = "\t" if table_format(path) == "TSV" else ","
    names = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter)).column_names
    convert = pcsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter), convert_options=convert)


def complete_table(
    run: Run,
    table: pa.Table,
    path: Path,
    per_row: int = 1,
    steps: int | None = None,
    columns: Sequence[str] = (),
    seed: int = 0,
    text: pa.Table | None = None,
) -> Imputation:
    """Every missing cell of ``table``'s modelled columns (and every cell of ``columns``) drawn from
    the model's p(missing | observed): exactly where the orderings allow, else the end of a
    Markov chain of ``steps`` moves. Observed cells are kept as they are: as written in ``text``
    (the file's cells as text, ``read_text_cells``) when given, else as typed values."""
    import pyarrow as pa

    if per_row < 1:
        raise BadArgument("per_row", f"must be at least 1 (got {per_row})")
    schema = _schema(run)
    names = schema.names
    for name in columns:
        if name not in names:
            raise BadArgument(
                "columns", f"names {name!r}, which the model does not model (it has: {', '.join(names)})"
            )
    model: Any = run.model
    labels_given = schema.label is not None and schema.label.name in table.column_names
    if model.classes and not labels_given:
        raise UsageError(f"{path} has no label column {schema.label.name!r}, which the model completes given")  # type: ignore[union-attr]
    rows = schema.encode(table, path, labels=labels_given, unseen=True)
    n, _d = rows.x.shape
    unseen = rows.unseen if rows.unseen is not None else np.zeros(n, dtype=bool)
    observed = ~torch.isnan(rows.x)
    for name in columns:
        observed[:, names.index(name)] = False
    wanted = schema.missing_cells(table).any(1) | bool(columns)
    observed[torch.from_numpy(unseen)] = True  # not completed: left as they are
    status = [
        UNSEEN if u and w else NOT_NEEDED for u, w in zip(unseen.tolist(), wanted.tolist(), strict=True)
    ]
    blocked = torch.zeros(n, dtype=torch.bool)
    if rows.context is not None:
        blocked |= torch.isnan(rows.context).any(1)
    unknown = torch.zeros(n, dtype=torch.bool)  # a class-conditional model's blank label: drawn too
    if rows.labels is not None:
        unknown = (rows.labels < 0) & ~blocked & ~torch.from_numpy(unseen)
    todo = ((~observed).any(1) & ~blocked & ~unknown).nonzero()[:, 0]
    for i in ((~observed).any(1) & blocked).nonzero()[:, 0].tolist():
        status[i] = CONTEXT_MISSING
        observed[i] = True
    if not bool((~observed).any()) and not len(todo) and not bool(unknown.any()):
        if columns:
            raise UsageError(f"{path}: no row can be completed")
        raise UsageError(
            f"{path} has no missing cell in the modelled columns ({', '.join(names)}); --columns a,b redraws "
            "named columns in every row"
        )
    device = _device(run)
    dtype = next(model.parameters()).dtype
    values = rows.x.double().repeat_interleave(per_row, 0)  # (N * K, D)
    acceptance = np.full(n, math.nan)
    ess = np.full(n, math.nan)
    generator = torch.Generator().manual_seed(seed)
    done_steps = 0
    if len(todo):
        cells = torch.where(observed[todo], rows.x[todo], torch.nan)
        given = rows.given.rows(todo).with_cells(cells).to(device, dtype)
        try:
            done: Completion = model.complete_rows(given, per_row, generator, None, steps)
        except ValueError as e:
            raise UsageError(f"cannot complete {path} with the model in {run.dir}: {e}") from None
        index = (todo[:, None] * per_row + torch.arange(per_row)).reshape(-1)
        values[index] = done.values.double().cpu()
        for j, i in enumerate(todo.tolist()):
            status[i] = done.status[j]
        if done.acceptance is not None:
            acceptance[todo.numpy()] = done.acceptance.numpy()
        if done.ess is not None:
            ess[todo.numpy()] = done.ess.numpy()
        done_steps = done.steps
    label_codes = None
    if bool(unknown.any()):  # y ~ p(y | observed cells), then the row's gaps given it
        label_codes, label_steps = _draw_labels(
            run, rows, observed, unknown, per_row, steps, seed, generator, values, status, acceptance
        )
        done_steps = max(done_steps, label_steps)
    drawn = (~observed).repeat_interleave(per_row, 0)  # (N * K, D): the cells drawn
    take = np.repeat(np.arange(n), per_row)
    out = (text if text is not None else table).take(pa.array(take))
    x_np = rows.x.double().numpy()
    for j, column in enumerate(schema.columns):
        cells = drawn[:, j].numpy()
        if cells.any():
            out = _fill_column(out, column, np.where(cells, values[:, j].numpy(), np.nan), text, x_np[:, j])
    if label_codes is not None and schema.label is not None:
        out = _fill_column(out, schema.label, label_codes, text, rows.labels.double().numpy())  # type: ignore[union-attr]
    if per_row > 1:
        name = "imputation"
        if name in out.column_names:
            raise UsageError(
                f"{path} already has a column {name!r}; rename it to keep it apart from imputations"
            )
        out = out.append_column(name, pa.array(np.tile(np.arange(1, per_row + 1), n)))
    cells = (
        (int((~observed[todo]).sum()) if len(todo) else 0)
        + int((~observed[unknown]).sum())
        + int(unknown.sum())
    )
    return Imputation(out, status, acceptance, ess, done_steps, cells)


def _fill_column(
    out: pa.Table, column: Column, drawn: np.ndarray, text: pa.Table | None, own: np.ndarray
) -> pa.Table:
    """``out`` (each file row per_row times) with ``column``'s cells replaced where ``drawn``
    (N * K,) is not NaN: as the file writes them (``text``: its cells as text; ``own`` (N,) the
    encoded values, NaN where the file has none) or in the column's own type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = ~np.isnan(drawn)
    where = out.column_names.index(column.name)
    if text is not None:
        written = text.column(column.name).to_pylist()
        known = ~np.isnan(own)
        spelled = _spell(column, drawn[cells], [written[i] for i in np.flatnonzero(known)], own[known])
        new = np.array(out.column(where).to_pylist(), dtype=object)
        new[cells] = spelled
        return out.set_column(where, column.name, pa.array(new.tolist(), pa.string()))
    original = out.column(where)
    decoded = column.decode(np.nan_to_num(drawn))
    fresh = pa.array(decoded) if not isinstance(decoded, pa.Array) else decoded
    try:
        fresh = fresh.cast(original.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        fresh = fresh.cast(pa.string())
        original = original.cast(pa.string())
    return out.set_column(where, column.name, pc.if_else(pa.array(cells), fresh, original.combine_chunks()))


def _draw_labels(
    run: Run,
    rows: Any,
    observed: torch.Tensor,
    unknown: torch.Tensor,
    per_row: int,
    steps: int | None,
    seed: int,
    generator: torch.Generator,
    values: torch.Tensor,
    status: list[str],
    acceptance: np.ndarray,
) -> tuple[np.ndarray, int]:
    """For the rows whose label is blank (``unknown``): per imputation a label drawn from
    p(y | observed cells) (p(y) p(observed | y), exact or by importance sampling as scores are),
    then the row's gaps drawn given it (written into ``values``; ``status`` and ``acceptance``
    updated). Returns the labels (N * K,) as codes, NaN elsewhere, and the chains' moves."""
    model: Any = run.model
    device = _device(run)
    dtype = next(model.parameters()).dtype
    picked = unknown.nonzero()[:, 0]
    x = torch.where(observed[picked], rows.x[picked], torch.nan)
    context = rows.given.rows(picked).context
    per_class, exact = [], torch.ones(len(picked), dtype=torch.bool)
    for y in range(model.classes):
        lp, ex = observed_log_probs(
            run, x, Condition(torch.full((len(picked),), y), context), seed=seed, places=picked
        )
        per_class.append(lp)
        exact &= ex
    prior = model.label_log_prior.double().cpu()[:, None]
    posterior = torch.softmax(torch.stack(per_class) + prior, 0).T  # (R, classes)
    labels = torch.multinomial(posterior, per_row, replacement=True, generator=generator)  # (R, K)
    codes = np.full(values.shape[0], math.nan)
    index = (picked[:, None] * per_row + torch.arange(per_row)).reshape(-1)
    codes[index.numpy()] = labels.reshape(-1).double().numpy()
    gaps = (~observed[picked]).any(1)
    moves = 0
    for j, i in enumerate(picked.tolist()):
        status[i] = EXACT if bool(exact[j]) else LABEL_SAMPLED
    if bool(gaps.any()):
        sel = picked[gaps]
        cells = torch.where(observed[sel], rows.x[sel], torch.nan)
        given = rows.given.rows(sel).with_cells(cells).repeat(per_row)
        given = given.with_labels(labels[gaps].reshape(-1)).to(device, dtype)
        try:
            done: Completion = model.complete_rows(given, 1, generator, None, steps)
        except ValueError as e:
            raise UsageError(f"cannot complete the rows without a label: {e}") from None
        at = (sel[:, None] * per_row + torch.arange(per_row)).reshape(-1)
        values[at] = done.values.double().cpu()
        for j, i in enumerate(sel.tolist()):
            got = done.status[j * per_row : (j + 1) * per_row]
            status[i] = MARKOV_CHAIN if MARKOV_CHAIN in got else status[i]
            if done.acceptance is not None and MARKOV_CHAIN in got:
                acceptance[i] = float(np.nanmean(done.acceptance[j * per_row : (j + 1) * per_row].numpy()))
        moves = done.steps
    return codes, moves


# -- samples given cells -----------------------------------------------------------------------
@torch.no_grad()
def sample_given(
    run: Run,
    n: int,
    given: Given,
    rows: Condition,
    generator: torch.Generator,
    steps: int | None = None,
) -> tuple[torch.Tensor, Completion]:
    """``n`` rows (n, D) drawn from the model's law given ``given``'s cells and the ``rows``'
    labels (n,) and context (n, C): exact where the orderings generate the given cells first,
    else by Markov chains of ``steps`` moves. Rows of one label and context are n chains of one
    target (the completion's one row, with an effective sample size); otherwise a row each."""
    model: Any = run.model
    dtype = next(model.parameters()).dtype
    cells = given.condition.cells
    assert cells is not None  # parse_given fixes cells, if only NaN
    labels, context = rows.labels, rows.context
    one = (labels is None or len(set(labels.tolist())) == 1) and (
        context is None or bool((context == context[:1]).all()))  # fmt: skip
    if one:
        first = rows.rows(slice(0, 1)).with_cells(cells)
        per_row = n
    else:
        first, per_row = rows.with_cells(cells.expand(n, -1)), 1
    try:
        done: Completion = model.complete_rows(first.to(_device(run), dtype), per_row, generator, None, steps)
    except ValueError as e:
        raise UsageError(f"cannot sample given {given.describe()} from the model in {run.dir}: {e}") from None
    return done.values, done


# -- one column's law given others -------------------------------------------------------------
@dataclass(frozen=True)
class ColumnDensity:
    """p(column | given) on a grid of the column's values."""

    column: str
    table: pa.Table  # the column's values, ``probability`` or ``density`` and ``measure`` per value
    discrete: bool  # a probability per value (categories, a grid), else a density (and point masses)
    total: float  # the sum (discrete) or integral plus masses over the grid before normalising: about 1
    exact: bool  # every value's joint and the given cells' probability exact
    draws: int
    grid: np.ndarray  # the values as the model takes them (codes, numbers, days)
    weights: np.ndarray  # each value's weight in a sum over the law (see ``_grid``)


def _grid(column: Column, points: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The values at which a column's law is shown, each one's measure, and its weight in a sum
    over the law: 1 for a value's probability, the spacing for a density, and for a grid of more
    cells than ``points`` (shown every few cells) the cells each shown one stands for."""
    if column.categories:
        return (
            np.arange(column.levels, dtype=np.float64),
            ["probability"] * column.levels,
            np.ones(column.levels),
        )
    law = column.column_law()
    low, high = law.shift + law.scale * law.low, law.shift + law.scale * law.high
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UsageError(
            f"column {column.name!r} was saved without its range (a run from before laws were kept)"
        )
    if law.log:
        low, high = math.exp(low), math.exp(high)
    if law.step is not None:
        first = math.floor((low - law.origin) / law.step)
        last = math.ceil((high - law.origin) / law.step)
        cells = np.arange(first, last + 1, dtype=np.float64)
        weights = np.ones(len(cells))
        if len(cells) > points:  # the lowest cell (which may hold all the mass below) and every few
            rest = np.unique(np.round(np.linspace(first + 1, last, points - 1)))
            cells = np.append(first, rest)
            weights = np.append(1.0, np.gradient(rest) if len(rest) > 1 else np.ones(len(rest)))
        return law.origin + cells * law.step, ["probability"] * len(cells), weights
    pad = 0.05 * (high - low)
    low, high = low - pad, high + pad
    if law.lower is not None:
        low = max(low, law.lower)
    grid = np.linspace(low, high, points)
    measure = ["density"] * points
    if law.mass is not None:
        grid = np.sort(np.append(grid[grid != law.mass], law.mass))
        measure = ["probability" if v == law.mass else "density" for v in grid]
    density = np.array([m == "density" for m in measure])
    spacing = np.zeros(len(grid))
    spacing[density] = np.gradient(grid[density])
    return grid, measure, np.where(density, spacing, 1.0)


@torch.no_grad()
def column_density(
    run: Run, column: str, given: Given, points: int = 200, draws: int = OBSERVED_DRAWS, seed: int = 0
) -> ColumnDensity:
    """p(column = v | given) for v on a grid of the column's values (its categories, its grid
    cells, or ``points`` numbers over its training range): p(v, given) / p(given), each
    log p(observed cells) as ``observed_log_probs`` computes it (exact where the orderings allow,
    else importance sampling). The label column's law is p(y) p(given | y), normalised."""
    import pyarrow as pa

    model = _made(run, "a column's law given others")
    schema = _schema(run)
    if points < 2:
        raise BadArgument("points", f"must be at least 2 (got {points})")
    if column in given.names:
        raise BadArgument("column", f"{column!r} is also given; ask for a column that is not")
    generator_seed = seed
    dtype = next(model.parameters()).dtype
    device = _device(run)
    context = None if given.condition.context is None else given.condition.context.to(device, dtype)
    cells = given.condition.cells
    assert cells is not None  # parse_given fixes cells, if only NaN
    observed = ~torch.isnan(cells)
    if model.context_features and context is None:
        raise BadArgument(
            "given", f"must give the context columns ({', '.join(schema.context)}), which the model is given"
        )
    if schema.label is not None and column == schema.label.name:
        classes = model.classes
        joint = []
        exact = True
        for y in range(classes):
            one = Condition(torch.tensor([y]), context)
            lp, ex = _joint(run, cells, observed, one, draws, generator_seed)
            joint.append(float(lp[0]) + float(model.label_log_prior[y]))
            exact &= bool(ex[0])
        probs = torch.softmax(torch.tensor(joint, dtype=torch.float64), 0).numpy()
        values = schema.label.decode(np.arange(classes, dtype=np.float64))
        table = pa.table(
            {column: pa.array(values), "probability": probs, "measure": ["probability"] * classes}
        )
        return ColumnDensity(
            column, table, True, float(probs.sum()), exact, draws, np.arange(classes, dtype=np.float64),
            np.ones(classes),
        )  # fmt: skip
    if column not in schema.names:
        known = ", ".join([*schema.names, *([schema.label.name] if schema.label else [])])
        raise BadArgument("column", f"{column!r} is not a column the model models (it has: {known})")
    if model.classes and given.condition.labels is None:
        raise BadArgument(
            "given", f"must give the label column {schema.label.name!r} of this class-conditional model"
        )  # type: ignore[union-attr]
    j = schema.names.index(column)
    col = schema.columns[j]
    grid, measure, weights = _grid(col, points)
    rows = cells.expand(len(grid), -1).clone()
    rows[:, j] = torch.from_numpy(grid)
    label = given.condition.labels
    joint, exact_joint = _joint(run, rows, ~torch.isnan(rows), Condition(label, context), draws, seed)
    if bool(observed.any()):
        base, exact_base = _joint(run, cells, observed, Condition(label, context), draws, seed)
        log_given, exact = float(base[0]), bool(exact_base[0]) and bool(exact_joint.all())
    else:
        log_given, exact = 0.0, bool(exact_joint.all())
    p = (joint - log_given).exp().numpy()
    discrete = all(m == "probability" for m in measure)
    total = float((p * weights).sum())  # probabilities and a density's Riemann sum over the grid
    if total > 0:  # each estimate's noise apart, the law sums to one: normalised over the grid
        p = p / total
    values = col.decode(grid)
    key = "probability" if discrete else "density"
    table = pa.table(
        {column: values if isinstance(values, pa.Array) else pa.array(values), key: p, "measure": measure}
    )
    return ColumnDensity(column, table, discrete, total, exact, draws, grid, weights)


def _joint(
    run: Run,
    x: torch.Tensor,
    observed: torch.Tensor,
    given: Condition,
    draws: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x_observed) (B,) of rows x (anything in unobserved cells), and exact (B,), ``given``
    one label (1,) and context row (1, C) for all."""
    model = _made(run, "a column's law given others")
    device = _device(run)
    dtype = next(model.parameters()).dtype
    b = x.shape[0]
    c = None if given.context is None else given.context.expand(b, -1)
    y = None if given.labels is None else given.labels.to(device).expand(b)
    lp, exact = model.observed_log_prob(
        x.to(device, dtype),
        observed.to(device),
        Condition(y, c).to(device, dtype),
        draws,
        torch.Generator().manual_seed(seed),
        shared_noise=True,
    )
    return lp.double().cpu(), exact.cpu()


def safe_name(text: str) -> str:
    """Text as a file name's part."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:80] or "given"
